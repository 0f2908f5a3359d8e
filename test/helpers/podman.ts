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
import { cgroupDirs, pidsInCgroups, removeCgroups } from './cgroups.js';
import { ORDER, track, untrack, type Resource } from './cleanup.js';
import type { Netns } from './netns.js';
import {
  cmdlineOf, describeRun, mountsUnder, pidsMentioning, randomHex, run, runSync, signalPid, sleep,
  unmountUnder, unmountUnderSync, waitPidExit, type RunOptions, type RunResult,
} from './proc.js';

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
  const cgroupParent = `/bbt-pod-${randomHex(4)}`;
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
  const netnsFiles = new Set<string>();
  const ids = new Set<string>();

  const sweep = (problems: string[]): number[] => {
    const left = pidsMentioning(dir);
    if (left.length > 0) problems.push(`killed leftover processes: ${left.map((p) => `${p} ${cmdlineOf(p)[0] ?? ''}`).join(', ')}`);
    // Container processes live in other namespaces: found through our cgroup parent.
    const inCg = pidsInCgroups(cgroupDirs(cgroupParent));
    if (inCg.length > 0) problems.push(`killed processes left in ${cgroupParent}: ${inCg.join(', ')}`);
    for (const p of [...left, ...inCg]) signalPid(p, 'SIGKILL');
    return [...left, ...inCg];
  };
  const dropGlobalLeftovers = (problems: string[]) => {
    for (const f of netnsFiles) {
      if (!existsSync(f)) continue;
      problems.push(`network namespace ${f} was left`);
      if (runSync(['umount', f]).code !== 0) runSync(['umount', '-l', f]);
      rmSync(f, { force: true });
    }
    for (const id of ids) for (const n of networks) rmSync(join(LIBCNI_CACHE, `${n}-${id}-eth0`), { force: true });
    removeCgroups(cgroupParent);
  };

  let stopping: Promise<void> | undefined;
  const p: Podman = {
    ns, dir, confDir, rootfs, cgroupParent, podman, podmanOk,
    label: `podman ${dir} in ${ns.name}`,
    order: ORDER.dockerd,
    runDetached: async (name, runArgs, cmd) => {
      const out = await podmanOk(['run', '-d', '--name', name, ...PODMAN_ULIMITS, '--cgroup-parent', cgroupParent, ...runArgs, '--rootfs', rootfs, ...cmd]);
      const id = out.trim().split('\n').pop() ?? '';
      ids.add(id);
      const netns = (await podmanOk(['inspect', '--format', '{{.NetworkSettings.SandboxKey}}', id])).trim();
      if (netns !== '') netnsFiles.add(netns);
      return { id, netns };
    },
    stop: () => (stopping ??= (async () => {
      const problems: string[] = [];
      const ps = await podman(['ps', '-aq', '--no-trunc'], { timeoutMs: 30_000 });
      const left = ps.stdout.split('\n').map((s) => s.trim()).filter((s) => s !== '');
      if (left.length > 0) {
        problems.push(`${left.length} container(s) were still there at teardown`);
        for (const id of left) ids.add(id);
        const r = await podman(['rm', '-f', '-t', '0', ...left], { timeoutMs: 60_000 });
        if (r.code !== 0) problems.push(`podman rm -f: ${r.stderr.trim()}`);
      }
      const killed = sweep(problems);
      for (const pid of killed) await waitPidExit(pid, 5_000);
      const runcRoot = join(dir, 'runc');
      if (existsSync(runcRoot)) {
        // A stopped container's state can linger a moment after `podman rm` (conmon's clean-up
        // runs concurrently); only a live one is a finding.
        const l = await run(['runc', '--root', runcRoot, 'list', '--format', 'json'], { timeoutMs: 30_000 });
        const list = (l.stdout.trim() === '' || l.stdout.trim() === 'null') ? [] : JSON.parse(l.stdout) as Array<{ id: string; status: string }>;
        for (const c of list) {
          if (c.status !== 'stopped') problems.push(`container ${c.id.slice(0, 12)} was still ${c.status}`);
          await run(['runc', '--root', runcRoot, 'delete', '-f', c.id], { timeoutMs: 30_000 });
        }
      }
      dropGlobalLeftovers(problems);
      for (let i = 0; i < 20 && cgroupDirs(cgroupParent).length > 0; i++) {
        await sleep(100);
        dropGlobalLeftovers([]);
      }
      if (cgroupDirs(cgroupParent).length > 0) problems.push(`cgroups left: ${cgroupDirs(cgroupParent).join(', ')}`);
      const mounts = await unmountUnder(dir);
      if (mounts.length > 0) problems.push(`could not unmount: ${mounts.join(', ')}`);
      else await rm(dir, { recursive: true, force: true });
      untrack(p);
      if (problems.length > 0) throw new Error(`podman clean-up (${dir}):\n  ${problems.join('\n  ')}`);
    })()),
    close: () => p.stop(),
    emergencyCloseSync: () => {
      for (const pid of pidsMentioning(dir)) signalPid(pid, 'SIGKILL');
      const runcRoot = join(dir, 'runc');
      if (existsSync(runcRoot)) {
        for (const id of runSync(['runc', '--root', runcRoot, 'list', '-q']).stdout.split('\n').filter((s) => s.trim() !== '')) {
          runSync(['runc', '--root', runcRoot, 'delete', '-f', id.trim()]);
        }
      }
      dropGlobalLeftovers([]);
      unmountUnderSync(dir);
      if (mountsUnder(dir).length === 0) rmSync(dir, { recursive: true, force: true });
    },
  };
  track(p);
  return p;
}
