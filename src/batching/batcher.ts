// Coalesces ready operations into batches and keeps up to `maxInFlight` batches running.
//
// When to close a batch:
//  - the pipeline is idle: at once (a lone request must not wait for a window);
//  - the batch is full (batchMax);
//  - otherwise, while other batches run, after windowMs, or when a running batch finishes.
// So under load the next batch fills while the current one runs (pipelining), and the window
// only matters when more than one batch may run at a time.
//
// Operations are taken strictly in submission order, and batches start in that order. Callers
// (the scheduler) guarantee that two operations of one endpoint are never pending together, so
// batches that run side by side never touch the same kernel object.
import { channel } from 'node:diagnostics_channel';
import type { BatchResponse, OpResult, OpWork } from './work.js';
import type { BookChanges } from '../state/store.js';
import type { IntentItem } from '../state/records.js';

export type Work = Omit<OpWork, 'opId'>;

export interface BatchEntry {
  readonly work: Work;
  readonly intent: IntentItem | null;
  /**
   * Called synchronously once the batch's kernel work is done, before any request is answered:
   * updates the in-memory books and returns what to persist. All entries' changes of one batch
   * are committed in one transaction.
   */
  readonly settle: (result: OpResult) => BookChanges | null;
  /**
   * Teardown (deleting an endpoint or network, revoking ports): its kernel work runs and counts
   * even when the books cannot be written (a full disk). dockerd only logs a failed teardown and
   * forgets the object, so failing it would leak kernel objects; the caller keeps the book
   * changes and writes them once it can (see BatchHooks.afterRun).
   */
  readonly teardown?: boolean;
}

export interface BatchHooks {
  /** persist what the batch is about to do (must be synchronous: it runs before the kernel) */
  beforeRun(batchId: number, intents: IntentItem[]): void;
  /**
   * Persist what it did. `mustKeep` holds the changes of teardown operations: if writing fails,
   * the hook keeps them to write later instead of losing them (it throws either way, and only
   * the other operations of the batch fail).
   */
  afterRun(batchId: number, hadIntent: boolean, changes: BookChanges[], mustKeep: BookChanges[]): void;
  /** a settle callback threw: a bug in the bookkeeping; the operation fails with this error */
  settleFailed?(batchId: number, err: unknown, intent: IntentItem | null): void;
}

export interface BatchRunner {
  (req: { batchId: number; ops: OpWork[]; linkGroup: number }): Promise<BatchResponse>;
}

export interface BatcherOptions {
  readonly batchMax: number;
  readonly windowMs: number;
  readonly maxInFlight: number;
  /** names the pipeline in diagnostics events */
  readonly label?: string;
  /**
   * Lets a pipeline give way to another one: while it returns false, no batch starts unless the
   * queue holds a full batch. Whoever makes it true again calls poke().
   */
  readonly mayStart?: () => boolean;
  /**
   * With mayStart: how long the oldest queued operation may be held back by it. Past that, a
   * batch starts anyway. Without it, steady arrivals on the other pipeline would hold this one
   * back until a full batch had gathered, and that big batch would then block the other
   * pipeline for a long time.
   */
  readonly maxDeferMs?: number;
  /**
   * How long an idle pipeline waits for company before starting a batch (0: start at once). The
   * driver returns a small window while many requests are in flight, so the first request of a
   * burst does not go alone and make the rest of the burst wait for it; a lone request still
   * starts at once.
   */
  readonly gatherMs?: () => number;
  /** called each time one of this pipeline's batches has finished */
  readonly onBatchDone?: () => void;
  /** called with what each batch did, once its requests are answered (the debug log) */
  readonly onBatch?: (ev: BatchEvent) => void;
}

interface Pending {
  readonly entry: BatchEntry;
  readonly resolve: (r: OpResult) => void;
  readonly at: number;
}

export const batchChannel = channel('bb:batch:applied');

export interface BatchEvent {
  readonly batchId: number;
  readonly label: string;
  readonly size: number;
  readonly failed: number;
  readonly queueMs: number;
  readonly timings: BatchResponse['timings'] | null;
}

const LINK_GROUP_BASE = 0x62620000; // "bb" in the high bytes: never a group someone else uses

/** Batch ids: several batchers share one sequence, so intents (keyed by batch id) never collide. */
export class BatchIds {
  constructor(private nextId = 1) {}
  next(): number {
    return this.nextId++;
  }
}

export class Batcher {
  private queue: Pending[] = [];
  private inFlight = 0;
  private timer: NodeJS.Timeout | null = null;
  private deferTimer: NodeJS.Timeout | null = null;
  /** the gather window of the next batch has passed */
  private gathered = false;
  private readonly ids: BatchIds;
  private nextOpId = 1;
  private idleWaiters: Array<() => void> = [];
  /** batches finished so far: lets an observer tell whether any batch ran while it looked */
  private finishedBatches = 0;

  constructor(
    private readonly run: BatchRunner,
    private readonly hooks: BatchHooks,
    private readonly opts: BatcherOptions,
    ids: number | BatchIds = 1,
  ) {
    this.ids = typeof ids === 'number' ? new BatchIds(ids) : ids;
  }

  get queued(): number {
    return this.queue.length;
  }

  get running(): number {
    return this.inFlight;
  }

  get finished(): number {
    return this.finishedBatches;
  }

  submit(entry: BatchEntry): Promise<OpResult> {
    return new Promise<OpResult>((resolve) => {
      this.queue.push({ entry, resolve, at: performance.now() });
      this.pump();
    });
  }

  /** Resolves when nothing is queued or running (graceful shutdown). */
  drained(): Promise<void> {
    if (this.queue.length === 0 && this.inFlight === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  /** Re-evaluate whether a batch may start (see BatcherOptions.mayStart). */
  poke(): void {
    this.pump();
  }

  private pump(): void {
    while (this.queue.length > 0 && this.inFlight < this.opts.maxInFlight) {
      if (this.opts.mayStart !== undefined && this.queue.length < this.opts.batchMax && !this.opts.mayStart() && !this.deferredTooLong()) return;
      if (this.queue.length >= this.opts.batchMax) {
        this.dispatch();
        continue;
      }
      if (this.inFlight === 0) {
        const gather = this.gathered ? 0 : (this.opts.gatherMs?.() ?? 0);
        if (gather <= 0) {
          this.dispatch();
          continue;
        }
        if (this.timer === null) {
          // When the window ends, pump again rather than dispatch: mayStart is asked once more.
          this.timer = setTimeout(() => {
            this.timer = null;
            this.gathered = true;
            this.pump();
          }, gather);
        }
        return;
      }
      if (this.timer === null) {
        this.timer = setTimeout(() => {
          this.timer = null;
          if (this.queue.length > 0 && this.inFlight < this.opts.maxInFlight) this.dispatch();
          this.pump();
        }, this.opts.windowMs);
      }
      return;
    }
  }

  /** True once the oldest operation has been held back by mayStart for maxDeferMs (else a timer is set). */
  private deferredTooLong(): boolean {
    const limit = this.opts.maxDeferMs;
    const oldest = this.queue[0];
    if (limit === undefined || oldest === undefined) return false;
    const left = oldest.at + limit - performance.now();
    if (left <= 0) return true;
    if (this.deferTimer === null) {
      this.deferTimer = setTimeout(() => {
        this.deferTimer = null;
        this.pump();
      }, Math.ceil(left));
    }
    return false;
  }

  private dispatch(): void {
    this.gathered = false;
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    const taken = this.queue.splice(0, this.opts.batchMax);
    const batchId = this.ids.next();
    this.inFlight++;
    void this.execute(batchId, taken).finally(() => {
      this.finishedBatches++;
      this.inFlight--;
      this.pump();
      this.opts.onBatchDone?.();
      if (this.queue.length === 0 && this.inFlight === 0) {
        const waiters = this.idleWaiters;
        this.idleWaiters = [];
        for (const w of waiters) w();
      }
    });
  }

  private async execute(batchId: number, all: Pending[]): Promise<void> {
    const t0 = performance.now();
    let taken = all;
    let intents = taken.flatMap((p) => (p.entry.intent ? [p.entry.intent] : []));
    if (intents.length > 0) {
      try {
        this.hooks.beforeRun(batchId, intents);
      } catch (err) {
        // The intent cannot be written (a full disk): only teardown goes on, without an intent; a
        // crash in its middle leaves booked objects whose veths are gone, which reconciliation
        // unbooks. Creations fail before they touch the kernel.
        const message = `batch ${batchId}: could not write the books: ${errText(err)}`;
        for (const p of taken) if (p.entry.teardown !== true) p.resolve({ opId: 0, ok: false, message });
        taken = taken.filter((p) => p.entry.teardown === true);
        intents = [];
        if (taken.length === 0) return;
      }
    }
    const ops: OpWork[] = taken.map((p) => ({ ...p.entry.work, opId: this.nextOpId++ }));
    let response: BatchResponse | null = null;
    let results: OpResult[];
    try {
      response = await this.run({ batchId, ops, linkGroup: LINK_GROUP_BASE + (batchId % 4096) });
      const byId = new Map(response.results.map((r) => [r.opId, r]));
      results = ops.map((o) => byId.get(o.opId) ?? { opId: o.opId, ok: false, message: 'no result from worker' });
    } catch (err) {
      // A worker that died: every request of the batch gets an error, none is left hanging.
      const message = `batch ${batchId} failed: ${errText(err)}`;
      results = ops.map((o) => ({ opId: o.opId, ok: false, message }));
    }
    const changes: BookChanges[] = [];
    const mustKeep: BookChanges[] = [];
    taken.forEach((p, i) => {
      const r = results[i] as OpResult;
      try {
        const c = p.entry.settle(r);
        if (c !== null) (p.entry.teardown === true && r.ok ? mustKeep : changes).push(c);
      } catch (err) {
        // A bug in the bookkeeping: this request fails (the books may not say what the kernel
        // does; reconciliation compares them), the others of the batch are unaffected.
        this.hooks.settleFailed?.(batchId, err, p.entry.intent);
        results[i] = { opId: r.opId, ok: false, message: `batch ${batchId}: internal error while booking the result: ${errText(err)}` };
      }
    });
    try {
      this.hooks.afterRun(batchId, intents.length > 0, [...mustKeep, ...changes], mustKeep);
    } catch (err) {
      const message = `batch ${batchId}: could not write the books: ${errText(err)}`;
      results = results.map((r, i) => (taken[i]?.entry.teardown === true ? r : { ...r, ok: false, message }));
    }
    taken.forEach((p, i) => p.resolve(results[i] as OpResult));
    if (batchChannel.hasSubscribers || this.opts.onBatch !== undefined) {
      const ev: BatchEvent = {
        batchId,
        label: this.opts.label ?? 'batch',
        size: taken.length,
        failed: results.filter((r) => !r.ok).length,
        queueMs: performance.now() - t0,
        timings: response?.timings ?? null,
      };
      batchChannel.publish(ev);
      this.opts.onBatch?.(ev);
    }
  }
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
