// The one place that starts processes. No shell is ever involved: argv arrays only, scripts go
// through stdin. Everything else in the code base calls runTool().
//
// Why a launcher process: Node starts a child by fork()+exec(), and fork copies the page tables
// of the whole plugin, so every tool start got slower as the plugin's memory grew (measured
// here: ~1 ms at 50 MB RSS, 6 ms at 150 MB, 13 ms at 250 MB — most of a batch's own cost). Each
// thread that runs tools therefore keeps one small, long-lived Node process (launcher.ts) that
// does the fork+exec for it and sends the result back over IPC. Without a launcher (the
// `directSpawn` switch, or one that cannot be started) tools are started directly.
import { fork, type ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';
import { execa } from 'execa';

export interface ToolResult {
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
  /** the process could not be started, or was killed by a signal */
  readonly spawnError: string | null;
}

/**
 * `env`: the child's whole environment instead of ours plus LC_ALL=C (a delegated CNI plugin
 * gets the environment the runtime gave the CNI call).
 *
 * execa costs about 2 ms more CPU per start than a bare child_process.spawn (measured here: 2.2–3.1
 * against 0.9 ms for 200 starts): it is paid in the launcher process, not on the thread that
 * answers requests, and it is the runner the project is built on, so it stays.
 */
export async function runToolDirect(file: string, args: readonly string[], input?: string, timeoutMs = 60_000, env?: Readonly<Record<string, string>>): Promise<ToolResult> {
  const r = await execa(file, args, {
    input: input ?? '',
    reject: false,
    shell: false,
    stripFinalNewline: false,
    timeout: timeoutMs,
    env: env ?? { LC_ALL: 'C' },
    extendEnv: env === undefined,
  });
  let spawnError: string | null = null;
  if (r.failed && r.exitCode === undefined) spawnError = `${file}: ${r.originalMessage ?? r.shortMessage ?? 'failed to start'}`;
  if (r.signal) spawnError = `${file} killed by ${r.signal}${r.timedOut ? ` (timed out after ${timeoutMs} ms)` : ''}`;
  return {
    exitCode: r.exitCode ?? -1,
    stdout: typeof r.stdout === 'string' ? r.stdout : '',
    stderr: typeof r.stderr === 'string' ? r.stderr : '',
    spawnError,
  };
}

export interface LaunchRequest {
  readonly id: number;
  readonly file: string;
  readonly args: readonly string[];
  readonly input: string;
  readonly timeoutMs: number;
  readonly env?: Readonly<Record<string, string>>;
}

export interface LaunchReply {
  readonly id: number;
  readonly result: ToolResult;
}

let launcher: ChildProcess | null = null;
let launcherBroken = false;
let directSpawn = false;

/** Start tools directly from this thread instead of through its launcher (a measurement switch). */
export function setDirectSpawn(on: boolean): void {
  directSpawn = on;
}
let nextId = 1;
const waiting = new Map<number, (r: ToolResult) => void>();

function failAll(why: string): void {
  for (const [id, resolve] of waiting) {
    waiting.delete(id);
    resolve({ exitCode: -1, stdout: '', stderr: '', spawnError: why });
  }
}

function getLauncher(): ChildProcess | null {
  if (launcher !== null) return launcher;
  if (launcherBroken || directSpawn) return null;
  try {
    const child = fork(new URL('./launcher.js', import.meta.url), [], {
      // A small heap keeps this process small, which is the point: its forks stay cheap.
      execArgv: ['--max-old-space-size=48'],
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
      serialization: 'advanced',
    });
    child.on('message', (m: LaunchReply) => {
      const resolve = waiting.get(m.id);
      if (resolve === undefined) return;
      waiting.delete(m.id);
      resolve(m.result);
    });
    child.on('exit', (code, signal) => {
      if (launcher === child) launcher = null;
      failAll(`tool launcher exited (${signal ?? code ?? 'unknown'})`);
    });
    child.on('error', () => {
      if (launcher === child) launcher = null;
      launcherBroken = true;
      failAll('tool launcher failed');
    });
    // The launcher must not keep a finished worker or process alive.
    child.unref();
    child.channel?.unref();
    launcher = child;
    return child;
  } catch {
    launcherBroken = true;
    return null;
  }
}

export function runTool(file: string, args: readonly string[], input?: string, timeoutMs = 60_000, env?: Readonly<Record<string, string>>): Promise<ToolResult> {
  const child = getLauncher();
  if (child === null) return runToolDirect(file, args, input, timeoutMs, env);
  const id = nextId++;
  const req: LaunchRequest = { id, file, args, input: input ?? '', timeoutMs, ...(env !== undefined ? { env } : {}) };
  return new Promise<ToolResult>((resolve) => {
    // While a request waits, the channel must keep the thread alive.
    child.channel?.ref();
    const done = (r: ToolResult): void => {
      if (waiting.size === 0) child.channel?.unref();
      resolve(r);
    };
    waiting.set(id, done);
    try {
      child.send(req);
    } catch (err) {
      waiting.delete(id);
      done({ exitCode: -1, stdout: '', stderr: '', spawnError: `tool launcher: ${(err as Error).message}` });
    }
  });
}

/** A long-lived tool reading commands on stdin (see session.ts). */
export interface StreamingTool {
  write(text: string): void;
  /** keep the thread alive while an answer is awaited (an idle session never does) */
  hold(on: boolean): void;
  kill(): void;
}

export interface StreamingHandlers {
  /** stdout chunks; without this handler stdout is discarded */
  stdout?(chunk: string): void;
  stderr(chunk: string): void;
  exit(code: number | null): void;
}

/**
 * Starts `file args…` with a stdin pipe and its stderr delivered chunk by chunk. Started from the
 * thread itself, not the launcher (the launcher only runs tools to completion): one fork per
 * session, not per batch. The child dies with its stdin: when we kill it, or when the plugin dies.
 */
export function startStreamingTool(file: string, args: readonly string[], on: StreamingHandlers): StreamingTool {
  const child = execa(file, args, {
    stdin: 'pipe',
    stdout: on.stdout === undefined ? 'ignore' : 'pipe',
    stderr: 'pipe',
    buffer: false,
    reject: false,
    shell: false,
    env: { LC_ALL: 'C' },
    extendEnv: true,
  });
  let exited = false;
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (c: string) => on.stderr(c));
  const onStdout = on.stdout;
  if (onStdout !== undefined) {
    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (c: string) => onStdout(c));
    (child.stdout as Socket | null)?.unref?.();
  }
  // A write after the child died fails with EPIPE on the stream: reported through exit instead.
  child.stdin?.on('error', () => undefined);
  // An idle session must not keep a finished thread or process alive.
  child.unref();
  (child.stdin as Socket | null)?.unref?.();
  (child.stderr as Socket | null)?.unref?.();
  void child.then(
    (r) => {
      exited = true;
      on.exit(r.exitCode ?? null);
    },
    () => {
      exited = true;
      on.exit(null);
    },
  );
  return {
    write(text: string): void {
      if (!exited) child.stdin?.write(text);
    },
    hold(on: boolean): void {
      for (const s of [child.stderr, child.stdout] as Array<Socket | null>) {
        if (on) s?.ref?.();
        else s?.unref?.();
      }
    },
    kill(): void {
      if (exited) return;
      child.stdin?.end();
      child.kill();
    },
  };
}
