// A private dockerd (Debian docker.io 20.10) running inside a test network namespace, with all of
// its paths under /tmp/bbt-<random>, so it never meets the host's Docker or another test's daemon.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, rmSync, statSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ORDER, track, untrack, type Resource } from './cleanup.js';
import type { Netns } from './netns.js';
import {
  cmdlineOf, describeRun, isAlive, mountsUnder, pidsMentioning, run, runSync, signalPid, sleep,
  terminatePid, unmountUnder, unmountUnderSync, waitPidExit, type RunOptions,
} from './proc.js';

/** The docker 20.10 client. /usr/local/bin/docker is a newer client and must not be used. */
export const DOCKER_CLI = '/usr/bin/docker';
export const DOCKERD_BIN = 'dockerd';
export const RUNC_BIN = 'runc';

export interface DockerResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface StartDockerdOptions {
  /** Appended to the dockerd command line. */
  extraArgs?: readonly string[];
  /** How long to wait for `docker info` to answer (default 30 s). */
  readyTimeoutMs?: number;
  /**
   * Asked when stop() starts: true means "tear down by force" (see stop()). A stack passes
   * `() => plugin.exited`: with the plugin gone every driver call dockerd makes while removing
   * containers and networks is retried for ~15 s, which would turn a failed test's clean-up into minutes.
   */
  forceStopIf?: () => boolean;
  /**
   * Start on the dirs of this earlier dockerd (which must have exited, see crash()), as a host's
   * dockerd restarts on its data-root and exec-root. The new one takes charge of the dirs and of
   * the containerd and containers the old one left; the old one's stop() then does nothing.
   */
  restartOf?: Dockerd;
}

export interface StopOptions {
  /**
   * Skip the docker-level removal (rm -f, network rm) and SIGKILL dockerd, then stop its containerd,
   * delete the containers with runc and kill their shims. The kernel side dies with the namespace.
   */
  force?: boolean;
}

export interface Dockerd extends Resource {
  readonly ns: Netns;
  /** /tmp/bbt-<random> holding docker.sock, root/, exec/, docker.pid, dockerd.log */
  readonly dir: string;
  readonly socketPath: string;
  /** DOCKER_HOST value: unix://<dir>/docker.sock */
  readonly host: string;
  readonly pid: number;
  /** The containerd that dockerd started (undefined if it could not be identified). */
  readonly containerdPid: number | undefined;
  readonly logPath: string;
  /** Environment for the docker CLI (DOCKER_HOST, private DOCKER_CONFIG). */
  env(): NodeJS.ProcessEnv;
  /** Run `/usr/bin/docker ...args` against this daemon. Never throws for a non-zero exit. */
  docker(args: readonly string[], opts?: RunOptions): Promise<DockerResult>;
  /** Same, but throws (with stdout/stderr) on a non-zero exit; returns stdout. */
  dockerOk(args: readonly string[], opts?: RunOptions): Promise<string>;
  /** Current size of the dockerd log (use with logSince). */
  logSize(): number;
  /** dockerd log text written after `offset` bytes. */
  logSince(offset: number): string;
  /** Last `lines` lines of the dockerd log. */
  logTail(lines?: number): string;
  /** The dockerd process has exited. */
  readonly exited: boolean;
  /**
   * SIGKILL dockerd alone, as a crash would, and wait until it and its containerd (which dies with
   * it) are gone. The shims and containers keep running, as on a host; start a new dockerd with
   * `restartOf` to take them over (or stop() this one, which then tears them down by force).
   */
  crash(): Promise<void>;
  /**
   * rm -f all containers, rm all non-default networks, SIGTERM dockerd (SIGKILL after 15 s), wait for
   * dockerd and its containerd, kill leftovers (runc containers, shims), unmount everything under
   * dir, rm -rf dir. Idempotent (the first call's options win); throws if something could not be
   * cleaned up.
   */
  stop(opts?: StopOptions): Promise<void>;
}

const DOCKER_CMD_TIMEOUT_MS = 90_000;

function tailLines(text: string, lines: number): string {
  const all = text.trimEnd().split('\n');
  return all.slice(-lines).join('\n');
}

/** Copy a log to $BBT_KEEP_LOGS/<name> when that variable names a directory to keep logs in. */
export async function keepLog(path: string, name: string): Promise<void> {
  const keep = process.env['BBT_KEEP_LOGS'];
  if (!keep || !existsSync(path)) return;
  try {
    await mkdir(keep, { recursive: true });
    await copyFile(path, join(keep, name));
  } catch {
    /* best effort */
  }
}

/** Dockerds whose dirs a restarted dockerd took over: their stop() has nothing left to do. */
const handedOver = new WeakSet<Dockerd>();

export async function startDockerd(ns: Netns, opts: StartDockerdOptions = {}): Promise<Dockerd> {
  const prev = opts.restartOf;
  if (prev !== undefined) {
    if (!prev.exited) throw new Error(`restartOf: dockerd ${prev.pid} is still running`);
    if (prev.ns !== ns) throw new Error('restartOf: a dockerd restarts in its own namespace');
    handedOver.add(prev);
    untrack(prev);
  }
  const dir = prev?.dir ?? await mkdtemp('/tmp/bbt-');
  const socketPath = join(dir, 'docker.sock');
  const host = `unix://${socketPath}`;
  const logPath = join(dir, 'dockerd.log');
  const cliConfig = join(dir, 'cli');
  if (prev === undefined) await mkdir(cliConfig);

  const argv = ns.argv([
    DOCKERD_BIN,
    '-H', host,
    '--data-root', join(dir, 'root'),
    '--exec-root', join(dir, 'exec'),
    '--pidfile', join(dir, 'docker.pid'),
    '--bridge=none',
    ...(opts.extraArgs ?? []),
  ]);
  const logFd = openSync(logPath, 'a');
  let child: ChildProcess;
  try {
    // nsenter (no --fork) execs dockerd, so child.pid is dockerd's pid. Its own process group:
    // a terminal ^C reaches only the test process, which then shuts everything down in order.
    child = spawn(argv[0] ?? 'nsenter', argv.slice(1), { stdio: ['ignore', logFd, logFd], detached: true });
  } finally {
    closeSync(logFd);
  }
  const pid = child.pid;
  let exited = false;
  let exitInfo = '';
  child.on('exit', (code, signal) => { exited = true; exitInfo = `code=${code} signal=${signal}`; });
  child.on('error', (e) => { exited = true; exitInfo = `spawn error: ${e.message}`; });

  const env = (): NodeJS.ProcessEnv => {
    const e: NodeJS.ProcessEnv = { ...process.env, DOCKER_HOST: host, DOCKER_CONFIG: cliConfig };
    delete e['DOCKER_CONTEXT'];
    delete e['DOCKER_TLS_VERIFY'];
    delete e['DOCKER_CERT_PATH'];
    delete e['DOCKER_API_VERSION'];
    return e;
  };
  const docker = async (args: readonly string[], o: RunOptions = {}): Promise<DockerResult> => {
    const r = await run([DOCKER_CLI, ...args], { timeoutMs: DOCKER_CMD_TIMEOUT_MS, ...o, env: env() });
    return { code: r.code, stdout: r.stdout, stderr: r.stderr };
  };
  const readLog = (): string => {
    try {
      return readFileSync(logPath, 'utf8');
    } catch {
      return '';
    }
  };
  let containerdPid: number | undefined;
  const ours = (p: number) => cmdlineOf(p).some((a) => a.includes(dir));
  const dockerdIsOurs = () => !exited;

  let stopping: Promise<void> | undefined;
  let crashed = false;
  const d: Dockerd = {
    ns,
    dir,
    socketPath,
    host,
    pid: pid ?? -1,
    get containerdPid() { return containerdPid; },
    logPath,
    label: `dockerd ${dir} in ${ns.name}`,
    order: ORDER.dockerd,
    env,
    docker,
    dockerOk: async (args, o) => {
      const r = await docker(args, o);
      if (r.code !== 0) throw new Error(describeRun([DOCKER_CLI, ...args], { ...r, signal: null }));
      return r.stdout;
    },
    logSize: () => {
      try {
        return statSync(logPath).size;
      } catch {
        return 0;
      }
    },
    logSince: (offset) => {
      try {
        return readFileSync(logPath).subarray(offset).toString('utf8');
      } catch {
        return '';
      }
    },
    logTail: (lines = 40) => tailLines(readLog(), lines),
    get exited() { return exited; },
    crash: async () => {
      crashed = true;
      if (pid !== undefined && !exited) signalPid(pid, 'SIGKILL');
      for (let i = 0; i < 500 && !exited; i++) await sleep(20);
      if (!exited) throw new Error(`dockerd ${pid} survived SIGKILL for 10 s`);
      // Its managed containerd is signalled when dockerd dies (parent-death signal). A dockerd
      // started while that one is still exiting, or is a zombie not yet reaped, finds its pid
      // file, takes it for a live containerd, waits for its socket and gives up.
      const cpid = containerdPid;
      if (cpid !== undefined) {
        for (let i = 0; i < 500 && existsSync(`/proc/${cpid}`); i++) await sleep(20);
        if (existsSync(`/proc/${cpid}`)) throw new Error(`containerd ${cpid} still there 10 s after dockerd was killed`);
      }
    },
    stop: (stopOpts = {}) => (stopping ??= (async () => {
      if (handedOver.has(d)) return;
      const problems: string[] = [];
      // A crashed dockerd left containerd and containers running: tear them down by force.
      const force = stopOpts.force ?? (crashed || (opts.forceStopIf?.() ?? false));
      // 1. Containers and networks, while dockerd (and hopefully the plugin) are still up.
      if (!exited && pid !== undefined && !force) {
        const ps = await docker(['ps', '-aq'], { timeoutMs: 30_000 });
        const ids = ps.stdout.split('\n').map((s) => s.trim()).filter((s) => s !== '');
        if (ids.length > 0) {
          const r = await docker(['rm', '-f', ...ids], { timeoutMs: 60_000 });
          if (r.code !== 0) problems.push(`docker rm -f: ${r.stderr.trim()}`);
        }
        const nl = await docker(['network', 'ls', '-q', '--filter', 'type=custom'], { timeoutMs: 30_000 });
        const nets = nl.stdout.split('\n').map((s) => s.trim()).filter((s) => s !== '');
        for (const n of nets) {
          const r = await docker(['network', 'rm', n], { timeoutMs: 60_000 });
          if (r.code !== 0) problems.push(`docker network rm ${n}: ${r.stderr.trim()}`);
        }
      }
      // 2. dockerd itself (it stops its containerd on SIGTERM).
      const dockerdWasDead = exited || force;
      if (pid !== undefined) {
        if (force && !exited) signalPid(pid, 'SIGKILL');
        const how = await terminatePid(pid, { graceMs: 15_000, isOurs: dockerdIsOurs });
        if (how === 'killed') problems.push(`dockerd ${pid} ignored SIGTERM for 15 s and was SIGKILLed`);
        if (how === 'survived') problems.push(`dockerd ${pid} survived SIGKILL`);
        // Wait for node to reap it, so that its pid cannot be reused under us.
        for (let i = 0; i < 100 && !exited; i++) await sleep(20);
      }
      if (containerdPid !== undefined) {
        const cpid = containerdPid;
        // A dockerd that died on its own leaves containerd running: ask it to go directly.
        if (dockerdWasDead && isAlive(cpid) && ours(cpid)) signalPid(cpid, 'SIGTERM');
        const gone = await waitPidExit(cpid, 15_000);
        if (!gone && ours(cpid)) {
          signalPid(cpid, 'SIGKILL');
          await waitPidExit(cpid, 5_000);
          problems.push(`containerd ${cpid} did not exit within 15 s of dockerd and was SIGKILLed`);
        }
      }
      // 3. Leftover containers (only if dockerd could not remove them) and their shims.
      const runcRoot = join(dir, 'exec', 'runtime-runc', 'moby');
      if (existsSync(runcRoot)) {
        const l = await run([RUNC_BIN, '--root', runcRoot, 'list', '-q'], { timeoutMs: 30_000 });
        for (const id of l.stdout.split('\n').map((s) => s.trim()).filter((s) => s !== '')) {
          if (!force) problems.push(`container ${id.slice(0, 12)} was still running after dockerd stopped`);
          await run([RUNC_BIN, '--root', runcRoot, 'delete', '-f', id], { timeoutMs: 30_000 });
        }
      }
      const leftovers = pidsMentioning(dir);
      if (leftovers.length > 0) {
        if (!force) {
          problems.push(`processes still referring to ${dir} were killed: ${leftovers.map((p) => `${p} ${cmdlineOf(p)[0] ?? ''}`).join(', ')}`);
        }
        for (const p of leftovers) signalPid(p, 'SIGKILL');
        for (const p of leftovers) await waitPidExit(p, 5_000);
      }
      // 4. Mounts (data-root bind mount, overlays, netns bind mounts), then the directory.
      await keepLog(logPath, `dockerd-${ns.name}.log`);
      const left = await unmountUnder(dir);
      if (left.length > 0) {
        problems.push(`could not unmount: ${left.join(', ')}`);
      } else {
        try {
          await rm(dir, { recursive: true, force: true });
        } catch (e) {
          problems.push(`rm -rf ${dir}: ${String(e)}`);
        }
      }
      untrack(d);
      if (problems.length > 0) throw new Error(`dockerd clean-up (${dir}):\n  ${problems.join('\n  ')}`);
    })()),
    close: () => d.stop(),
    emergencyCloseSync: () => {
      if (handedOver.has(d)) return;
      if (pid !== undefined && !exited) signalPid(pid, 'SIGKILL');
      if (containerdPid !== undefined && ours(containerdPid)) signalPid(containerdPid, 'SIGKILL');
      const runcRoot = join(dir, 'exec', 'runtime-runc', 'moby');
      if (existsSync(runcRoot)) {
        const l = runSync([RUNC_BIN, '--root', runcRoot, 'list', '-q']);
        for (const id of l.stdout.split('\n').map((s) => s.trim()).filter((s) => s !== '')) {
          runSync([RUNC_BIN, '--root', runcRoot, 'delete', '-f', id]);
        }
      }
      for (const p of pidsMentioning(dir)) signalPid(p, 'SIGKILL');
      unmountUnderSync(dir);
      if (mountsUnder(dir).length === 0) rmSync(dir, { recursive: true, force: true });
    },
  };
  track(d);

  try {
    if (pid === undefined) throw new Error(`could not spawn ${argv.join(' ')}`);
    const timeoutMs = opts.readyTimeoutMs ?? 30_000;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (exited) throw new Error(`dockerd exited before it was ready (${exitInfo})`);
      const r = await docker(['info', '--format', '{{.ID}}'], { timeoutMs: 10_000 });
      if (r.code === 0) break;
      if (Date.now() >= deadline) throw new Error(`dockerd not ready after ${timeoutMs} ms: ${r.stderr.trim()}`);
      await sleep(250);
    }
    // Identify dockerd's containerd child now, so stop() can wait for it (and never touch another one).
    try {
      const c = Number(readFileSync(join(dir, 'exec', 'containerd', 'containerd.pid'), 'utf8').trim());
      if (Number.isInteger(c) && c > 0 && isAlive(c) && ours(c)) containerdPid = c;
    } catch {
      /* containerd pid file missing: stop() still sweeps processes mentioning dir */
    }
  } catch (e) {
    const log = d.logTail(30);
    await d.stop().catch(() => {});
    throw new Error(`${e instanceof Error ? e.message : String(e)}\n--- dockerd log tail ---\n${log}`);
  }
  return d;
}

// ---------------------------------------------------------------------------------------------

export const BUSYBOX_BIN = '/usr/bin/busybox';
export const BUSYBOX_APPLETS = [
  'sh', 'sleep', 'ip', 'ping', 'nc', 'httpd', 'cat', 'echo', 'ls', 'ifconfig', 'route', 'hostname',
  'wget', 'ping6', 'true',
] as const;
export const BUSYBOX_INDEX_HTML = 'hello from batchbridge';

/**
 * Build image `tag` (default bb:latest) from the static busybox: /bin/busybox plus applet symlinks,
 * /www/index.html containing "hello from batchbridge"; `tar -c | docker import - tag`.
 * Note: busybox wget segfaults here; fetch HTTP with `printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 3 H P`.
 */
export async function buildBusyboxImage(d: Dockerd, tag = 'bb:latest'): Promise<void> {
  const root = await mkdtemp(join(d.dir, 'image-'));
  try {
    await mkdir(join(root, 'bin'));
    await mkdir(join(root, 'www'));
    await copyFile(BUSYBOX_BIN, join(root, 'bin', 'busybox'));
    for (const a of BUSYBOX_APPLETS) await symlink('busybox', join(root, 'bin', a));
    await writeFile(join(root, 'www', 'index.html'), `${BUSYBOX_INDEX_HTML}\n`);

    const tar = spawn('tar', ['-C', root, '-c', '.'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const imp = spawn(DOCKER_CLI, ['import', '-', tag], { stdio: ['pipe', 'pipe', 'pipe'], env: d.env() });
    imp.stdin.on('error', () => { /* reported through the exit code */ });
    tar.stdout.pipe(imp.stdin);
    imp.stdout.resume();
    const collect = (c: ChildProcess) => new Promise<{ code: number | null; err: string }>((resolve) => {
      let err = '';
      c.stderr?.on('data', (b: Buffer) => { err += b.toString(); });
      c.on('error', (e) => resolve({ code: -1, err: `${err}${e.message}` }));
      c.on('close', (code) => resolve({ code, err }));
    });
    const [t, i] = await Promise.all([collect(tar), collect(imp)]);
    if (t.code !== 0 || i.code !== 0) {
      throw new Error(`building ${tag} failed: tar code ${t.code}: ${t.err.trim()}; docker import code ${i.code}: ${i.err.trim()}`);
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}
