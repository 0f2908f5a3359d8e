// Podman 4.3 (Debian) on its CNI backend, private to one test: its own containers.conf (network
// config dir, plugin dir, file locks, cgroupfs), root, runroot, tmpdir, runc root and cgroup parent;
// containers run from a busybox rootfs (`--rootfs`, no registry). Podman is not a daemon: every
// `podman` call runs inside the test's network namespace, so CNI plugins (and the bridges, veths and
// port rules they make) act there.
//
// Global places Podman still uses, cleaned by exact name: the container's network namespace
// /run/netns/netns-<uuid> (recorded for every container started through runDetached), libcni's
// cache /var/lib/cni/results/<network>-<id>-eth0.
import { existsSync, rmSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ORDER, track, untrack, type Resource } from './cleanup.js';
import type { Netns } from './netns.js';
import {
  describeRun, mountsUnder, randomHex, runSync, unmountUnder, unmountUnderSync, type RunOptions,
  type RunResult,
} from './proc.js';
import { dropCgroups, killLeftovers, killLeftoversAndWait, removeCgroups, runcDeleteAll, runcDeleteAllSync } from './sweep.js';

const LIBCNI_CACHE = '/var/lib/cni/results';

/** runc fails setting rlimits on this machine without these (the defaults exceed the hard limits). */
export const PODMAN_ULIMITS = ['--ulimit', 'nofile=1024:20000', '--ulimit', 'nproc=4096:4096'] as const;

export interface PodmanOptions {
  /** CNI plugin directory (cni_plugin_dirs). */
  binDir: string;
  /** Conflists written to the network config dir (file name: <name>.conflist). */
  conflists: readonly string[];
}

export interface Podman extends Resource {
  readonly ns: Netns;
  readonly dir: string;
  readonly confDir: string;
  /** busybox rootfs (sh, sleep, httpd, nc, cat) with /www/index.html. */
  readonly rootfs: string;
  readonly cgroupParent: string;
  /** `podman <global flags> ...args` inside the namespace; never throws for a non-zero exit. */
  podman(args: readonly string[], opts?: RunOptions): Promise<RunResult>;
  podmanOk(args: readonly string[], opts?: RunOptions): Promise<string>;
  /**
   * `podman run -d --name NAME <ulimits> <cgroup parent> ...runArgs --rootfs ROOTFS ...cmd`; records
   * the container's network namespace for teardown and returns it with the container id.
   */
  runDetached(name: string, runArgs: readonly string[], cmd: readonly string[]): Promise<{ id: string; netns: string }>;
  /** `podman rm -f -t 0` every container, then sweep leftovers. Idempotent; throws listing what it forced. */
  stop(): Promise<void>;
}

function containersConf(dir: string, binDir: string): string {
  return `[network]
network_backend = "cni"
network_config_dir = "${dir}/net.d"
cni_plugin_dirs = ["${binDir}"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
# shm locks live in the global /dev/shm/libpod_lock; file locks stay under tmpdir
lock_type = "file"
`;
}

async function busyboxRootfs(dir: string): Promise<string> {
  const root = join(dir, 'rootfs');
  await mkdir(join(root, 'bin'), { recursive: true });
  await mkdir(join(root, 'www'));
  await copyFile('/usr/bin/busybox', join(root, 'bin', 'busybox'));
  for (const a of ['sh', 'sleep', 'httpd', 'nc', 'cat', 'ip', 'true']) await symlink('busybox', join(root, 'bin', a));
  await writeFile(join(root, 'www', 'index.html'), 'hello from podman\n');
  return root;
}

interface Instance {
  dir: string;
  cgroupParent: string;
  networks: string[];
  /** Network namespaces and container ids seen (for the global leftovers). */
  netnsFiles: Set<string>;
  ids: Set<string>;
  podman(args: readonly string[], opts?: RunOptions): Promise<RunResult>;
}

/** The container's /run/netns/netns-<uuid> and libcni cache entries, by exact name; our cgroups. */
function dropGlobalLeftovers(i: Instance, problems: string[]): void {
  for (const f of i.netnsFiles) {
    if (!existsSync(f)) continue;
    problems.push(`network namespace ${f} was left`);
    if (runSync(['umount', f]).code !== 0) runSync(['umount', '-l', f]);
    rmSync(f, { force: true });
  }
  for (const id of i.ids) for (const n of i.networks) rmSync(join(LIBCNI_CACHE, `${n}-${id}-eth0`), { force: true });
  removeCgroups(i.cgroupParent);
}

/** Podman.stop(): returns what it had to force. */
async function teardown(i: Instance): Promise<string[]> {
  const problems: string[] = [];
  const ps = await i.podman(['ps', '-aq', '--no-trunc'], { timeoutMs: 30_000 });
  const left = ps.stdout.split('\n').map((s) => s.trim()).filter((s) => s !== '');
  if (left.length > 0) {
    problems.push(`${left.length} container(s) were still there at teardown`);
    for (const id of left) i.ids.add(id);
    const r = await i.podman(['rm', '-f', '-t', '0', ...left], { timeoutMs: 60_000 });
    if (r.code !== 0) problems.push(`podman rm -f: ${r.stderr.trim()}`);
  }
  await killLeftoversAndWait(i.dir, i.cgroupParent, problems);
  // A stopped container's state can linger a moment after `podman rm` (conmon's clean-up runs
  // concurrently); only a live one is a finding.
  for (const c of await runcDeleteAll(join(i.dir, 'runc'))) {
    if (c.status !== 'stopped') problems.push(`container ${c.id.slice(0, 12)} was still ${c.status}`);
  }
  dropGlobalLeftovers(i, problems);
  const cg = await dropCgroups(i.cgroupParent);
  if (cg.length > 0) problems.push(`cgroups left: ${cg.join(', ')}`);
  const mounts = await unmountUnder(i.dir);
  if (mounts.length > 0) problems.push(`could not unmount: ${mounts.join(', ')}`);
  else await rm(i.dir, { recursive: true, force: true });
  return problems;
}

function emergencyTeardown(i: Instance): void {
  killLeftovers(i.dir, i.cgroupParent, []);
  runcDeleteAllSync(join(i.dir, 'runc'));
  dropGlobalLeftovers(i, []);
  unmountUnderSync(i.dir);
  if (mountsUnder(i.dir).length === 0) rmSync(i.dir, { recursive: true, force: true });
}

export async function startPodman(ns: Netns, o: PodmanOptions): Promise<Podman> {
  const dir = await mkdtemp('/tmp/bbt-pod-');
  const confDir = join(dir, 'net.d');
  await mkdir(confDir);
  const networks: string[] = [];
  for (const c of o.conflists) {
    const name = (JSON.parse(c) as { name: string }).name;
    networks.push(name);
    await writeFile(join(confDir, `${name}.conflist`), c);
  }
  await writeFile(join(dir, 'containers.conf'), containersConf(dir, o.binDir));
  const rootfs = await busyboxRootfs(dir);
  const global = [
    '--root', join(dir, 'root'), '--runroot', join(dir, 'runroot'), '--tmpdir', join(dir, 'tmp'),
    '--storage-driver', 'vfs', '--runtime-flag', `root=${join(dir, 'runc')}`,
  ];
  const env = { ...process.env, CONTAINERS_CONF: join(dir, 'containers.conf') };
  const podman = (args: readonly string[], opts: RunOptions = {}) => ns.exec(['podman', ...global, ...args], { timeoutMs: 60_000, ...opts, env });
  const podmanOk = async (args: readonly string[], opts?: RunOptions) => {
    const r = await podman(args, opts);
    if (r.code !== 0) throw new Error(describeRun(['podman', ...args], r));
    return r.stdout;
  };
  const i: Instance = { dir, cgroupParent: `/bbt-pod-${randomHex(4)}`, networks, netnsFiles: new Set(), ids: new Set(), podman };
  let stopping: Promise<void> | undefined;
  const p: Podman = {
    ns, dir, confDir, rootfs, cgroupParent: i.cgroupParent, podman, podmanOk,
    label: `podman ${dir} in ${ns.name}`,
    order: ORDER.dockerd,
    runDetached: async (name, runArgs, cmd) => {
      const out = await podmanOk(['run', '-d', '--name', name, ...PODMAN_ULIMITS, '--cgroup-parent', i.cgroupParent, ...runArgs, '--rootfs', rootfs, ...cmd]);
      const id = out.trim().split('\n').pop() ?? '';
      i.ids.add(id);
      const netns = (await podmanOk(['inspect', '--format', '{{.NetworkSettings.SandboxKey}}', id])).trim();
      if (netns !== '') i.netnsFiles.add(netns);
      return { id, netns };
    },
    stop: () => (stopping ??= teardown(i).then((problems) => {
      untrack(p);
      if (problems.length > 0) throw new Error(`podman clean-up (${dir}):\n  ${problems.join('\n  ')}`);
    })),
    close: () => p.stop(),
    emergencyCloseSync: () => emergencyTeardown(i),
  };
  track(p);
  return p;
}
