// One long-lived `ip -force -batch -` per worker thread, fed a batch's script at a time, so a
// batch pays no process start (measured here: ~4-5 ms per start through the launcher, against
// ~1 ms of kernel work for a lone veth creation; docs/performance.md, "ip session").
//
// How a batch's end is found: after the script we send one line that always fails,
// `link add name lo type veth` (every namespace has a `lo`: "File exists"). ip reports each
// failure on stderr as "Command failed -:N", N counting every line it has read since it started,
// so the failure of our end line, at a line number we know, closes the batch; the failures before
// it are the batch's, at their number minus the lines sent before the batch.
//
// What a long-lived ip gets wrong, and how we avoid it: ip caches name → ifindex for the devices
// it has looked up. A bridge deleted and created again under the same name keeps its old index in
// that cache (seen here: `master br0` then fails with "Invalid argument"). So a session only runs
// batches of veth creations/deletions; a batch that touches a bridge runs in its own process and
// ends the session. The session also ends after any failed line, when a script names a veth this
// session has deleted (a name reused after its deletion), and every LINE_BUDGET lines.
import { parseIpErrors, type IpFailure } from '../batching/plan-ip.js';
import { startStreamingTool, type StreamingTool } from './spawn.js';

const END_LINE = 'link add name lo type veth\n';

/** Counters for this thread's sessions (tests check that batches really share a process). */
export const ipSessionStats = { starts: 0, batches: 0, answeredBeforeIp: 0 };
const LINE_BUDGET = 4096;
/** a batch that takes longer than this is treated as a dead session (ip hung) */
const BATCH_TIMEOUT_MS = 60_000;

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

interface Waiter {
  readonly endLine: number;
  readonly base: number;
  readonly resolve: (r: SessionResult) => void;
}

export class IpSession {
  private tool: StreamingTool | null = null;
  private linesRead = 0;
  private stderr = '';
  private waiter: Waiter | null = null;
  /** veths this session has deleted: their cached indexes are stale */
  private deleted = new Set<string>();
  private busy = false;
  private endWhenIdle = false;

  constructor(private readonly ipPath: string) {}

  /** Whether this script can run in the session now (else: run it in its own process). */
  accepts(names: VethNames, lines: number): boolean {
    if (this.busy) return false;
    const reused = (n: string): boolean => this.deleted.has(n);
    if (this.tool !== null && (this.linesRead + lines + 1 > LINE_BUDGET || names.mentioned.some(reused))) this.end();
    return true;
  }

  async run(script: string, lines: number, names: VethNames): Promise<SessionResult> {
    this.busy = true;
    try {
      for (const n of names.deleted) this.deleted.add(n);
      const tool = this.tool ?? this.start();
      ipSessionStats.batches++;
      const base = this.linesRead;
      this.linesRead += lines + 1;
      const endLine = this.linesRead;
      const result = new Promise<SessionResult>((resolve) => {
        this.waiter = { endLine, base, resolve };
      });
      tool.hold(true);
      const timer = setTimeout(() => {
        // ip never answered: end it; the exit handler fails the batch, and the caller asks the
        // kernel what took effect.
        this.endWhenIdle = true;
        tool.kill();
      }, BATCH_TIMEOUT_MS);
      tool.write(script + END_LINE);
      const r = await result;
      clearTimeout(timer);
      tool.hold(false);
      if (r.died || r.failures.length > 0 || r.unattributed !== '') this.endWhenIdle = true;
      return r;
    } finally {
      this.busy = false;
      if (this.endWhenIdle) this.end();
    }
  }

  /** Stop the session (a bridge changed, or a failure): the next batch starts a fresh ip. */
  end(): void {
    if (this.busy) {
      // A batch is running in it (another task of this thread): end once that batch is done.
      this.endWhenIdle = true;
      return;
    }
    this.endWhenIdle = false;
    const t = this.tool;
    this.tool = null;
    this.linesRead = 0;
    this.stderr = '';
    this.deleted = new Set();
    t?.kill();
  }

  private start(): StreamingTool {
    ipSessionStats.starts++;
    this.stderr = '';
    this.linesRead = 0;
    const tool: StreamingTool = startStreamingTool(this.ipPath, ['-force', '-batch', '-'], {
      stderr: (chunk) => {
        if (this.tool !== tool) return;
        this.stderr += chunk;
        this.settleIfDone();
      },
      exit: (code) => {
        // A session we ended has nothing to report; only the current one's death fails a batch.
        if (this.tool !== tool) return;
        this.tool = null;
        const w = this.waiter;
        if (w === null) return;
        this.waiter = null;
        const parsed = parseIpErrors(this.stderr);
        this.stderr = '';
        const failures = parsed.failures.filter((f) => f.line > w.base && f.line < w.endLine).map((f) => ({ line: f.line - w.base, message: f.message }));
        const why = `ip exited (${code ?? 'killed'}) in the middle of a batch`;
        w.resolve({ failures, unattributed: parsed.unattributed === '' ? why : `${parsed.unattributed}; ${why}`, died: true });
      },
    });
    this.tool = tool;
    return tool;
  }

  private settleIfDone(): void {
    const w = this.waiter;
    if (w === null) return;
    const marker = `Command failed -:${w.endLine}\n`;
    const at = this.stderr.indexOf(marker);
    if (at < 0) return;
    const text = this.stderr.slice(0, at + marker.length);
    this.stderr = this.stderr.slice(at + marker.length);
    this.waiter = null;
    const parsed = parseIpErrors(text);
    const failures = parsed.failures.filter((f) => f.line !== w.endLine).map((f) => ({ line: f.line - w.base, message: f.message }));
    w.resolve({ failures, unattributed: parsed.unattributed, died: false });
  }
}
