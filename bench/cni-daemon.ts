// A batchbridge daemon for bench/cni-pods.ts, set up as a user would: `batchbridge serve` with a
// CNI socket (temp state dir, socket dir and CNI socket; optionally inside another network
// namespace, e.g. containerd's), then `batchbridge cni-install` for the C forwarder and the
// conflist. Also a bin dir whose `batchbridge-cni` is the same forward path in Node
// (bench/cni-node-forwarder.cjs), for the C vs Node comparison. Stopped with SIGTERM; its CPU and
// that of the processes below it (launchers, ip, iptables-restore) is read from /proc.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, readdirSync } from 'node:fs';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { socketAnswers } from '../src/cni/leftovers.js';
import { ORDER, track, untrack, type Resource } from '../test/helpers/cleanup.js';
import { run, sleep } from '../test/helpers/proc.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const CLI = join(REPO, 'bin', 'batchbridge.js');
const NODE_FORWARDER = join(REPO, 'bench', 'cni-node-forwarder.cjs');
const BATCH_STATS = join(REPO, 'dist', 'bench', 'batch-stats.js');
const TICK_MS = 10; // USER_HZ

export interface BenchDaemonOptions {
  /** an empty directory of its own */
  readonly dir: string;
  /** the network's name, subnet and bridge in the conflist */
  readonly name: string;
  readonly subnet: string;
  readonly bridge: string;
  /** run the daemon in this namespace (nsenter --net=PATH); default: the caller's */
  readonly netnsPath?: string;
  /** extra `serve` flags */
  readonly serveArgs?: readonly string[];
  /**
   * Where the daemon writes per-batch statistics when it exits (bench/batch-stats.ts, loaded
   * with `node --import`): batch sizes and the ip/iptables processes per pipeline.
   */
  readonly batchStats?: string;
  /** node options for the daemon, e.g. --cpu-prof (profiles are written when it stops) */
  readonly nodeArgs?: readonly string[];
}

export interface BenchDaemon extends Resource {
  readonly pid: number;
  readonly conflist: string;
  /** holds the installed C forwarder, batchbridge-cni */
  readonly binDir: string;
  /** holds batchbridge-cni as the Node forwarder */
  readonly nodeBinDir: string;
  readonly logPath: string;
  /** CPU so far (user + system) of the daemon and every process below it */
  cpuMs(): DaemonCpu;
  stop(): Promise<void>;
}

interface ProcTimes {
  ppid: number;
  comm: string;
  /** utime + stime */
  own: number;
  /** cutime + cstime: its children that exited and were waited for */
  reaped: number;
}

function procTimes(pid: number): ProcTimes | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields 4 and 14-17 of proc(5) (ppid; utime, stime, cutime, cstime), counted from "state" as field 3
    return {
      ppid: Number(f[1]),
      comm: stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')),
      own: (Number(f[11]) + Number(f[12])) * TICK_MS,
      reaped: (Number(f[13]) + Number(f[14])) * TICK_MS,
    };
  } catch {
    return null;
  }
}

/** CPU of a daemon's process tree, ms */
export interface DaemonCpu {
  /** the daemon: its event loop and worker threads */
  readonly own: number;
  /** the launchers that start its tools (src/tools/launcher.ts: Node processes) */
  readonly launchers: number;
  /** the tools: ip and iptables-restore, running (sessions) or exited */
  readonly tools: number;
}

/** The CPU of the daemon's process tree; a tool that exited counts in its parent's cutime. */
function treeCpu(root: number): DaemonCpu {
  const all = new Map<number, ProcTimes>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const t = procTimes(Number(name));
    if (t !== null) all.set(Number(name), t);
  }
  const top = all.get(root);
  if (top === undefined) return { own: 0, launchers: 0, tools: 0 };
  let launchers = 0;
  let tools = top.reaped;
  const queue = [root];
  while (queue.length > 0) {
    const p = queue.pop() as number;
    for (const [pid, t] of all) {
      if (t.ppid !== p) continue;
      if (p === root && t.comm === 'node') launchers += t.own;
      else tools += t.own;
      tools += t.reaped;
      queue.push(pid);
    }
  }
  return { own: top.own, launchers, tools };
}

async function cli(args: readonly string[]): Promise<string> {
  const r = await run([process.execPath, CLI, ...args], { timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`batchbridge ${args.join(' ')}: ${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout;
}

export async function startBenchDaemon(o: BenchDaemonOptions): Promise<BenchDaemon> {
  const cniSocket = join(o.dir, 'cni.sock');
  const logPath = join(o.dir, 'daemon.log');
  const binDir = join(o.dir, 'bin');
  const nodeBinDir = join(o.dir, 'bin-node');
  await mkdir(nodeBinDir, { recursive: true });
  const serve = [
    process.execPath, ...(o.nodeArgs ?? []), ...(o.batchStats === undefined ? [] : [`--import=${BATCH_STATS}`]), CLI, 'serve', '--name', `bbbench${process.pid}`, '--state-dir', join(o.dir, 'state'), '--socket-dir', join(o.dir, 'sock'),
    '--cni-socket', cniSocket, '--log-level', 'warn', ...(o.serveArgs ?? []),
  ];
  const argv = o.netnsPath === undefined ? serve : ['nsenter', `--net=${o.netnsPath}`, ...serve];
  const fd = openSync(logPath, 'a');
  let child: ChildProcess;
  try {
    // nsenter without --fork execs node: the child's pid is the daemon's
    const env = o.batchStats === undefined ? process.env : { ...process.env, BB_BATCH_STATS: o.batchStats };
    child = spawn(argv[0] as string, argv.slice(1), { stdio: ['ignore', fd, fd], cwd: REPO, env });
  } finally {
    closeSync(fd);
  }
  let exited = false;
  const exit = new Promise<void>((resolve) => child.once('exit', () => {
    exited = true;
    resolve();
  }));
  const pid = child.pid ?? -1;
  let stopping: Promise<void> | undefined;
  let conflist = '';
  const d: BenchDaemon = {
    pid,
    get conflist() {
      return conflist;
    },
    binDir,
    nodeBinDir,
    logPath,
    label: `batchbridge daemon ${pid} (${o.dir})`,
    order: ORDER.plugin,
    cpuMs: () => treeCpu(pid),
    stop: () => (stopping ??= (async () => {
      if (!exited) child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exit;
      clearTimeout(t);
      untrack(d);
    })()),
    close: () => d.stop(),
    emergencyCloseSync: () => {
      if (!exited) child.kill('SIGKILL');
    },
  };
  track(d);
  try {
    const deadline = Date.now() + 30_000;
    while (!(existsSync(cniSocket) && (await socketAnswers(cniSocket)))) {
      if (exited) throw new Error(`batchbridge serve exited at start:\n${readFileSync(logPath, 'utf8')}`);
      if (Date.now() > deadline) throw new Error(`batchbridge serve: no CNI socket after 30 s:\n${readFileSync(logPath, 'utf8')}`);
      await sleep(50);
    }
    const confDir = join(o.dir, 'net.d');
    await cli(['cni-install', '--bin-dir', binDir, '--socket', cniSocket, '--conf-dir', confDir, '--name', o.name, '--subnet', o.subnet, '--bridge', o.bridge]);
    conflist = readFileSync(join(confDir, `10-${o.name}.conflist`), 'utf8');
    // The Node forwarder reads its socket from the environment only: give it a default here.
    const fwd = join(nodeBinDir, 'batchbridge-cni');
    const src = readFileSync(NODE_FORWARDER, 'utf8');
    const withSocket = src.replace("'use strict';\n", `'use strict';\nprocess.env.BATCHBRIDGE_CNI_SOCKET ||= ${JSON.stringify(cniSocket)};\n`);
    if (withSocket === src) throw new Error(`${NODE_FORWARDER}: no 'use strict' line to put the socket after`);
    await writeFile(fwd, `#!${process.execPath}\n${withSocket}`);
    await chmod(fwd, 0o755);
    return d;
  } catch (e) {
    await d.stop();
    throw e;
  }
}
