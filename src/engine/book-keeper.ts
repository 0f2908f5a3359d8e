// Writing the books: intents before the kernel is touched, results after, and — when the disk is
// full — the changes of teardown kept in memory and written once there is space again. Teardown
// must not fail for want of disk: dockerd only logs a failed DeleteEndpoint and forgets the
// endpoint, so an error there would leak its veth for good.
import type { Logger } from 'pino';
import type { BatchHooks } from '../batching/batcher.js';
import type { Intent, IntentItem } from '../state/records.js';
import type { BookChanges, StateStore } from '../state/store.js';

/** How often books that could not be written (a full disk) are tried again. */
const RETRY_MS = 2000;

export class BookKeeper {
  /** book changes of teardown that could not be written yet, oldest first */
  private unsaved: BookChanges[] = [];
  private retry: NodeJS.Timeout | null = null;
  /** ids of intents the engine writes itself: negative, never a batch id */
  private nextOwnIntentId: number;
  /** the first batch id this run may use (after any left in the books) */
  readonly firstBatchId: number;

  constructor(
    readonly store: StateStore,
    private readonly log: Logger,
  ) {
    const intents = store.loadIntents();
    this.firstBatchId = Math.max(0, ...intents.map((i) => i.batchId)) + 1;
    this.nextOwnIntentId = Math.min(0, ...intents.map((i) => i.batchId)) - 1;
  }

  /** Writes an intent of the engine's own (not a batch's); returns its id. */
  writeOwnIntent(items: IntentItem[]): number {
    const batchId = this.nextOwnIntentId--;
    const intent: Intent = { batchId, createdAt: Date.now(), items };
    this.store.writeIntent(intent);
    return batchId;
  }

  /**
   * Commits `c` after any earlier teardown changes that could not be written. When writing fails,
   * `keep` (the teardown part of `c`) is kept to be written later, in order, and the error thrown.
   */
  write(c: BookChanges, keep: BookChanges | null): void {
    try {
      if (this.unsaved.length === 0) this.store.commit(c);
      else {
        this.store.commitAll([...this.unsaved, c]);
        this.unsaved = [];
        this.log.info('books written again: the changes kept while they could not be written are saved');
      }
    } catch (err) {
      if (keep !== null) {
        this.unsaved.push(keep);
        this.log.warn({ err, pending: this.unsaved.length, networkIds: keep.deleteNetworks ?? [], endpointIds: keep.deleteEndpoints ?? [] }, 'cannot write the books (disk full?): teardown done in the kernel, its book changes kept and retried');
        this.scheduleRetry();
      }
      throw err;
    }
  }

  private scheduleRetry(): void {
    if (this.retry !== null) return;
    this.retry = setTimeout(() => {
      this.retry = null;
      this.flush();
    }, RETRY_MS);
    this.retry.unref();
  }

  /** Writes the kept teardown changes; true when nothing is left unwritten. */
  flush(): boolean {
    if (this.unsaved.length === 0) return true;
    try {
      this.store.commitAll(this.unsaved);
      this.log.info({ changes: this.unsaved.length }, 'books written again: the changes kept while they could not be written are saved');
      this.unsaved = [];
      return true;
    } catch {
      this.scheduleRetry();
      return false;
    }
  }

  /** Book changes kept because the books could not be written. */
  get unsavedCount(): number {
    return this.unsaved.length;
  }

  /** What the pipelines call around each batch. */
  hooks(): BatchHooks {
    return {
      beforeRun: (batchId, items) => this.store.writeIntent({ batchId, createdAt: Date.now(), items }),
      afterRun: (batchId, hadIntent, changes, mustKeep) => {
        if (changes.length === 0 && !hadIntent) return;
        const intent = hadIntent ? batchId : null;
        this.write(mergeChanges(changes, intent), mustKeep.length > 0 ? mergeChanges(mustKeep, intent) : null);
      },
      settleFailed: (batchId, err, intent) => {
        this.log.error({ batchId, err, ...idsOf(intent) }, 'booking the result of an operation failed; the operation is answered with an error');
      },
    };
  }

  close(): void {
    if (this.retry !== null) clearTimeout(this.retry);
    this.retry = null;
    this.flush();
  }
}

export function mergeChanges(list: readonly BookChanges[], intentBatch: number | null): BookChanges {
  return {
    putNetworks: list.flatMap((c) => c.putNetworks ?? []),
    deleteNetworks: list.flatMap((c) => c.deleteNetworks ?? []),
    putEndpoints: list.flatMap((c) => c.putEndpoints ?? []),
    deleteEndpoints: list.flatMap((c) => c.deleteEndpoints ?? []),
    clearIntents: [...list.flatMap((c) => c.clearIntents ?? []), ...(intentBatch === null ? [] : [intentBatch])],
  };
}

/** The ids an intent concerns, for log lines. */
export function idsOf(intent: IntentItem | null): { networkId?: string; endpointId?: string } {
  if (intent === null) return {};
  return 'endpointId' in intent ? { endpointId: intent.endpointId } : { networkId: intent.networkId };
}
