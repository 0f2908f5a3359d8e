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
import type { ToolEnv } from '../../tools/env.js';
import { ToolSession, type UnitSpan } from '../../tools/session.js';
import type { ToolResult } from '../../tools/spawn.js';

/** Counters for this thread (tests check that transactions really share a process). */
export const restoreSessionStats = { starts: 0, restarts: 0, transactions: 0 };

const LINE_NO = /\bline:? (\d+)/gi;

export class RestoreSession extends ToolSession<ToolResult> {
  private seq = 0;
  private marker = '';

  constructor(exe: string) {
    // Replaced after 100,000 lines, so a long-lived process never grows unbounded.
    super(exe, ['--noflush', '-v', '-w'], { lineBudget: 100_000, timeoutMs: 60_000 }, true);
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
    this.marker = `# bb-end ${++this.seq}\n`;
    return this.exchange(payload + this.marker, countLines(payload) + 1);
  }

  protected override onStart(restart: boolean): void {
    restoreSessionStats.starts++;
    if (restart) restoreSessionStats.restarts++;
  }

  protected override onRun(): void {
    restoreSessionStats.transactions++;
  }

  protected onOutput(unit: UnitSpan): void {
    if (!this.stdoutText.includes(this.marker)) {
      // Keep only what could still hold the start of a marker.
      if (this.stdoutText.length > 4096) this.stdoutText = this.stdoutText.slice(-256);
      return;
    }
    this.stdoutText = '';
    const stderr = this.stderrText;
    this.stderrText = '';
    // Warnings on stderr with a successful commit are passed on, as from a process.
    this.complete({ exitCode: 0, stdout: '', stderr: rebase(stderr, unit.base), spawnError: null });
  }

  protected died(code: number | null, unit: UnitSpan): ToolResult {
    // A failed block ends iptables-restore: what it printed is this transaction's error.
    const stderr = rebase(this.stderrText, unit.base);
    if (code === null) return { exitCode: -1, stdout: '', stderr, spawnError: `${this.file} was killed in the middle of a transaction` };
    return { exitCode: code === 0 ? 1 : code, stdout: '', stderr: stderr || `${this.file} exited (${code}) in the middle of a transaction`, spawnError: null };
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

/** This thread's session for `exe`, or null if sessions do not pay off (or are switched off). */
export async function restoreSessionFor(exe: string, env: ToolEnv): Promise<RestoreSession | null> {
  if (!env.switches.restoreSessions) return null;
  let nft = backendIsNft.get(exe);
  if (nft === undefined) {
    nft = env.run(exe, ['--version']).then((r) => r.exitCode === 0 && r.stdout.includes('nf_tables'));
    backendIsNft.set(exe, nft);
  }
  if (!(await nft)) return null;
  let s = sessions.get(exe);
  if (s === undefined) sessions.set(exe, (s = new RestoreSession(exe)));
  return s;
}
