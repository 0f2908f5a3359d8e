// The four pipelines kernel work goes through, each coalescing its own operations into batches
// (docs/architecture.md, "Batching"):
//  - veth: CreateEndpoint and all network work; one batch at a time (veth batches all queue on
//    the kernel's rtnl lock: a second one in flight was slower, 442–470 vs 486–500 lifecycles/s);
//  - firewall: publishing and revoking ports, which need no ip work and so never wait behind a
//    veth batch's RCU grace periods; one transaction at a time (two concurrent nft commits make
//    one of them retry);
//  - deletion: endpoint deletions, which give way to creations: a container start waits for its
//    creation, and a group delete holds rtnl for most of its run (a creation started during a
//    136-veth group delete took 88 ms instead of 28 ms). Deletions wait until no creation is
//    queued, but for at most `deleteDeferMs`: under steady arrivals the creation pipeline is
//    never idle, and a deletion batch grown to 256 then holds rtnl for ~200 ms;
//  - sandbox: a CNI attachment's setup inside its pod's namespace (addresses, link up, routes),
//    one process per pod run side by side (ip/sandbox.ts). Inside the veth batch, these kept the
//    veth pipeline from starting the next host-side script for most of the batch's time; here
//    they run beside it. They touch only objects inside their pod's namespace.
// Batch ids come from one sequence, so intents (keyed by batch id) never collide.
import { BatchIds, Batcher, type BatchEntry, type BatchHooks } from '../batching/batcher.js';
import { isFirewallOnly, isSandboxOnly, type BatchRequest, type BatchResponse, type OpResult } from '../batching/work.js';

export interface PipelineTuning {
  /** most operations in one batch */
  readonly batchMax: number;
  /**
   * While at least `gatherMinActive` endpoint requests are in flight, an idle pipeline waits this
   * long for company before it starts a batch; a lone request never waits. Without it, the first
   * request of each burst ran alone and the rest waited for it: half the batches held one
   * operation. Measured, one run after the other: 128 clients 626–632/s → 662–705 with 3 ms;
   * 32 clients 314–339 → 351–460; open-loop CreateEndpoint p99 79–94 ms → 56–62.
   */
  readonly gatherMs: number;
  readonly gatherMinActive: number;
  /** the most a deletion waits for creations to finish (see the header) */
  readonly deleteDeferMs: number;
}

export const DEFAULT_TUNING: PipelineTuning = { batchMax: 256, gatherMs: 3, gatherMinActive: 8, deleteDeferMs: 25 };

export class Pipelines {
  readonly veth: Batcher;
  readonly firewall: Batcher;
  readonly deletion: Batcher;
  readonly sandbox: Batcher;
  /** endpoint requests being handled right now (the gather window depends on it) */
  activeOps = 0;

  constructor(run: (req: BatchRequest) => Promise<BatchResponse>, hooks: BatchHooks, tuning: PipelineTuning, firstBatchId: number) {
    const ids = new BatchIds(firstBatchId);
    const gatherMs = (): number => (this.activeOps >= tuning.gatherMinActive ? tuning.gatherMs : 0);
    // windowMs only matters with more than one batch in flight (the sandbox pipeline).
    const common = { batchMax: tuning.batchMax, windowMs: tuning.gatherMs, maxInFlight: 1, gatherMs };
    this.veth = new Batcher(run, hooks, { ...common, label: 'veth', onBatchDone: () => this.deletion.poke() }, ids);
    this.firewall = new Batcher(run, hooks, { ...common, label: 'firewall' }, ids);
    this.deletion = new Batcher(
      run,
      hooks,
      { ...common, label: 'delete', mayStart: () => this.veth.queued + this.veth.running === 0, maxDeferMs: tuning.deleteDeferMs },
      ids,
    );
    this.sandbox = new Batcher(run, hooks, { ...common, label: 'sandbox', maxInFlight: 4 }, ids);
  }

  /** Firewall-only and in-pod work to their own pipelines, the rest to the veth pipeline. */
  submit(entry: BatchEntry): Promise<OpResult> {
    const to = isFirewallOnly(entry.work) ? this.firewall : isSandboxOnly(entry.work) ? this.sandbox : this.veth;
    return to.submit(entry);
  }

  submitDeletion(entry: BatchEntry): Promise<OpResult> {
    return this.deletion.submit(entry);
  }

  get all(): readonly Batcher[] {
    return [this.veth, this.firewall, this.deletion, this.sandbox];
  }

  get queueDepth(): number {
    return this.all.reduce((n, b) => n + b.queued + b.running, 0);
  }

  /** veth work (creations or deletions) queued or running */
  get vethWorkPending(): boolean {
    return this.veth.queued + this.veth.running + this.deletion.queued + this.deletion.running > 0;
  }

  drained(): Promise<void> {
    return Promise.all(this.all.map((b) => b.drained())).then(() => undefined);
  }
}
