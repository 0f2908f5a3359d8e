// One long-lived `ip -force -batch -` fed a batch's script at a time, so a batch pays no
// process start (~4-5 ms through the launcher, against ~1 ms of kernel work for a lone veth).
//
// How a batch's end is found: after the script we send one line that always fails (the
// vocabulary's fail-marker: `link add name lo type veth`, "File exists"). ip reports each failure
// on stderr as "Command failed -:N", N counting every line it has read since it started, so the
// failure of our marker, at a line number we know, closes the batch; the failures before it are
// the batch's, at their number minus the lines sent before the batch.
//
// What a long-lived ip gets wrong, and how we avoid it: ip caches name → ifindex for the devices
// it has looked up. A bridge deleted and created again under the same name keeps its old index in
// that cache (seen here: `master br0` then fails with "Invalid argument"). So a session only runs
// batches of veth creations/deletions; a batch that touches a bridge runs in its own process and
// ends the session (apply.ts). The session also ends after any failed line, when a script names a
// veth this session has deleted (a name reused after its deletion), and every LINE_BUDGET lines.
import { ToolSession, type UnitSpan } from '../tools/session.js';
import { parseIpErrors, type IpFailure } from './errors.js';
import { renderIpLine } from './lines.js';

const END_LINE = `${renderIpLine({ op: 'fail-marker' })}\n`;

/** Counters for this thread's sessions (tests check that batches really share a process). */
export const ipSessionStats = { starts: 0, restarts: 0, batches: 0, answeredBeforeIp: 0 };

export interface SessionResult {
  /** failures of this batch, numbered from 1 within the script */
  readonly failures: readonly IpFailure[];
  /** error text no `Command failed` line claimed, or the exit reason if ip died mid-batch */
  readonly unattributed: string;
  /** ip exited before finishing the batch: which lines ran is unknown */
  readonly died: boolean;
}

export interface VethNames {
  /** every interface a script names */
  readonly mentioned: readonly string[];
  /** the veths it deletes */
  readonly deleted: readonly string[];
}

export class IpSession extends ToolSession<SessionResult> {
  /** veths this session has deleted: their cached indexes are stale */
  private deleted = new Set<string>();

  constructor(ipPath: string) {
    super(ipPath, ['-force', '-batch', '-'], { lineBudget: 4096, timeoutMs: 60_000 }, false);
  }

  /** Whether this script can run in the session now (else: run it in its own process). */
  accepts(names: VethNames): boolean {
    if (!this.idle) return false;
    if (this.started && names.mentioned.some((n) => this.deleted.has(n))) this.end();
    return true;
  }

  async run(script: string, lines: number, names: VethNames): Promise<SessionResult> {
    for (const n of names.deleted) this.deleted.add(n);
    return this.exchange(script + END_LINE, lines + 1);
  }

  protected override endsAfter(r: SessionResult): boolean {
    return r.died || r.failures.length > 0 || r.unattributed !== '';
  }

  protected override onStart(restart: boolean): void {
    ipSessionStats.starts++;
    if (restart) ipSessionStats.restarts++;
  }

  protected override onRun(): void {
    ipSessionStats.batches++;
  }

  protected override onStop(): void {
    this.deleted = new Set();
  }

  protected onOutput(unit: UnitSpan): void {
    const marker = `Command failed -:${unit.end}\n`;
    const at = this.stderrText.indexOf(marker);
    if (at < 0) return;
    const text = this.stderrText.slice(0, at + marker.length);
    this.stderrText = this.stderrText.slice(at + marker.length);
    const parsed = parseIpErrors(text);
    const failures = parsed.failures.filter((f) => f.line !== unit.end).map((f) => ({ line: f.line - unit.base, message: f.message }));
    this.complete({ failures, unattributed: parsed.unattributed, died: false });
  }

  protected died(code: number | null, unit: UnitSpan): SessionResult {
    const parsed = parseIpErrors(this.stderrText);
    const failures = parsed.failures.filter((f) => f.line > unit.base && f.line < unit.end).map((f) => ({ line: f.line - unit.base, message: f.message }));
    const why = `ip exited (${code ?? 'killed'}) in the middle of a batch`;
    return { failures, unattributed: parsed.unattributed === '' ? why : `${parsed.unattributed}; ${why}`, died: true };
  }
}
