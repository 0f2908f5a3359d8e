// Process utilities for the kernel/e2e test helpers.
// Everything is spawned with argv arrays (never a shell string) and every wait is bounded.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { constants as osConstants } from 'node:os';

export interface RunResult {
  /** Exit code; 128 + signal number when the process was killed by a signal. */
  code: number;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** Written to stdin, which is then closed. */
  input?: string | Buffer;
  /** SIGKILL the process after this long (default 120 s, 0 = no limit). */
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

export const DEFAULT_RUN_TIMEOUT_MS = 120_000;

export function signalNumber(signal: NodeJS.Signals | null): number {
  if (signal === null) return 0;
  return (osConstants.signals as Record<string, number | undefined>)[signal] ?? 0;
}

/** Run argv[0] with argv[1..]; never throws for a non-zero exit (only when the binary cannot be spawned). */
export function run(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const [cmd, ...args] = argv;
  if (cmd === undefined) return Promise.reject(new Error('run: empty argv'));
  const timeoutMs = opts.timeoutMs ?? DEFAULT_RUN_TIMEOUT_MS;
  return new Promise<RunResult>((resolve, reject) => {
    const child = spawn(cmd, args, {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: opts.env ?? process.env,
      ...(opts.cwd !== undefined ? { cwd: opts.cwd } : {}),
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    let timedOut = false;
    const timer = timeoutMs > 0
      ? setTimeout(() => { timedOut = true; child.kill('SIGKILL'); }, timeoutMs)
      : undefined;
    child.on('error', (e) => {
      if (timer) clearTimeout(timer);
      reject(new Error(`cannot run ${argv.join(' ')}: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      let stderr = Buffer.concat(err).toString('utf8');
      if (timedOut) stderr += `\n[helper: killed after ${timeoutMs} ms]`;
      resolve({
        code: code ?? 128 + signalNumber(signal),
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr,
      });
    });
    child.stdin.on('error', () => { /* EPIPE when the command does not read stdin */ });
    child.stdin.end(opts.input ?? '');
  });
}

export function describeRun(argv: readonly string[], r: RunResult): string {
  return `\`${argv.join(' ')}\` exited with code ${r.code}${r.signal ? ` (${r.signal})` : ''}\n`
    + `--- stdout ---\n${r.stdout.trimEnd()}\n--- stderr ---\n${r.stderr.trimEnd()}`;
}

/** Like run() but throws (with stdout/stderr in the message) on a non-zero exit. Returns stdout. */
export async function runOk(argv: readonly string[], opts: RunOptions = {}): Promise<string> {
  const r = await run(argv, opts);
  if (r.code !== 0) throw new Error(describeRun(argv, r));
  return r.stdout;
}

/** Synchronous variant for emergency clean-up in process 'exit' handlers. Never throws. */
export function runSync(argv: readonly string[], timeoutMs = 30_000): RunResult {
  const [cmd, ...args] = argv;
  if (cmd === undefined) return { code: 1, signal: null, stdout: '', stderr: 'empty argv' };
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: timeoutMs, stdio: ['ignore', 'pipe', 'pipe'] });
  return {
    code: r.status ?? 128 + signalNumber(r.signal),
    signal: r.signal,
    stdout: r.stdout ?? '',
    stderr: (r.stderr ?? '') + (r.error ? `\n${r.error.message}` : ''),
  };
}

export function randomHex(bytes: number): string {
  return randomBytes(bytes).toString('hex');
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Retry `fn` until it resolves without throwing, or rethrow its last error once `timeoutMs` has
 * passed. Use it for conditions that legitimately take a moment (ARP, DNS, a process exiting).
 */
export async function eventually<T>(
  fn: () => Promise<T>,
  { timeoutMs = 10_000, intervalMs = 200 }: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      if (Date.now() >= deadline) throw e;
    }
    await sleep(intervalMs);
  }
}

// ---------------------------------------------------------------------------------------------
// PIDs. We only ever signal processes we can prove are ours: our direct children, or processes
// whose command line contains one of our unique /tmp/bbt-<random> paths, or processes inside a
// network namespace we created.

export function procState(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // "pid (comm) S ..." — comm may contain spaces and parentheses: take the char after the last ')'.
    const i = stat.lastIndexOf(')');
    return stat.slice(i + 2, i + 3);
  } catch {
    return undefined;
  }
}

/** True while the process exists and is not a zombie. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const st = procState(pid);
  return st !== undefined && st !== 'Z' && st !== 'X';
}

export function cmdlineOf(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((s) => s !== '');
  } catch {
    return [];
  }
}

export function signalPid(pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(pid, signal);
    return true;
  } catch {
    return false;
  }
}

export async function waitPidExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isAlive(pid)) {
    if (Date.now() >= deadline) return false;
    await sleep(50);
  }
  return true;
}

export function allPids(): number[] {
  const pids: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (/^\d+$/.test(e)) pids.push(Number(e));
  }
  return pids;
}

/** Live processes whose command line mentions `needle` (never this process). */
export function pidsMentioning(needle: string): number[] {
  return allPids().filter((pid) =>
    pid !== process.pid && isAlive(pid) && cmdlineOf(pid).some((a) => a.includes(needle)));
}

/** Live processes whose network namespace has inode `ino`. */
export function pidsInNetnsInode(ino: number): number[] {
  const want = `net:[${ino}]`;
  return allPids().filter((pid) => {
    if (pid === process.pid) return false;
    try {
      return readlinkSync(`/proc/${pid}/ns/net`) === want && isAlive(pid);
    } catch {
      return false;
    }
  });
}

/** SIGTERM, wait, SIGKILL, wait. Returns what it had to do. */
export async function terminatePid(
  pid: number,
  { graceMs = 15_000, isOurs = () => true }: { graceMs?: number; isOurs?: () => boolean } = {},
): Promise<'gone' | 'terminated' | 'killed' | 'survived'> {
  if (!isAlive(pid) || !isOurs()) return 'gone';
  signalPid(pid, 'SIGTERM');
  if (await waitPidExit(pid, graceMs)) return 'terminated';
  if (!isOurs()) return 'gone';
  signalPid(pid, 'SIGKILL');
  return (await waitPidExit(pid, 5_000)) ? 'killed' : 'survived';
}

// ---------------------------------------------------------------------------------------------
// Mounts

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** Mount points equal to `dir` or below it, deepest first. */
export function mountsUnder(dir: string): string[] {
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  const base = prefix.slice(0, -1);
  let text = '';
  try {
    text = readFileSync('/proc/self/mounts', 'utf8');
  } catch {
    return [];
  }
  const found = new Set<string>();
  for (const line of text.split('\n')) {
    const mp = line.split(' ')[1];
    if (mp === undefined) continue;
    const p = unescapeMount(mp);
    if (p === base || p.startsWith(prefix)) found.add(p);
  }
  return [...found].sort((a, b) => b.split('/').length - a.split('/').length || b.length - a.length);
}

/** Unmount everything under `dir` (deepest first; lazy unmount as a fallback). Returns what remains. */
export async function unmountUnder(dir: string): Promise<string[]> {
  for (let pass = 0; pass < 4; pass++) {
    const mps = mountsUnder(dir);
    if (mps.length === 0) return [];
    for (const mp of mps) {
      const r = await run(['umount', mp], { timeoutMs: 30_000 });
      if (r.code !== 0) await run(['umount', '-l', mp], { timeoutMs: 30_000 });
    }
  }
  return mountsUnder(dir);
}

export function unmountUnderSync(dir: string): void {
  for (let pass = 0; pass < 4; pass++) {
    const mps = mountsUnder(dir);
    if (mps.length === 0) return;
    for (const mp of mps) {
      if (runSync(['umount', mp]).code !== 0) runSync(['umount', '-l', mp]);
    }
  }
}
