// The engine front ends call: networks, endpoints and publishing in domain terms, on one set of
// books, with the original driver's locking semantics (a FIFO gate network operations take
// exclusively, one lane per endpoint) and the kernel work of many requests batched (pipelines).
// Front ends (src/api for Docker, src/cni for CNI) turn their wire formats into these calls.
import { AddressAllocator } from './address-allocator.js';
import { Endpoints } from './endpoints.js';
import { EngineCore, type EngineDeps, type EngineOptions } from './core.js';
import { firewallState } from './firewall-state.js';
import { Networks } from './networks.js';
import { Publishing } from './publishing.js';
import { reconcile, type ReconcileOptions, type ReconcileTarget } from './reconcile/run.js';
import type { ReconcileReport } from './reconcile/plan.js';
import { FirewallWatchdog } from './watchdog.js';
import type { EngineStats } from './stats.js';

export class Engine {
  readonly core: EngineCore;
  readonly networks: Networks;
  readonly endpoints: Endpoints;
  readonly publishing: Publishing;
  /** addresses for networks whose addresses we hand out (CNI's daemon IPAM) */
  readonly addresses: AddressAllocator;
  /** the firewall watchdog, once watchdog() made it */
  firewallWatchdog: FirewallWatchdog | null = null;

  constructor(deps: EngineDeps, opts: EngineOptions) {
    this.core = new EngineCore(deps, opts);
    this.endpoints = new Endpoints(this.core);
    this.addresses = new AddressAllocator((net, cidr) => this.endpoints.addressTaken(net, cidr));
    this.networks = new Networks(this.core, this.endpoints);
    this.publishing = new Publishing(this.core, this.endpoints);
  }

  get books(): EngineCore['books'] {
    return this.core.books;
  }

  get stats(): EngineStats {
    return this.core.stats;
  }

  get ownerGroup(): number {
    return this.core.ownerGroup;
  }

  /** Operations queued or running in the pipelines (for load shedding). */
  get queueDepth(): number {
    return this.core.pipelines.queueDepth;
  }

  /** Book changes kept because the books could not be written (a full disk). */
  get unsavedBookChanges(): number {
    return this.core.keeper.unsavedCount;
  }

  flushUnsavedBooks(): boolean {
    return this.core.keeper.flush();
  }

  /** Endpoints whose veth vanished are removed with their ports (see Endpoints.settleVanished). */
  settleVanished(): Promise<number> {
    return this.endpoints.settleVanished();
  }

  /** Makes our firewall rules exactly what the books want. */
  syncFirewall(): Promise<void> {
    return this.core.firewall.sync(firewallState(this.core.books));
  }

  watchdog(intervalMs: number): FirewallWatchdog {
    this.firewallWatchdog = new FirewallWatchdog(this.core, this.core.log, intervalMs);
    return this.firewallWatchdog;
  }

  /** Reconcile: waits for in-flight work and holds off new work while it runs. */
  reconcile(opts: ReconcileOptions = {}): Promise<ReconcileReport> {
    const trigger = opts.trigger ?? 'demand';
    return this.core.exclusively(async () => {
      const t0 = performance.now();
      try {
        // A write-behind deletion in flight would look like an unfinished intent and an orphan veth.
        await this.endpoints.settleDeferred();
        this.core.keeper.flush();
        // Reconciliation may make a missing bridge again (in a process of its own).
        this.core.bridgeEpoch++;
        const report = await reconcile(this.reconcileTarget(), opts);
        this.core.stats.noteReconcile(trigger, report);
        return report;
      } catch (err) {
        if (opts.dryRun !== true) this.core.stats.noteReconcileFailure(trigger, err, performance.now() - t0);
        throw err;
      }
    });
  }

  private reconcileTarget(): ReconcileTarget {
    const c = this.core;
    return {
      books: c.books,
      store: c.deps.store,
      tools: c.deps.tools,
      firewall: c.firewall,
      ports: c.ports,
      log: c.log,
      ownerGroup: c.ownerGroup,
      parked: { joined: c.joined, since: c.parkedSince },
    };
  }

  /** Stop taking new work; resolve when everything accepted so far is done. */
  async drain(): Promise<void> {
    this.core.closing = true;
    await this.core.exclusively(async () => undefined);
    await this.endpoints.settleDeferred();
    await this.core.pipelines.drained();
  }

  settleDeferred(): Promise<void> {
    return this.endpoints.settleDeferred();
  }

  async close(): Promise<void> {
    this.core.keeper.close();
    await this.core.ports.close();
  }
}
