// What the engine's parts share: the books, the gate and lanes that keep the original driver's
// locking semantics, the pipelines, the port allocator and the firewall planner. One per engine;
// networks.ts, endpoints.ts and publishing.ts are the behaviour on top.
import type { Logger } from 'pino';
import type { BatchEntry, BatchEvent } from '../batching/batcher.js';
import type { OpResult, OpWork } from '../batching/work.js';
import { ShuttingDownError } from '../errors.js';
import type { FirewallBackend } from '../firewall/types.js';
import { FifoGate } from '../scheduler/gate.js';
import { Lanes } from '../scheduler/lanes.js';
import { Pipelines, type PipelineTuning } from '../scheduler/pipelines.js';
import type { IntentItem } from '../state/records.js';
import type { BookChanges, StateStore } from '../state/store.js';
import type { ToolEnv } from '../tools/env.js';
import type { KernelExecutor } from '../workers/pool.js';
import { BookKeeper } from './book-keeper.js';
import { Books } from './books.js';
import { PortAllocator } from './port-allocator.js';

export interface EngineOptions extends PipelineTuning {
  /** answer DeleteEndpoint before the kernel has deleted the veth, under load (endpoints.ts) */
  readonly writeBehindDeletes: boolean;
  /**
   * A never-joined endpoint older than this whose address a new endpoint asks for is taken to
   * be left over (its creator forgot it) and removed; a younger one makes the new one fail.
   */
  readonly staleEndpointGraceMs: number;
  /**
   * How long a new endpoint waits for a live-looking holder of its address to vanish before it
   * fails. dockerd hands an address out again only once it believes the holder gone; after a
   * dockerd restart the holder's container was killed, but the kernel destroys its network
   * namespace (and with it our veth) asynchronously, some milliseconds later.
   */
  readonly holderVanishWaitMs: number;
}

export const DEFAULT_ENGINE_OPTIONS: Omit<EngineOptions, keyof PipelineTuning> = { writeBehindDeletes: false, staleEndpointGraceMs: 5000, holderVanishWaitMs: 1500 };

export interface EngineDeps {
  readonly store: StateStore;
  /** runs batches in worker threads, and probes for interfaces */
  readonly exec: KernelExecutor;
  /** runs tools for the engine's own kernel reads (probes, reconciliation) */
  readonly tools: ToolEnv;
  readonly firewall: FirewallBackend;
  readonly log: Logger;
}

/**
 * At debug level, one line per batch: which pipeline, how many operations it carried, and the
 * tool runs it took — `ipRuns`: ip scripts (each in its own process or in a long-lived ip
 * session; in the sandbox pipeline, one process per pod), `fwTransactions`: iptables-restore
 * transactions. How far requests shared batches is read from these (docs/cni.md, "Cost per pod";
 * test/netns/cni-batching.test.ts).
 */
function batchLog(log: Logger): ((ev: BatchEvent) => void) | undefined {
  if (!log.isLevelEnabled('debug')) return undefined;
  return (ev) => {
    const t = ev.timings;
    log.debug({ batch: ev.batchId, pipeline: ev.label, ops: ev.size, failed: ev.failed, ms: Math.round(ev.queueMs), ipRuns: t?.ipSpawns ?? 0, fwTransactions: t?.fwSpawns ?? 0 }, 'batch done');
  };
}

export class EngineCore {
  readonly books = new Books();
  readonly gate = new FifoGate();
  readonly lanes = new Lanes();
  readonly keeper: BookKeeper;
  readonly pipelines: Pipelines;
  readonly ports = new PortAllocator();
  /** the link group on every interface we create: how reconciliation knows what is ours */
  readonly ownerGroup: number;
  /**
   * Endpoints joined since this process started and not left. Only for deciding whether an
   * address holder is alive; the kernel (where its container end is) has the final word, so
   * this is not persisted.
   */
  readonly joined = new Set<string>();
  /** since when reconciliation has seen each endpoint parked (reconcile/plan.ts) */
  readonly parkedSince = new Map<string, number>();
  closing = false;
  /** see BatchRequest.bridgeEpoch; bumped under the exclusive gate, before the bridge work */
  bridgeEpoch = 0;

  constructor(
    readonly deps: EngineDeps,
    readonly opts: EngineOptions,
  ) {
    this.books.load(deps.store.loadNetworks(), deps.store.loadEndpoints());
    this.ownerGroup = deps.store.ownerGroup();
    for (const e of this.books.endpoints.values()) this.ports.restore(e.id, e.mappings);
    this.keeper = new BookKeeper(deps.store, deps.log);
    this.pipelines = new Pipelines((req) => deps.exec.runBatch({ ...req, bridgeEpoch: this.bridgeEpoch }), this.keeper.hooks(), opts, this.keeper.firstBatchId, batchLog(deps.log));
  }

  get log(): Logger {
    return this.deps.log;
  }

  get firewall(): FirewallBackend {
    return this.deps.firewall;
  }

  checkOpen(): void {
    if (this.closing) throw new ShuttingDownError('batchbridge is shutting down');
  }

  /** Kernel work of one operation into its pipeline (firewall-only work to the firewall one). */
  submit(work: Omit<OpWork, 'opId'>, intent: IntentItem | null, settle: (r: OpResult) => BookChanges | null, teardown = false): Promise<OpResult> {
    const entry: BatchEntry = { work, intent, settle, teardown };
    return this.pipelines.submit(entry);
  }

  /**
   * Runs fn in the endpoint's lane (after the endpoint's earlier operations) holding the gate
   * shared (network creation and deletion hold it exclusively). async: a refusal (shutting
   * down) must reject the returned promise, never throw synchronously.
   */
  async withEndpoint<T>(networkId: string, endpointId: string, fn: () => Promise<T>): Promise<T> {
    this.checkOpen();
    this.pipelines.activeOps++;
    try {
      return await this.lanes.run(networkId, endpointId, async () => {
        const got = this.gate.acquireShared();
        const release = typeof got === 'function' ? got : await got;
        try {
          return await fn();
        } finally {
          release();
        }
      });
    } finally {
      this.pipelines.activeOps--;
    }
  }

  /** Runs fn holding the gate exclusively: no endpoint operation runs meanwhile. */
  async exclusively<T>(fn: () => Promise<T>): Promise<T> {
    const release = await this.gate.acquireExclusive();
    try {
      return await fn();
    } finally {
      release();
    }
  }
}
