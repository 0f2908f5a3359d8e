// Start the batchbridge plugin (bin/batchbridge.js serve) inside a test namespace and talk to it
// over its unix socket the way dockerd does.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, rmSync, unlinkSync } from 'node:fs';
import { mkdtemp, rm, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'undici';
import { ORDER, track, untrack, type Resource } from './cleanup.js';
import { keepLog } from './dockerd.js';
import type { Netns } from './netns.js';
import { randomHex, sleep } from './proc.js';

/** Repository root, from dist/test/helpers/plugin.js. */
export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const PLUGIN_BIN = join(REPO_ROOT, 'bin', 'batchbridge.js');
export const PLUGIN_SOCKET_DIR = '/run/docker/plugins';
/** What dockerd sends as Accept on every plugin call. */
export const PLUGIN_ACCEPT = 'application/vnd.docker.plugins.v1.2+json';

const BUILTIN_DRIVERS = new Set(['bridge', 'host', 'null', 'none', 'overlay', 'macvlan', 'ipvlan', 'default']);

/** A unique plugin (driver) name: `bbt<12 hex>`, never a built-in driver name. */
export function randomPluginName(): string {
  return `bbt${randomHex(6)}`;
}

export interface StartPluginOptions {
  ns: Netns;
  /** Driver name (default randomPluginName()). */
  name?: string;
  /** --state-dir; default: a fresh dir removed by stop(). Pass your own to restart with the same state. */
  stateDir?: string;
  extraArgs?: readonly string[];
  /** Wait this long for the plugin to answer (default 20 s). */
  readyTimeoutMs?: number;
  /**
   * How readiness is probed: 'activate' (default) POSTs /Plugin.Activate, which the plugin may treat
   * as "dockerd (re)started" (a reconcile trigger); 'capabilities' POSTs
   * /NetworkDriver.GetCapabilities instead, for restarts that dockerd itself would not re-activate.
   */
  readyProbe?: 'activate' | 'capabilities';
  /** Launcher script (default <repo>/bin/batchbridge.js); for helper self-tests. */
  bin?: string;
  /**
   * --socket-dir (default /run/docker/plugins, where dockerd discovers plugins). Another dir hides
   * the plugin from dockerd, e.g. behind a proxy on the discovered path (plugin-proxy.ts).
   */
  socketDir?: string;
}

export interface CallResult {
  status: number;
  /** Parsed body, or undefined if it was not JSON (see text). */
  json: unknown;
  text: string;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface Plugin extends Resource {
  readonly name: string;
  readonly pid: number;
  readonly ns: Netns;
  readonly stateDir: string;
  readonly socketPath: string;
  readonly logPath: string;
  readonly exited: boolean;
  /** Send a signal to the plugin process (default SIGTERM). False if it is already gone. */
  kill(signal?: NodeJS.Signals): boolean;
  /** Resolves when the process has exited (rejects after timeoutMs, default: wait forever). */
  waitExit(timeoutMs?: number): Promise<ExitInfo>;
  /** POST JSON to /NetworkDriver.<method> (or to /<method> when it contains a dot). */
  call(method: string, body?: unknown): Promise<CallResult>;
  /** POST /Plugin.Activate with an empty body, like dockerd. */
  activate(): Promise<CallResult>;
  logText(): string;
  logTail(lines?: number): string;
  /** SIGTERM (SIGKILL after 10 s), wait, close the HTTP agent, remove the socket and own temp files. */
  stop(): Promise<void>;
}

/** Which live Plugin handle currently owns a socket path (a restarted plugin takes it over). */
const socketOwner = new Map<string, Plugin>();

export async function startPlugin(opts: StartPluginOptions): Promise<Plugin> {
  const name = opts.name ?? randomPluginName();
  if (BUILTIN_DRIVERS.has(name)) throw new Error(`plugin name ${name} is a built-in driver name`);
  const { ns } = opts;
  const ownDir = await mkdtemp('/tmp/bbt-plugin-');
  const stateDir = opts.stateDir ?? join(ownDir, 'state');
  const logPath = join(ownDir, 'plugin.log');
  const socketDir = opts.socketDir ?? PLUGIN_SOCKET_DIR;
  const socketPath = join(socketDir, `${name}.sock`);
  const argv = ns.argv([
    process.execPath, opts.bin ?? PLUGIN_BIN, 'serve',
    '--name', name,
    '--state-dir', stateDir,
    '--socket-dir', socketDir,
    '--log-level', 'debug',
    ...(opts.extraArgs ?? []),
  ]);

  const logFd = openSync(logPath, 'a');
  let child: ChildProcess;
  try {
    // nsenter (no --fork) execs node: child.pid is the plugin's pid.
    child = spawn(argv[0] ?? 'nsenter', argv.slice(1), { stdio: ['ignore', logFd, logFd], detached: true, cwd: REPO_ROOT });
  } finally {
    closeSync(logFd);
  }
  const pid = child.pid;
  let exit: ExitInfo | undefined;
  let spawnError: Error | undefined;
  const exitWaiters: Array<(e: ExitInfo) => void> = [];
  child.on('exit', (code, signal) => {
    exit = { code, signal };
    for (const w of exitWaiters.splice(0)) w(exit);
  });
  child.on('error', (e) => {
    spawnError = e;
    exit ??= { code: 127, signal: null };
    for (const w of exitWaiters.splice(0)) w(exit);
  });

  const agent = new Agent({ connect: { socketPath }, headersTimeout: 120_000, bodyTimeout: 120_000 });
  const post = async (path: string, body: unknown): Promise<CallResult> => {
    const payload = body === undefined ? undefined : `${JSON.stringify(body)}\n`;
    const res = await request(`http://localhost${path}`, {
      method: 'POST',
      dispatcher: agent,
      headers: { accept: PLUGIN_ACCEPT },
      ...(payload === undefined ? {} : { body: payload }),
    });
    const text = await res.body.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.statusCode, json, text };
  };
  const logText = (): string => {
    try {
      return readFileSync(logPath, 'utf8');
    } catch {
      return '';
    }
  };
  const waitExit = (timeoutMs?: number): Promise<ExitInfo> => {
    if (exit) return Promise.resolve(exit);
    return new Promise<ExitInfo>((resolve, reject) => {
      const timer = timeoutMs === undefined ? undefined : setTimeout(() => {
        reject(new Error(`plugin ${name} (pid ${pid}) still running after ${timeoutMs} ms`));
      }, timeoutMs);
      exitWaiters.push((e) => {
        if (timer) clearTimeout(timer);
        resolve(e);
      });
    });
  };
  const removeSocketIfOwner = (sync: boolean) => {
    if (socketOwner.get(socketPath) !== p) return;
    socketOwner.delete(socketPath);
    if (sync) {
      try { unlinkSync(socketPath); } catch { /* absent */ }
    }
  };

  let stopping: Promise<void> | undefined;
  const p: Plugin = {
    name,
    pid: pid ?? -1,
    ns,
    stateDir,
    socketPath,
    logPath,
    get exited() { return exit !== undefined; },
    label: `plugin ${name} (pid ${pid}) in ${ns.name}`,
    order: ORDER.plugin,
    kill: (signal = 'SIGTERM') => (exit === undefined && pid !== undefined ? child.kill(signal) : false),
    waitExit,
    call: (method, body) => post(method.includes('.') ? `/${method}` : `/NetworkDriver.${method}`, body),
    activate: () => post('/Plugin.Activate', undefined),
    logText,
    logTail: (lines = 60) => logText().trimEnd().split('\n').slice(-lines).join('\n'),
    stop: () => (stopping ??= (async () => {
      const problems: string[] = [];
      if (exit === undefined && pid !== undefined) {
        child.kill('SIGTERM');
        try {
          await waitExit(10_000);
        } catch {
          problems.push(`plugin ${name} (pid ${pid}) ignored SIGTERM for 10 s and was SIGKILLed`);
          child.kill('SIGKILL');
          await waitExit(5_000).catch(() => problems.push(`plugin ${name} (pid ${pid}) survived SIGKILL`));
        }
      }
      await agent.close().catch(() => {});
      if (socketOwner.get(socketPath) === p) {
        socketOwner.delete(socketPath);
        await unlink(socketPath).catch(() => {});
      }
      await keepLog(logPath, `plugin-${name}-${pid}.log`);
      await rm(ownDir, { recursive: true, force: true });
      untrack(p);
      if (problems.length > 0) throw new Error(problems.join('; '));
    })()),
    close: () => p.stop(),
    emergencyCloseSync: () => {
      if (exit === undefined && pid !== undefined) {
        try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
      }
      removeSocketIfOwner(true);
      rmSync(ownDir, { recursive: true, force: true });
    },
  };
  socketOwner.set(socketPath, p);
  track(p);

  try {
    if (pid === undefined) throw new Error(`could not spawn ${argv.join(' ')}`);
    const timeoutMs = opts.readyTimeoutMs ?? 20_000;
    const deadline = Date.now() + timeoutMs;
    let lastErr = '';
    for (;;) {
      if (exit) {
        throw new Error(`plugin exited before it was ready (code ${exit.code}, signal ${exit.signal}${spawnError ? `, ${spawnError.message}` : ''})`);
      }
      if (existsSync(socketPath)) {
        try {
          if ((opts.readyProbe ?? 'activate') === 'activate') {
            const r = await p.activate();
            const impl = (r.json as { Implements?: unknown } | undefined)?.Implements;
            if (r.status === 200 && Array.isArray(impl) && impl.includes('NetworkDriver')) break;
            throw new Error(`Plugin.Activate answered ${r.status} ${r.text.trim()} (want 200 {"Implements":["NetworkDriver"]})`);
          } else {
            const r = await p.call('GetCapabilities');
            const scope = (r.json as { Scope?: unknown } | undefined)?.Scope;
            if (r.status === 200 && (scope === 'local' || scope === 'global')) break;
            throw new Error(`NetworkDriver.GetCapabilities answered ${r.status} ${r.text.trim()} (want 200 {"Scope":"local",...})`);
          }
        } catch (e) {
          const code = (e as NodeJS.ErrnoException).code;
          // The socket may be a stale one from a killed instance, or not listening yet.
          if (code !== 'ECONNREFUSED' && code !== 'ENOENT' && code !== 'UND_ERR_SOCKET') throw e;
          lastErr = String(e);
        }
      }
      if (Date.now() >= deadline) throw new Error(`plugin not ready after ${timeoutMs} ms (${lastErr || `no socket ${socketPath}`})`);
      await sleep(100);
    }
  } catch (e) {
    const log = p.logTail(40);
    await p.stop().catch(() => {});
    throw new Error(`${e instanceof Error ? e.message : String(e)}\n--- plugin log tail (${logPath}) ---\n${log}`);
  }
  return p;
}

