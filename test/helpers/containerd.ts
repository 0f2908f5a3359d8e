// A private containerd (Debian's 1.6, CRI plugin built in) inside a test network namespace, with its
// root, state, sockets, runc root, CNI conf dir, pod network namespaces and pod cgroups all of its
// own, so it never meets the host's containerd, dockerd's, or another test's. Its CRI plugin calls
// the CNI plugins of `binDir` with the conflist it is given; the plugins run in the namespace
// containerd runs in, so bridges, host veths and port-mapping rules stay there.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { ORDER, track, untrack, type Resource } from './cleanup.js';
import { CriClient } from './cri-client.js';
import { keepLog } from './dockerd.js';
import type { Netns } from './netns.js';
import {
  cmdlineOf, isAlive, mountsUnder, randomHex, runOk, signalPid, sleep, terminatePid, unmountUnder,
  unmountUnderSync,
} from './proc.js';
import {
  dropCgroups, killLeftovers, killLeftoversAndWait, removeCgroups, runcDeleteAll, runcDeleteAllSync, subdirs,
} from './sweep.js';

export const PAUSE_IMAGE = 'localhost/bbpause:1';
const LIBCNI_CACHE = '/var/lib/cni/results';
const SHIM_SOCKETS = '/run/containerd/s';

export interface StartContainerdOptions {
  /** Directory holding the CNI plugins (CNI_PATH). */
  binDir: string;
  /** The conflist containerd loads (written to <dir>/net.d/10-<name>.conflist). */
  conflist: string;
  /**
   * true (default): pod namespaces are mounted under containerd's state dir, private to this
   * instance. false: under /var/run/netns/cni-<uuid>, as a default Kubernetes node has them.
   */
  netnsUnderState?: boolean;
  readyTimeoutMs?: number;
}

export interface Containerd extends Resource {
  readonly ns: Netns;
  readonly dir: string;
  readonly socketPath: string;
  readonly pid: number;
  readonly logPath: string;
  /** Every pod this harness runs should use this as linux.cgroupParent (teardown sweeps it). */
  readonly cgroupParent: string;
  /** The network name in the conflist (libcni's cache files are named after it). */
  readonly network: string;
  readonly cri: CriClient;
  /** `ctr --address <socket> ...args`; throws on failure. */
  ctr(args: readonly string[]): Promise<string>;
  /** Build the busybox pause image and import it into the k8s.io namespace. */
  importPauseImage(): Promise<void>;
  logTail(lines?: number): string;
  /**
   * Stop and remove every pod through the CRI (bounded), SIGTERM containerd, then sweep whatever a
   * failure left: shims, runc containers, processes in our cgroups, cgroup dirs, mounts, libcni
   * cache entries of our network, the directory. Idempotent; throws listing what it had to force.
   */
  stop(): Promise<void>;
}

function configToml(dir: string, binDir: string, netnsUnderState: boolean): string {
  return `version = 2
root = "${dir}/root"
state = "${dir}/state"
# The opt plugin would create /opt/containerd; the others are snapshotters and services we do not use.
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "${dir}/containerd.sock"
[ttrpc]
  address = "${dir}/containerd.sock.ttrpc"
[debug]
  address = "${dir}/debug.sock"
[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "${PAUSE_IMAGE}"
    disable_apparmor = true
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = ${netnsUnderState}
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "${binDir}"
      conf_dir = "${dir}/net.d"
      max_conf_num = 1
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = false
          Root = "${dir}/runc"
`;
}

/** A docker-archive tar of busybox-static with `sleep` as its entrypoint (what a pause image does). */
export async function writePauseImageTar(workDir: string, tag = PAUSE_IMAGE): Promise<string> {
  const root = await mkdtemp(join(workDir, 'pause-'));
  const rootfs = join(root, 'rootfs');
  await mkdir(join(rootfs, 'bin'), { recursive: true });
  await copyFile('/usr/bin/busybox', join(rootfs, 'bin', 'busybox'));
  for (const a of ['sh', 'sleep']) await symlink('busybox', join(rootfs, 'bin', a));
  const img = join(root, 'img');
  await mkdir(img);
  await runOk(['tar', '--numeric-owner', '-C', rootfs, '-cf', join(img, 'layer.tar'), '.']);
  const diffId = `sha256:${createHash('sha256').update(await readFile(join(img, 'layer.tar'))).digest('hex')}`;
  const config = {
    architecture: 'amd64',
    os: 'linux',
    config: { Entrypoint: ['/bin/sleep', '2147483647'], Env: ['PATH=/bin'] },
    rootfs: { type: 'layers', diff_ids: [diffId] },
    history: [{ created_by: 'batchbridge test harness' }],
  };
  await writeFile(join(img, 'config.json'), JSON.stringify(config));
  await writeFile(join(img, 'manifest.json'), JSON.stringify([{ Config: 'config.json', RepoTags: [tag], Layers: ['layer.tar'] }]));
  const tar = join(root, 'pause.tar');
  await runOk(['tar', '-C', img, '-cf', tar, 'manifest.json', 'config.json', 'layer.tar']);
  return tar;
}

interface Instance {
  ns: Netns;
  dir: string;
  socketPath: string;
  logPath: string;
  cgroupParent: string;
  network: string;
  pid: number;
  cri: CriClient;
  exited(): boolean;
  exitInfo(): string;
}

/** Sandbox ids this instance ever had, with their containerd namespace (from its state dir, so also after a crash). */
function sandboxIds(dir: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  const tasks = join(dir, 'state', 'io.containerd.runtime.v2.task');
  for (const nsDir of subdirs(tasks)) {
    try {
      for (const id of readdirSync(nsDir)) out.push([basename(nsDir), id]);
    } catch {
      /* gone */
    }
  }
  try {
    for (const id of readdirSync(join(dir, 'state', 'io.containerd.grpc.v1.cri', 'sandboxes'))) out.push(['k8s.io', id]);
  } catch {
    /* none */
  }
  return out;
}

/**
 * What a crash leaves in global places, removed by exact name only:
 * - a killed shim's socket in /run/containerd/s, named (containerd 1.6) after
 *   sha256(<containerd address>/<namespace>/<id>);
 * - libcni's cache entries: <network>-<id>-eth0 and the CRI plugin's own loopback network,
 *   cni-loopback-<id>-lo (a pod whose DEL never ran keeps both).
 */
function dropGlobalLeftovers(i: Pick<Instance, 'dir' | 'socketPath' | 'network'>): void {
  for (const [n, id] of sandboxIds(i.dir)) {
    rmSync(join(SHIM_SOCKETS, createHash('sha256').update(join(i.socketPath, n, id)).digest('hex')), { force: true });
    rmSync(join(LIBCNI_CACHE, `cni-loopback-${id}-lo`), { force: true });
  }
  try {
    for (const f of readdirSync(LIBCNI_CACHE)) if (f.startsWith(`${i.network}-`)) rmSync(join(LIBCNI_CACHE, f), { force: true });
  } catch {
    /* no cache dir */
  }
}

/** Containerd.stop(): returns what it had to force. */
async function teardown(i: Instance): Promise<string[]> {
  const problems: string[] = [];
  if (i.exited()) {
    problems.push(`containerd had exited before teardown (${i.exitInfo()})`);
  } else {
    // Pods through the CRI first, so their CNI DELs run as a kubelet's would.
    const pods = await i.cri.listPodSandbox().catch(() => []);
    if (pods.length > 0) problems.push(`${pods.length} pod(s) were still there at teardown`);
    await Promise.all(pods.map(async (p) => {
      await i.cri.stopPodSandbox(p.id).catch(() => {});
      await i.cri.removePodSandbox(p.id).catch(() => {});
    }));
  }
  i.cri.close();
  const how = await terminatePid(i.pid, { graceMs: 10_000, isOurs: () => !i.exited() });
  if (how === 'killed' || how === 'survived') problems.push(`containerd ${i.pid} ignored SIGTERM (${how})`);
  for (let n = 0; n < 100 && !i.exited(); n++) await sleep(20);
  // containerd leaves its shims running on purpose (they survive its restarts): their pods go first.
  for (const root of subdirs(join(i.dir, 'runc'))) await runcDeleteAll(root);
  await killLeftoversAndWait(i.dir, i.cgroupParent, problems);
  const cg = await dropCgroups(i.cgroupParent);
  if (cg.length > 0) problems.push(`cgroups left: ${cg.join(', ')}`);
  dropGlobalLeftovers(i);
  await keepLog(i.logPath, `containerd-${i.ns.name}.log`);
  const left = await unmountUnder(i.dir);
  if (left.length > 0) problems.push(`could not unmount: ${left.join(', ')}`);
  else await rm(i.dir, { recursive: true, force: true });
  return problems;
}

function emergencyTeardown(i: Instance): void {
  if (!i.exited()) signalPid(i.pid, 'SIGKILL');
  for (const root of subdirs(join(i.dir, 'runc'))) runcDeleteAllSync(root);
  killLeftovers(i.dir, i.cgroupParent, []);
  removeCgroups(i.cgroupParent);
  dropGlobalLeftovers(i);
  unmountUnderSync(i.dir);
  if (mountsUnder(i.dir).length === 0) rmSync(i.dir, { recursive: true, force: true });
}

async function spawnContainerd(ns: Netns, o: StartContainerdOptions): Promise<Instance> {
  const dir = await mkdtemp('/tmp/bbt-ctd-');
  const network = (JSON.parse(o.conflist) as { name: string }).name;
  await mkdir(join(dir, 'net.d'));
  await mkdir(join(dir, 'logs'));
  await writeFile(join(dir, 'net.d', `10-${network}.conflist`), o.conflist);
  await writeFile(join(dir, 'config.toml'), configToml(dir, o.binDir, o.netnsUnderState ?? true));
  const logPath = join(dir, 'containerd.log');
  const argv = ns.argv(['containerd', '--config', join(dir, 'config.toml'), '--log-level', 'info']);
  const logFd = openSync(logPath, 'a');
  // nsenter execs containerd, so the child's pid is containerd's; its own process group.
  const child = spawn(argv[0] ?? 'nsenter', argv.slice(1), { stdio: ['ignore', logFd, logFd], detached: true });
  closeSync(logFd);
  let exited = false;
  let exitInfo = '';
  child.on('exit', (code, signal) => { exited = true; exitInfo = `code=${code} signal=${signal}`; });
  child.on('error', (e) => { exited = true; exitInfo = e.message; });
  const socketPath = join(dir, 'containerd.sock');
  return {
    ns, dir, socketPath, logPath, network,
    cgroupParent: `/bbt-ctd-${randomHex(4)}`,
    pid: child.pid ?? -1,
    cri: new CriClient(socketPath),
    exited: () => exited,
    exitInfo: () => exitInfo,
  };
}

export async function startContainerd(ns: Netns, o: StartContainerdOptions): Promise<Containerd> {
  const i = await spawnContainerd(ns, o);
  const { dir, socketPath, logPath, cgroupParent, network, pid, cri } = i;
  const readLog = () => { try { return readFileSync(logPath, 'utf8'); } catch { return ''; } };
  const ctr = (args: readonly string[]) => runOk(['ctr', '--address', socketPath, ...args], { timeoutMs: 60_000 });
  let stopping: Promise<void> | undefined;
  const c: Containerd = {
    ns, dir, socketPath, pid, logPath, cgroupParent, network, cri, ctr,
    label: `containerd ${dir} in ${ns.name}`,
    order: ORDER.dockerd,
    importPauseImage: async () => {
      await ctr(['-n', 'k8s.io', 'images', 'import', await writePauseImageTar(dir)]);
    },
    logTail: (lines = 40) => readLog().trimEnd().split('\n').slice(-lines).join('\n'),
    stop: () => (stopping ??= teardown(i).then((problems) => {
      untrack(c);
      if (problems.length > 0) throw new Error(`containerd clean-up (${dir}):\n  ${problems.join('\n  ')}`);
    })),
    close: () => c.stop(),
    emergencyCloseSync: () => emergencyTeardown(i),
  };
  track(c);
  try {
    const deadline = Date.now() + (o.readyTimeoutMs ?? 30_000);
    for (;;) {
      if (i.exited()) throw new Error(`containerd exited before it was ready (${i.exitInfo()})`);
      if (existsSync(socketPath) && await cri.version().then(() => true, () => false)) break;
      if (Date.now() >= deadline) throw new Error('containerd CRI not ready in time');
      await sleep(200);
    }
    if (!isAlive(pid) || !cmdlineOf(pid).some((a) => a.includes(dir))) throw new Error('containerd is not running');
  } catch (e) {
    const log = c.logTail(30);
    await c.stop().catch(() => {});
    throw new Error(`${e instanceof Error ? e.message : String(e)}\n--- containerd log tail ---\n${log}`);
  }
  return c;
}
