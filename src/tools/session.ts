// A long-lived tool fed one unit of work at a time on stdin: the shared half of the ip session
// (src/ip/session.ts) and the iptables-restore session (src/firewall/iptables/session.ts).
//
// Why sessions at all: a process start through the launcher costs ~4-5 ms, and a short-lived
// iptables-restore that deleted rules waits a full RCU grace period in close(2) at exit; a live
// process pays neither (docs/performance.md). What differs between the tools is only how the
// end of a unit shows (a failing marker line on stderr for ip, an echoed comment on stdout for
// iptables-restore) and what a death means; the lifecycle is here:
//  - one unit at a time (`idle`); a unit that takes longer than `timeoutMs` kills the tool;
//  - line numbers count from the process start, so each unit knows its `base`;
//  - the tool is replaced after `lineBudget` lines, and after a unit the subclass says ends it;
//  - a tool that exits in the middle of a unit resolves that unit through `died()`;
//  - an idle session never keeps a thread or the process alive.
import { startStreamingTool, type StreamingTool } from './spawn.js';

export interface SessionLimits {
  /** the tool is replaced once it would read more lines than this */
  readonly lineBudget: number;
  /** a unit that takes longer is treated as a hung tool */
  readonly timeoutMs: number;
}

/** Where the current unit sits in the tool's input: lines (base, end] are its own. */
export interface UnitSpan {
  readonly base: number;
  readonly end: number;
}

interface Pending<R> extends UnitSpan {
  readonly resolve: (r: R) => void;
}

export abstract class ToolSession<R> {
  private tool: StreamingTool | null = null;
  private pending: Pending<R> | null = null;
  private busy = false;
  private endWhenIdle = false;
  private linesRead = 0;
  /** how often this session has started its tool (a start after the first is a restart) */
  private launches = 0;
  /** output of the current tool not yet consumed by a unit */
  protected stdoutText = '';
  protected stderrText = '';

  constructor(
    protected readonly file: string,
    private readonly args: readonly string[],
    private readonly limits: SessionLimits,
    private readonly wantsStdout: boolean,
  ) {}

  /** No unit is running: a new one can start now (else run it in a process of its own). */
  get idle(): boolean {
    return !this.busy;
  }

  protected get started(): boolean {
    return this.tool !== null;
  }

  /** The unit being run, if any. */
  protected get current(): UnitSpan | null {
    return this.pending;
  }

  /**
   * Writes `text` (`lines` lines, the subclass's end marker included) and resolves with what the
   * subclass reports through complete() or died().
   */
  protected async exchange(text: string, lines: number): Promise<R> {
    this.busy = true;
    try {
      if (this.tool !== null && this.linesRead + lines > this.limits.lineBudget) this.stop();
      const tool = this.tool ?? this.launch();
      this.onRun();
      const base = this.linesRead;
      this.linesRead += lines;
      const result = new Promise<R>((resolve) => {
        this.pending = { base, end: this.linesRead, resolve };
      });
      tool.hold(true);
      const timer = setTimeout(() => {
        // The tool never answered: end it; its exit resolves the unit through died().
        this.endWhenIdle = true;
        tool.kill();
      }, this.limits.timeoutMs);
      tool.write(text);
      const r = await result;
      clearTimeout(timer);
      tool.hold(false);
      if (this.endsAfter(r)) this.endWhenIdle = true;
      return r;
    } finally {
      this.busy = false;
      if (this.endWhenIdle) this.end();
    }
  }

  /** The current unit is done (called by the subclass from onOutput). */
  protected complete(r: R): void {
    const p = this.pending;
    this.pending = null;
    p?.resolve(r);
  }


  /** Stop the tool; with a unit running, once that unit is done. The next unit starts a fresh one. */
  end(): void {
    if (this.busy) {
      this.endWhenIdle = true;
      return;
    }
    this.stop();
  }

  private stop(): void {
    this.endWhenIdle = false;
    const t = this.tool;
    this.tool = null;
    this.linesRead = 0;
    this.stdoutText = '';
    this.stderrText = '';
    this.onStop();
    t?.kill();
  }

  private launch(): StreamingTool {
    this.onStart(this.launches++ > 0);
    this.stdoutText = '';
    this.stderrText = '';
    this.linesRead = 0;
    const tool: StreamingTool = startStreamingTool(this.file, this.args, {
      ...(this.wantsStdout
        ? {
            stdout: (chunk: string) => {
              if (this.tool !== tool) return;
              this.stdoutText += chunk;
              if (this.pending !== null) this.onOutput(this.pending);
            },
          }
        : {}),
      stderr: (chunk) => {
        if (this.tool !== tool) return;
        this.stderrText += chunk;
        if (this.pending !== null) this.onOutput(this.pending);
      },
      exit: (code) => {
        // A tool we stopped has nothing to report; only the current one's death fails a unit.
        if (this.tool !== tool) return;
        this.tool = null;
        const p = this.pending;
        this.pending = null;
        const r = p === null ? null : this.died(code, p);
        this.stdoutText = '';
        this.stderrText = '';
        if (p !== null && r !== null) p.resolve(r);
      },
    });
    this.tool = tool;
    return tool;
  }

  /** New output arrived while `unit` runs: call complete() once its end shows. */
  protected abstract onOutput(unit: UnitSpan): void;
  /** The tool exited (code, or null when killed) in the middle of `unit`. */
  protected abstract died(code: number | null, unit: UnitSpan): R;
  /** Whether the tool must be replaced after this unit (a failure may leave it unsure). */
  protected endsAfter(_r: R): boolean {
    return false;
  }

  /** The tool starts; `restart`: this session had one before (replaced after a failure, a death, its line budget or a bridge change). */
  protected onStart(_restart: boolean): void {}
  protected onRun(): void {}
  protected onStop(): void {}
}
