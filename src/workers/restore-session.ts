// One long-lived `iptables-restore --noflush -v` per family and worker thread, fed one
// transaction at a time.
//
// Why: with the nf_tables backend, most of a short-lived iptables-restore's time is its exit.
// A transaction that deletes rules leaves destruction work queued in the kernel, and closing
// the nfnetlink socket waits for that work, which means a full RCU grace period. We traced
// this in a namespace (strace -T): the commit's sendmsg took 0.03 ms and the close(2) at exit
// took 11–19 ms. A live process never closes its socket. It also skips the process start.
//
// How a transaction's end is found: with -v, iptables-restore echoes each comment line to
// stdout as it reads it, and it reads sequentially. So a `# bb-end N` line after a block's
// COMMIT appears only once that COMMIT is done. A failed block makes iptables-restore print
// "line L failed" (L counted from the process start) and exit. The session then ends; the
// next transaction starts a new one.
//
// Stale caches are not a risk. Each block's commit carries the ruleset generation it was
// built against, and iptables-nft rebuilds its cache and retries when another writer got in
// between. We measured this: chains and rules that another process made or deleted between
// two blocks are seen by the next block.
//
// Only for the nf_tables backend, found once with --version. iptables-legacy gains nothing
// here: its restore has no socket to close.
import { startStreamingTool, runTool, type StreamingTool, type ToolResult } from './spawn.js';

/** Counters for this thread (tests check that transactions really share a process). */
export const restoreSessionStats = { starts: 0, transactions: 0 };
/** a session is replaced after this many lines, so a long-lived process never grows unbounded */
const LINE_BUDGET = 100_000;
const TX_TIMEOUT_MS = 60_000;

interface Waiter {
  readonly marker: string;
  readonly base: number;
  readonly resolve: (r: ToolResult) => void;
}

const LINE_NO = /\bline:? (\d+)/gi;

export class RestoreSession {
  private tool: StreamingTool | null = null;
  private linesRead = 0;
  private seq = 0;
  private stdout = '';
  private stderr = '';
  private waiter: Waiter | null = null;
  private busy = false;

  constructor(private readonly exe: string) {}

  /** Whether a transaction can run in the session now (else: run it in its own process). */
  get idle(): boolean {
    return !this.busy;
  }

  /**
   * Runs one payload (whole `*table … COMMIT` blocks, no comment lines). The result reads like
   * a process of its own: line numbers in stderr count from the payload's first line.
   */
  async run(payload: string): Promise<ToolResult> {
    // The end marker proves a commit only when it follows one, and only if it is the sole
    // comment line: a comment inside the payload would be echoed as if it were the marker.
    if (!payload.endsWith('COMMIT\n') || /^#/m.test(payload)) {
      return { exitCode: 2, stdout: '', stderr: 'restore session: a payload must hold whole blocks ending in COMMIT and no comment lines', spawnError: null };
    }
    this.busy = true;
    try {
      const lines = countLines(payload);
      if (this.tool !== null && this.linesRead + lines + 1 > LINE_BUDGET) this.end();
      const tool = this.tool ?? this.start();
      restoreSessionStats.transactions++;
      const base = this.linesRead;
      this.linesRead += lines + 1;
      const marker = `# bb-end ${++this.seq}\n`;
      const result = new Promise<ToolResult>((resolve) => {
        this.waiter = { marker, base, resolve };
      });
      tool.hold(true);
      const timer = setTimeout(() => tool.kill(), TX_TIMEOUT_MS);
      tool.write(payload + marker);
      const r = await result;
      clearTimeout(timer);
      tool.hold(false);
      return r;
    } finally {
      this.busy = false;
    }
  }

  end(): void {
    const t = this.tool;
    this.tool = null;
    const w = this.waiter;
    this.waiter = null;
    w?.resolve({ exitCode: -1, stdout: '', stderr: '', spawnError: `${this.exe} was stopped in the middle of a transaction` });
    this.linesRead = 0;
    this.stdout = '';
    this.stderr = '';
    t?.kill();
  }

  private start(): StreamingTool {
    restoreSessionStats.starts++;
    this.stdout = '';
    this.stderr = '';
    this.linesRead = 0;
    const tool: StreamingTool = startStreamingTool(this.exe, ['--noflush', '-v', '-w'], {
      stdout: (chunk) => {
        if (this.tool !== tool) return;
        this.stdout += chunk;
        const w = this.waiter;
        if (w === null || !this.stdout.includes(w.marker)) {
          // Keep only what could still hold the start of a marker.
          if (this.stdout.length > 4096) this.stdout = this.stdout.slice(-256);
          return;
        }
        this.stdout = '';
        this.waiter = null;
        const stderr = this.stderr;
        this.stderr = '';
        // Warnings on stderr with a successful commit are passed on, as from a process.
        w.resolve({ exitCode: 0, stdout: '', stderr: rebase(stderr, w.base), spawnError: null });
      },
      stderr: (chunk) => {
        if (this.tool === tool) this.stderr += chunk;
      },
      exit: (code) => {
        if (this.tool !== tool) return;
        this.tool = null;
        const w = this.waiter;
        this.waiter = null;
        const stderr = this.stderr;
        this.stderr = '';
        if (w === null) return;
        // A failed block ends iptables-restore: what it printed is this transaction's error.
        if (code === null) w.resolve({ exitCode: -1, stdout: '', stderr: rebase(stderr, w.base), spawnError: `${this.exe} was killed in the middle of a transaction` });
        else w.resolve({ exitCode: code === 0 ? 1 : code, stdout: '', stderr: rebase(stderr, w.base) || `${this.exe} exited (${code}) in the middle of a transaction`, spawnError: null });
      },
    });
    this.tool = tool;
    return tool;
  }
}

function countLines(text: string): number {
  let n = 0;
  for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) n++;
  return n;
}

/** "line 1234 failed" in a session → the line of this payload. */
function rebase(stderr: string, base: number): string {
  return stderr.replace(LINE_NO, (m, n: string) => m.replace(n, String(Math.max(1, Number(n) - base))));
}

const sessions = new Map<string, RestoreSession>();
const backendIsNft = new Map<string, Promise<boolean>>();
const SESSIONS_OFF = process.env.BB_RESTORE_SESSION === '0';

/** This thread's session for `exe`, or null if sessions do not pay off (or are switched off). */
export async function restoreSessionFor(exe: string): Promise<RestoreSession | null> {
  if (SESSIONS_OFF) return null;
  let nft = backendIsNft.get(exe);
  if (nft === undefined) {
    nft = runTool(exe, ['--version']).then((r) => r.exitCode === 0 && r.stdout.includes('nf_tables'));
    backendIsNft.set(exe, nft);
  }
  if (!(await nft)) return null;
  let s = sessions.get(exe);
  if (s === undefined) sessions.set(exe, (s = new RestoreSession(exe)));
  return s;
}
