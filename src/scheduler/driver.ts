// The driver: what each protocol call does, in terms of the books and kernel work. It owns the
// gate (network operations exclusive), the lanes (per-endpoint order) and the batcher (kernel
// work of many requests in one transaction). Only this layer talks to the state store.
import type { Logger } from 'pino';
import { Batcher, BatchIds, type BatchEntry, type Work } from '../batching/batcher.js';
import { isFirewallOnly, type BatchRequest, type BatchResponse, type FirewallChange, type IpOp, type OpResult } from '../batching/ops.js';
import { epTag, planNetworkAdd, planNetworkRemove, type FwNetwork } from '../batching/plan-firewall.js';
import { planEndpointPortsAdd, planEndpointPortsRemove } from '../batching/plan-ports.js';
import { parseCidr } from '../domain/addr.js';
import { resolveEndpointAddresses, type CreateEndpointInterface } from '../domain/endpoint-spec.js';
import { randomVethName, type EndpointId, type NetworkId } from '../domain/names.js';
import { conflictReason, parseNetworkSpec, specDifference, type CreateNetworkInput, type NetworkSpec } from '../domain/network-spec.js';
import {
  AddressInUseError,
  BridgeFullError,
  EndpointExistsError,
  EndpointNotFoundError,
  KernelError,
  NetworkConflictError,
  NetworkExistsError,
  NetworkNotFoundError,
  PortAllocatedError,
  ShuttingDownError,
} from '../errors.js';
import type { EndpointRecord, IntentItem, NetworkRecord, PortMapping } from '../state/records.js';
import type { BookChanges, StateStore } from '../state/store.js';
import type { KernelExecutor } from '../workers/pool.js';
import type { ReconcileTarget } from './reconcile.js';
import type { ToolPaths } from '../workers/spawn.js';
import { Books } from './books.js';
import { bridgeAddrs, networkSysctls } from './network-setup.js';
import { FifoGate } from './gate.js';
import { Lanes } from './lanes.js';
import { PortAllocator, parsePortOptions, type PortRequest } from './ports.js';

export interface DriverOptions {
  readonly batchMax: number;
  readonly windowMs: number;
  /** veth batches running at once (the firewall and deletion pipelines run one each) */
  readonly maxInFlight: number;
  /** answer DeleteEndpoint before the kernel has deleted the veth, under load (deleteBehind) */
  readonly writeBehindDeletes?: boolean;
  /**
   * A never-joined endpoint older than this whose address a new endpoint asks for is taken to
   * be left over (dockerd forgot it) and removed; a younger one makes the new one fail.
   */
  readonly staleEndpointGraceMs?: number;
  /** see HOLDER_VANISH_WAIT_MS (tests shorten it; no flag: nothing for an operator to tune) */
  readonly holderVanishWaitMs?: number;
  readonly tools: ToolPaths;
}

/** A Linux bridge takes at most 1024 ports (BR_MAX_PORTS). */
const BRIDGE_MAX_PORTS = 1024;
/**
 * While at least GATHER_MIN_ACTIVE endpoint requests are in flight, an idle pipeline waits
 * GATHER_MS for company before it starts a batch. Without that, the first request of each burst
 * ran alone and the rest of the burst waited for it: half the batches held one operation (batch
 * statistics at 128 clients). Measured, one run after the other: 128 clients 626–632/s → 662–705
 * with 3 ms; 32 clients 314–339 → 351–460; an open loop at 330/s, CreateEndpoint p99 79–94 ms →
 * 56–62. Windows of 4–6 ms were worse in the closed loops (docs/performance.md). A lone request
 * never waits.
 */
const GATHER_MS = envMs('BB_GATHER_MS', 3);
const GATHER_MIN_ACTIVE = 8;
/**
 * Deletions give way to creations (both need the kernel's rtnl lock, and a container start is
 * waited on), but for no longer than this. Under steady arrivals the creation pipeline is
 * never idle, and deletions would otherwise wait for a full batch of 256, which then holds
 * rtnl for ~200 ms.
 */
const DELETE_MAX_DEFER_MS = envMs('BB_DELETE_DEFER_MS', 25);
/** Default of DriverOptions.staleEndpointGraceMs (`--stale-endpoint-grace-ms`). */
export const STALE_ENDPOINT_GRACE_MS = 5000;
/**
 * How long a new endpoint waits for a live-looking holder of its address to vanish before it
 * fails. dockerd hands an address out again only once it believes the holder gone; after a
 * dockerd restart the holder's container was killed, but the kernel destroys its network
 * namespace (and with it our veth) asynchronously, some milliseconds later.
 */
const HOLDER_VANISH_WAIT_MS = 1500;
/** How often books that could not be written (a full disk) are tried again. */
const BOOKS_RETRY_MS = 2000;

/** A measurement switch (docs/options.md): a whole number of ms, else the default. */
function envMs(name: string, fallback: number): number {
  const v = Number(process.env[name] ?? fallback);
  return Number.isInteger(v) && v >= 0 && v <= 10_000 ? v : fallback;
}

export interface CreateEndpointRequest {
  readonly NetworkID: NetworkId;
  readonly EndpointID: EndpointId;
  readonly Interface: CreateEndpointInterface | null | undefined;
  readonly Options: Record<string, unknown>;
}

export interface JoinResponse {
  InterfaceName: { SrcName: string; DstPrefix: string };
  Gateway?: string;
  GatewayIPv6?: string;
  StaticRoutes: never[];
  DisableGatewayService: boolean;
}

export function toFwNetwork(spec: NetworkSpec): FwNetwork {
  return {
    id: spec.id,
    bridge: spec.bridge,
    subnet4: spec.ipv4.network,
    subnet6: spec.ipv6 === null ? null : spec.ipv6.network,
    enableIpv6: spec.enableIpv6,
    icc: spec.icc,
    masquerade: spec.masquerade,
    hostIpv4: spec.hostIpv4,
    internal: spec.internal,
    gatewayModeIpv4: spec.gatewayModeIpv4,
    gatewayModeIpv6: spec.gatewayModeIpv6,
  };
}

interface LinkInfo {
  readonly ifname: string;
  readonly kind: string | null;
  readonly addrs: string[];
  readonly up: boolean;
}

/** Which end of a booked endpoint's veth pair the kernel still shows in our namespace. */
type HolderState = 'gone' | 'stale' | 'alive' | 'young';

export class Driver {
  readonly books = new Books();
  readonly gate = new FifoGate();
  readonly lanes = new Lanes();
  /** veth, bridge and mixed work */
  readonly batcher: Batcher;
  /**
   * Program/Revoke (firewall-only work) in their own pipeline: they need no ip work, so they must
   * not wait for a veth batch's RCU grace periods (docs/architecture.md, "Batching").
   */
  readonly fwBatcher: Batcher;
  /**
   * Endpoint deletions in their own pipeline, which gives way to veth creations: a container
   * start waits for its creation, and a group delete holds the kernel's rtnl lock for most of
   * its run (a creation started during a 136-veth group delete took 88 ms instead of 28 ms), so
   * deletions wait until no creation is queued and then go in one large group.
   */
  readonly deleteBatcher: Batcher;
  readonly ports: PortAllocator;
  private readonly pendingEndpoints = new Set<string>();
  /** endpoint requests being handled right now (the batchers' gather window depends on it) */
  private activeOps = 0;
  /** write-behind veth deletions not yet done (deleteBehind), and how many per network */
  private readonly deferred = new Set<Promise<void>>();
  private readonly deferredCount = new Map<string, number>();
  private closing = false;
  /** ids of intents the driver writes itself (network creation, write-behind deletion): negative, never a batch id */
  private nextOwnIntentId: number;
  /** the link group on every interface we create: how reconciliation knows what is ours */
  readonly ownerGroup: number;
  /**
   * Endpoints joined since this process started and not left. Only for deciding whether an
   * address holder is alive; the kernel (where its container end is) has the final word, so
   * this is not persisted.
   */
  private readonly joined = new Set<string>();
  /** book changes of teardown that could not be written yet (a full disk), oldest first */
  private unsaved: BookChanges[] = [];
  private booksRetry: NodeJS.Timeout | null = null;

  constructor(
    private readonly store: StateStore,
    private readonly exec: KernelExecutor,
    private readonly opts: DriverOptions,
    private readonly log: Logger,
  ) {
    this.books.load(store.loadNetworks(), store.loadEndpoints());
    this.ownerGroup = store.ownerGroup();
    this.ports = new PortAllocator();
    for (const e of this.books.endpoints.values()) this.ports.restore(e.id, e.mappings);
    const intents = store.loadIntents();
    const firstBatch = Math.max(0, ...intents.map((i) => i.batchId)) + 1;
    this.nextOwnIntentId = Math.min(0, ...intents.map((i) => i.batchId)) - 1;
    const ids = new BatchIds(firstBatch);
    const hooks = {
      beforeRun: (batchId: number, items: IntentItem[]) => this.store.writeIntent({ batchId, createdAt: Date.now(), items }),
      afterRun: (batchId: number, hadIntent: boolean, changes: BookChanges[], mustKeep: BookChanges[]) => {
        if (changes.length === 0 && !hadIntent) return;
        const intent = hadIntent ? batchId : null;
        this.writeBooks(mergeChanges(changes, intent), mustKeep.length > 0 ? mergeChanges(mustKeep, intent) : null);
      },
      settleFailed: (batchId: number, err: unknown, intent: IntentItem | null) => {
        this.log.error({ batchId, err, ...idsOf(intent) }, 'booking the result of an operation failed; the operation is answered with an error');
      },
    };
    const run = (req: BatchRequest): Promise<BatchResponse> => this.exec.runBatch(req);
    const gatherMs = (): number => (this.activeOps >= GATHER_MIN_ACTIVE ? GATHER_MS : 0);
    this.batcher = new Batcher(
      run,
      hooks,
      { batchMax: opts.batchMax, windowMs: opts.windowMs, maxInFlight: opts.maxInFlight, label: 'veth', gatherMs, onBatchDone: () => this.deleteBatcher.poke() },
      ids,
    );
    // One firewall transaction at a time: two concurrent nft commits make one of them retry.
    this.fwBatcher = new Batcher(run, hooks, { batchMax: opts.batchMax, windowMs: opts.windowMs, maxInFlight: 1, label: 'firewall', gatherMs }, ids);
    this.deleteBatcher = new Batcher(
      run,
      hooks,
      {
        batchMax: opts.batchMax,
        windowMs: opts.windowMs,
        maxInFlight: 1,
        label: 'delete',
        gatherMs,
        mayStart: () => this.batcher.queued + this.batcher.running === 0,
        maxDeferMs: DELETE_MAX_DEFER_MS,
      },
      ids,
    );
  }

  /** Stop taking new work; resolve when everything accepted so far is done. */
  async drain(): Promise<void> {
    this.closing = true;
    const release = await this.gate.acquireExclusive();
    release();
    await this.settleDeferred();
    await Promise.all([this.batcher.drained(), this.fwBatcher.drained(), this.deleteBatcher.drained()]);
  }

  get queueDepth(): number {
    return [this.batcher, this.fwBatcher, this.deleteBatcher].reduce((n, b) => n + b.queued + b.running, 0);
  }

  private checkOpen(): void {
    if (this.closing) throw new ShuttingDownError('batchbridge is shutting down');
  }

  /**
   * Commits `c` after any earlier teardown changes that could not be written. When writing fails,
   * `keep` (the teardown part of `c`) is kept to be written later, in order, and the error thrown.
   */
  private writeBooks(c: BookChanges, keep: BookChanges | null): void {
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
        this.log.warn({ err, pending: this.unsaved.length }, 'cannot write the books (disk full?): teardown done in the kernel, its book changes kept and retried');
        this.scheduleBooksRetry();
      }
      throw err;
    }
  }

  private scheduleBooksRetry(): void {
    if (this.booksRetry !== null) return;
    this.booksRetry = setTimeout(() => {
      this.booksRetry = null;
      this.flushUnsavedBooks();
    }, BOOKS_RETRY_MS);
    this.booksRetry.unref();
  }

  /** Writes the kept teardown changes; true when nothing is left unwritten. */
  flushUnsavedBooks(): boolean {
    if (this.unsaved.length === 0) return true;
    try {
      this.store.commitAll(this.unsaved);
      this.log.info({ changes: this.unsaved.length }, 'books written again: the changes kept while they could not be written are saved');
      this.unsaved = [];
      return true;
    } catch {
      this.scheduleBooksRetry();
      return false;
    }
  }

  /** Book changes kept because the books could not be written (for status and tests). */
  get unsavedBookChanges(): number {
    return this.unsaved.length;
  }

  private submit(work: Work, intent: IntentItem | null, settle: (r: OpResult) => BookChanges | null, teardown = false): Promise<OpResult> {
    const entry: BatchEntry = { work, intent, settle, teardown };
    return (isFirewallOnly(work) ? this.fwBatcher : this.batcher).submit(entry);
  }

  // ---------------------------------------------------------------- networks

  async createNetwork(input: CreateNetworkInput): Promise<void> {
    this.checkOpen();
    const spec = parseNetworkSpec(input);
    const release = await this.gate.acquireExclusive();
    try {
      const booked = this.books.networks.get(spec.id);
      if (booked !== undefined) {
        // dockerd retries a call whose answer it did not get: the same request is done already.
        const diff = specDifference(booked.spec, spec);
        if (diff === null) return;
        throw new NetworkExistsError(`network ${spec.id} exists with a different configuration (${diff})`);
      }
      for (const other of this.books.networks.values()) {
        const reason = conflictReason(spec, other.spec);
        if (reason !== null) {
          throw new NetworkConflictError(
            `cannot create network ${spec.id} (${spec.bridge}): conflicts with network ${other.spec.id} (${other.spec.bridge}): ${reason}`,
          );
        }
      }
      if (this.books.isNameTaken(spec.bridge)) {
        throw new NetworkConflictError(`cannot create network ${spec.id}: interface name ${spec.bridge} is in use by an endpoint of batchbridge`);
      }
      const existing = await this.probeLink(spec.bridge);
      if (existing !== null && existing.kind !== 'bridge') {
        throw new NetworkConflictError(`existing interface ${spec.bridge} is not a bridge`);
      }
      const createdBridge = existing === null;
      const wanted = bridgeAddrs(spec);
      const addedAddrs = createdBridge ? [] : wanted.filter((a) => !existing.addrs.includes(a));
      // A user's bridge keeps its state: if it was down, it goes down again with the network.
      const restoreDown = existing !== null && !existing.up;
      const fw = planNetworkAdd(toFwNetwork(spec));

      // One intent covers both steps and the rollback, written before step 1 and removed in the
      // transaction that books the network (or after the rollback): a crash anywhere in between
      // leaves it for reconciliation to undo (a per-batch intent would leave a gap between steps).
      const intentId = this.nextOwnIntentId--;
      this.store.writeIntent({
        batchId: intentId,
        createdAt: Date.now(),
        items: [{ kind: 'network-create', networkId: spec.id, bridge: spec.bridge, createdBridge, addrs: createdBridge ? wanted : addedAddrs, restoreDown }],
      });
      // Step 1: the bridge itself, and the sysctls that must precede its IPv6 addresses.
      const step1: IpOp[] = createdBridge ? [{ kind: 'bridge-create', bridge: spec.bridge, mac: spec.bridgeMac, mtu: spec.mtu, group: this.ownerGroup }] : [];
      const r1 = await this.submit({ ip: step1, sysctls: networkSysctls(spec) }, null, () => null);
      if (!r1.ok) {
        await this.rollbackNetwork(spec, createdBridge, [], false, intentId);
        throw new KernelError(`failed to create bridge ${spec.bridge}: ${r1.message ?? 'unknown error'}`);
      }
      // Step 2: addresses, up, firewall. Booked in the same transaction that clears the intent.
      const record: NetworkRecord = { spec, createdBridge, addedAddrs, ...(restoreDown ? { restoreDown } : {}), createdAt: Date.now() };
      const r2 = await this.submit(
        { ip: [{ kind: 'bridge-addrs', bridge: spec.bridge, addrs: createdBridge ? wanted : addedAddrs, up: true }], fwAfter: fw },
        null,
        (r) => {
          if (!r.ok) return null;
          this.books.putNetwork(record);
          return { putNetworks: [record], clearIntents: [intentId] };
        },
      );
      if (!r2.ok) {
        await this.rollbackNetwork(spec, createdBridge, addedAddrs, restoreDown, intentId);
        throw new KernelError(`failed to set up bridge ${spec.bridge}: ${r2.message ?? 'unknown error'}`);
      }
      this.log.info({ networkId: spec.id, bridge: spec.bridge, createdBridge }, 'network created');
    } finally {
      release();
    }
  }

  private async rollbackNetwork(spec: NetworkSpec, createdBridge: boolean, addedAddrs: readonly string[], restoreDown: boolean, intentId: number): Promise<void> {
    const ip: IpOp[] = createdBridge ? [{ kind: 'bridge-delete', bridge: spec.bridge }] : releaseUserBridge(spec.bridge, addedAddrs, restoreDown);
    // The creation's intent stays until the rollback is done; if it fails, reconciliation retries.
    const r = await this.submit({ fwBefore: planNetworkRemove(toFwNetwork(spec)), ip }, null, (res) => (res.ok ? { clearIntents: [intentId] } : null), true);
    if (!r.ok) this.log.warn({ networkId: spec.id, err: r.message }, 'rollback of a failed network creation was incomplete');
  }

  async deleteNetwork(id: NetworkId): Promise<void> {
    this.checkOpen();
    const release = await this.gate.acquireExclusive();
    try {
      // The bridge goes after its veths: write-behind deletions first (none run under the gate).
      await this.settleDeferred();
      const net = this.books.networks.get(id);
      // dockerd only logs DeleteNetwork errors; deleting what is gone is success.
      if (net === undefined) return;
      const eps = this.books.endpointsOf(id);
      const fwBefore = mergeFirewall([...eps.map((e) => planEndpointPortsRemove(e.id, net.spec, e.mappings)), planNetworkRemove(toFwNetwork(net.spec))], true);
      const ip: IpOp[] = eps.map((e): IpOp => ({ kind: 'veth-delete', host: e.host }));
      if (net.createdBridge) ip.push({ kind: 'bridge-delete', bridge: net.spec.bridge });
      else ip.push(...releaseUserBridge(net.spec.bridge, net.addedAddrs, net.restoreDown === true));
      const r = await this.submit(
        { fwBefore, ip },
        { kind: 'network-delete', networkId: id, bridge: net.spec.bridge, createdBridge: net.createdBridge },
        (res) => {
          if (!res.ok) return null;
          for (const e of eps) {
            this.ports.release(e.id);
            this.joined.delete(e.id);
          }
          this.books.deleteNetwork(id);
          return { deleteEndpoints: eps.map((e) => e.id), deleteNetworks: [id] };
        },
        true,
      );
      if (!r.ok) throw new KernelError(`failed to delete network ${id}: ${r.message ?? 'unknown error'}`);
      this.log.info({ networkId: id, endpoints: eps.length }, 'network deleted');
    } finally {
      release();
    }
  }

  private async probeLink(name: string): Promise<LinkInfo | null> {
    const r = await this.exec.exec(this.opts.tools.ip, ['-j', '-d', 'addr', 'show', 'dev', name]);
    if (r.exitCode !== 0) {
      if (/does not exist|Cannot find device/i.test(r.stderr)) return null;
      throw new KernelError(`cannot inspect interface ${name}: ${r.stderr.trim() || r.spawnError || 'ip failed'}`);
    }
    const arr = JSON.parse(r.stdout) as Array<{ ifname?: string; flags?: unknown; linkinfo?: { info_kind?: string }; addr_info?: Array<{ local?: string; prefixlen?: number }> }>;
    const l = arr[0];
    if (l === undefined) return null;
    return {
      ifname: l.ifname ?? name,
      kind: l.linkinfo?.info_kind ?? null,
      addrs: (l.addr_info ?? []).map((a) => `${a.local ?? ''}/${a.prefixlen ?? 0}`),
      up: Array.isArray(l.flags) && l.flags.includes('UP'),
    };
  }

  // ---------------------------------------------------------------- endpoints

  // async: a refusal (shutting down) must reject the returned promise, never throw synchronously
  private async withEndpoint<T>(networkId: string, endpointId: string, fn: () => Promise<T>): Promise<T> {
    this.checkOpen();
    this.activeOps++;
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
      this.activeOps--;
    }
  }

  createEndpoint(req: CreateEndpointRequest): Promise<{ Interface?: { MacAddress?: string; AddressIPv6?: string } }> {
    return this.withEndpoint(req.NetworkID, req.EndpointID, async () => {
      const net = this.books.networks.get(req.NetworkID);
      if (net === undefined) throw new NetworkNotFoundError(`network ${req.NetworkID} not found`);
      const addrs = resolveEndpointAddresses(net.spec, req.Interface, req.Options['com.docker.network.endpoint.macaddress']);
      const exposedAndPorts = parsePortOptions(req.Options);
      const ipv4 = `${addrs.ipv4.ip}/${addrs.ipv4.prefix}`;
      const ipv6 = addrs.ipv6 === null ? null : `${addrs.ipv6.ip}/${addrs.ipv6.prefix}`;
      const booked = this.books.endpoints.get(req.EndpointID);
      if (booked !== undefined) {
        // dockerd retries a call whose answer it did not get: the same request is done already.
        const diff = endpointDifference(booked, { networkId: req.NetworkID, ipv4, ipv6, mac: addrs.mac, ...exposedAndPorts });
        if (diff === null) return Object.keys(addrs.reply).length > 0 ? { Interface: addrs.reply } : {};
        throw new EndpointExistsError(`Endpoint (${req.EndpointID}) already exists (Only one endpoint allowed): this request differs in ${diff}`);
      }
      if (this.pendingEndpoints.has(req.EndpointID)) {
        throw new EndpointExistsError(`Endpoint (${req.EndpointID}) already exists (Only one endpoint allowed)`);
      }
      // Awaited only when another endpoint holds an address: the common path stays synchronous.
      for (const a of ipv6 === null ? [ipv4] : [ipv4, ipv6]) {
        const holder = this.books.addressHolder(net.spec.id, a);
        if (holder !== undefined && holder.id !== req.EndpointID) await this.claimAddress(net.spec, a, holder, req.EndpointID);
      }
      if (this.books.endpointCount(net.spec.id) + (this.deferredCount.get(net.spec.id) ?? 0) >= BRIDGE_MAX_PORTS) {
        throw new BridgeFullError(`bridge ${net.spec.bridge} already has ${BRIDGE_MAX_PORTS} ports, the kernel's limit`);
      }
      this.pendingEndpoints.add(req.EndpointID);
      try {
        let lastError = '';
        // A name can be taken by something outside our books (another program's veth): the
        // kernel says "File exists", and we try fresh names, as Docker does (3 attempts).
        for (let attempt = 0; attempt < 3; attempt++) {
          const host = this.freshName();
          const peer = this.freshName();
          const record: EndpointRecord = {
            id: req.EndpointID,
            networkId: req.NetworkID,
            host,
            peer,
            ipv4,
            ipv6,
            mac: addrs.mac,
            joined: false,
            exposed: exposedAndPorts.exposed,
            requested: exposedAndPorts.requested,
            mappings: [],
            createdAt: Date.now(),
          };
          const r = await this.submit(
            { ip: [{ kind: 'veth-create', host, peer, bridge: net.spec.bridge, mtu: net.spec.mtu, group: this.ownerGroup }] },
            { kind: 'endpoint-create', endpointId: req.EndpointID, networkId: req.NetworkID, host, peer },
            (res) => {
              this.books.releaseName(host);
              this.books.releaseName(peer);
              if (!res.ok) return null;
              this.books.putEndpoint(record);
              return { putEndpoints: [record] };
            },
          );
          if (r.ok) {
            const reply = addrs.reply;
            return Object.keys(reply).length > 0 ? { Interface: reply } : {};
          }
          lastError = r.message ?? 'unknown error';
          if (!/File exists/i.test(lastError)) break;
        }
        throw new KernelError(`failed to add the host <=> sandbox pair interfaces: ${lastError}`);
      } finally {
        this.pendingEndpoints.delete(req.EndpointID);
      }
    });
  }

  private freshName(): string {
    for (;;) {
      const n = randomVethName();
      if (!this.books.isNameTaken(n)) {
        this.books.reserveName(n);
        return n;
      }
    }
  }

  /**
   * Makes sure no other endpoint of the network holds `address`. dockerd hands an address out
   * again only when it believes its holder gone, so a holder we still book is left over: from a
   * dockerd restart (dockerd never sent Leave/DeleteEndpoint for its killed containers), or from a
   * create whose answer dockerd never got. It is removed — with its published ports, so no
   * traffic meant for it reaches the new endpoint — unless it is alive. The caller holds the new
   * endpoint's lane and the shared gate.
   */
  private async claimAddress(spec: NetworkSpec, address: string, holder: EndpointRecord, claimant: string): Promise<void> {
    let state = this.holderState(holder);
    for (const until = Date.now() + (this.opts.holderVanishWaitMs ?? HOLDER_VANISH_WAIT_MS); state === 'alive' && Date.now() < until; state = this.holderState(holder)) {
      await sleep(20);
    }
    const what = `Address ${address.slice(0, address.indexOf('/'))} is in use by endpoint ${holder.id} on network ${spec.id}`;
    if (state === 'alive') throw new AddressInUseError(`${what}: it is joined to a container`);
    if (state === 'young') throw new AddressInUseError(`${what}: it was created ${Date.now() - holder.createdAt} ms ago and is not joined yet; retry later`);
    if (this.lanes.busy(holder.networkId, holder.id)) throw new AddressInUseError(`${what}: an operation on it is in progress; retry shortly`);
    this.log.warn({ networkId: spec.id, endpointId: holder.id, claimant, state }, 'removing a left-over endpoint whose address a new endpoint asks for');
    await this.lanes.run(holder.networkId, holder.id, () => this.removeEndpointNow(holder));
  }

  private holderState(ep: EndpointRecord): HolderState {
    if (!this.exec.linkPresent(ep.host)) return 'gone';
    // Its container end is in a container's namespace, or dockerd has joined it: alive.
    if (this.joined.has(ep.id) || !this.exec.linkPresent(ep.peer)) return 'alive';
    return Date.now() - ep.createdAt > (this.opts.staleEndpointGraceMs ?? STALE_ENDPOINT_GRACE_MS) ? 'stale' : 'young';
  }

  /**
   * Removes booked endpoints whose host-side veth has vanished (their container's namespace
   * died). dockerd calls Plugin.Activate on every start, after it killed containers it will never
   * send Leave/DeleteEndpoint for; and a port or address refusal must not be caused by one of
   * them. Endpoints with an operation in progress are left to it. Returns how many were removed.
   */
  async settleVanished(): Promise<number> {
    this.checkOpen();
    const got = this.gate.acquireShared();
    const release = typeof got === 'function' ? got : await got;
    try {
      return await this.settleVanishedHoldingGate();
    } finally {
      release();
    }
  }

  private async settleVanishedHoldingGate(): Promise<number> {
    const gone = [...this.books.endpoints.values()].filter((e) => !this.lanes.busy(e.networkId, e.id) && !this.exec.linkPresent(e.host));
    if (gone.length === 0) return 0;
    this.log.warn({ endpoints: gone.map((e) => e.id) }, `${gone.length} endpoint(s) whose veth vanished: removed with their published ports`);
    await Promise.all(gone.map((e) => this.lanes.run(e.networkId, e.id, () => this.removeEndpointNow(e))));
    return gone.length;
  }

  /** DeleteEndpoint's kernel work and unbooking; the caller holds the endpoint's lane and the gate. */
  private async removeEndpointNow(ep: EndpointRecord): Promise<void> {
    if (this.books.endpoints.get(ep.id) !== ep) return; // removed or changed meanwhile
    const net = this.books.networks.get(ep.networkId);
    const fwBefore = net !== undefined && ep.mappings.length > 0 ? planEndpointPortsRemove(ep.id, net.spec, ep.mappings) : undefined;
    const work: Work = fwBefore === undefined ? { ip: [{ kind: 'veth-delete', host: ep.host }] } : { fwBefore, ip: [{ kind: 'veth-delete', host: ep.host }], conntrack: conntrackFor(ep) };
    const r = await this.deleteBatcher.submit({
      work,
      intent: { kind: 'endpoint-delete', endpointId: ep.id, host: ep.host },
      teardown: true,
      settle: (res) => {
        if (!res.ok) return null;
        this.ports.release(ep.id);
        this.joined.delete(ep.id);
        this.books.deleteEndpoint(ep.id);
        return { deleteEndpoints: [ep.id] };
      },
    });
    if (!r.ok) throw new KernelError(`failed to delete endpoint ${ep.id}: ${r.message ?? 'unknown error'}`);
  }

  deleteEndpoint(networkId: NetworkId, endpointId: EndpointId): Promise<void> {
    return this.withEndpoint(networkId, endpointId, async () => {
      const ep = this.books.endpoints.get(endpointId);
      // dockerd only logs DeleteEndpoint errors and often deletes the container's end first.
      if (ep === undefined) return;
      if (this.opts.writeBehindDeletes === true && ep.mappings.length === 0 && this.vethWorkPending() && this.deleteBehind(ep)) return;
      await this.removeEndpointNow(ep);
    });
  }

  /**
   * Write-behind deletion (`--write-behind-deletes`, off by default), used only while veth work
   * is already queued or running: the endpoint is unbooked and its deletion made durable (an
   * intent) before we answer, and the veth goes in a later group delete without the caller
   * waiting for it. Under churn that takes a group delete (~25 ms of RCU waits plus ~0.5 ms per
   * veth, all under rtnl) out of every container's teardown (docs/performance.md). The price: for
   * a few tens of ms after DeleteEndpoint answers, the veth is still listed by `ip link`, which
   * the built-in driver never shows — hence opt-in. An idle plugin always deletes synchronously.
   *
   * What still holds: the veth's names stay reserved until it is gone; the bridge's port count
   * includes it; DeleteNetwork, reconciliation and shutdown wait for it (settleDeferred); a crash
   * before the kernel work leaves the intent, and reconciliation deletes the veth; a failed
   * deletion keeps the intent too (logged), so the next reconciliation retries it.
   */
  private deleteBehind(ep: EndpointRecord): boolean {
    const intentId = this.nextOwnIntentId--;
    try {
      this.store.writeIntent({ batchId: intentId, createdAt: Date.now(), items: [{ kind: 'endpoint-delete', endpointId: ep.id, host: ep.host }] });
      this.writeBooks({ deleteEndpoints: [ep.id] }, null);
    } catch {
      return false; // the deletion cannot be made durable first: do it synchronously instead
    }
    this.joined.delete(ep.id);
    this.books.deleteEndpoint(ep.id);
    this.ports.release(ep.id);
    this.books.reserveName(ep.host);
    this.books.reserveName(ep.peer);
    this.deferredCount.set(ep.networkId, (this.deferredCount.get(ep.networkId) ?? 0) + 1);
    const done: Promise<void> = this.deleteBatcher
      .submit({
        work: { ip: [{ kind: 'veth-delete', host: ep.host }] },
        intent: null,
        settle: (res) => {
          this.books.releaseName(ep.host);
          this.books.releaseName(ep.peer);
          return res.ok ? { clearIntents: [intentId] } : null;
        },
      })
      .then((r) => {
        if (!r.ok) this.log.warn({ endpointId: ep.id, host: ep.host, err: r.message }, 'write-behind veth deletion failed; reconciliation will retry');
      })
      .finally(() => {
        this.deferred.delete(done);
        const n = (this.deferredCount.get(ep.networkId) ?? 1) - 1;
        if (n > 0) this.deferredCount.set(ep.networkId, n);
        else this.deferredCount.delete(ep.networkId);
      });
    this.deferred.add(done);
    return true;
  }

  private vethWorkPending(): boolean {
    return this.batcher.queued + this.batcher.running + this.deleteBatcher.queued + this.deleteBatcher.running > 0;
  }

  /** Resolves once every write-behind deletion accepted so far has been done by the kernel. */
  async settleDeferred(): Promise<void> {
    while (this.deferred.size > 0) await Promise.all([...this.deferred]);
  }

  join(networkId: NetworkId, endpointId: EndpointId): Promise<JoinResponse> {
    return this.withEndpoint(networkId, endpointId, async () => {
      const ep = this.books.endpoints.get(endpointId);
      if (ep === undefined) throw new EndpointNotFoundError(`endpoint ${endpointId} not found`);
      const net = this.books.networks.get(ep.networkId);
      if (net === undefined) throw new NetworkNotFoundError(`network ${ep.networkId} not found`);
      this.joined.add(ep.id);
      const resp: JoinResponse = {
        InterfaceName: { SrcName: ep.peer, DstPrefix: net.spec.ifacePrefix },
        StaticRoutes: [],
        DisableGatewayService: false,
      };
      // Internal networks get no gateway: nothing leaves them (as in Docker 25+).
      if (!net.spec.internal) {
        resp.Gateway = net.spec.gatewayIpv4;
        if (net.spec.gatewayIpv6 !== '') resp.GatewayIPv6 = net.spec.gatewayIpv6;
      }
      return resp;
    });
  }

  leave(networkId: NetworkId, endpointId: EndpointId): Promise<void> {
    // Nothing of ours changes in the kernel on Leave: libnetwork moves the interface back itself.
    return this.withEndpoint(networkId, endpointId, async () => {
      this.joined.delete(endpointId);
    });
  }

  endpointOperInfo(networkId: NetworkId, endpointId: EndpointId): Promise<{ Value: Record<string, unknown> }> {
    return this.withEndpoint(networkId, endpointId, async () => {
      const ep = this.books.endpoints.get(endpointId);
      if (ep === undefined) throw new EndpointNotFoundError(`endpoint ${endpointId} not found`);
      return {
        Value: {
          'com.docker.network.endpoint.macaddress': ep.mac,
          'com.docker.network.endpoint.exposedports': ep.exposed.map((x) => ({ Proto: protoNumber(x.proto), Port: x.port })),
          'com.docker.network.portmap': ep.mappings.map((m) => ({
            Proto: protoNumber(m.proto),
            IP: m.containerIp,
            Port: m.containerPort,
            HostIP: m.hostIp,
            HostPort: m.hostPort,
            HostPortEnd: m.hostPort,
          })),
        },
      };
    });
  }

  programExternalConnectivity(networkId: NetworkId, endpointId: EndpointId, options: Record<string, unknown>): Promise<void> {
    return this.withEndpoint(networkId, endpointId, async () => {
      const ep = this.books.endpoints.get(endpointId);
      if (ep === undefined) throw new EndpointNotFoundError(`endpoint ${endpointId} not found`);
      const net = this.books.networks.get(ep.networkId);
      if (net === undefined) throw new NetworkNotFoundError(`network ${ep.networkId} not found`);
      const parsed = parsePortOptions(options);
      const requested = parsed.requested.length > 0 || parsed.exposed.length > 0 ? parsed : { requested: ep.requested, exposed: ep.exposed };
      if (net.spec.internal || requested.requested.length === 0) {
        const next: EndpointRecord = { ...ep, requested: requested.requested, exposed: requested.exposed };
        this.books.putEndpoint(next);
        this.store.commit({ putEndpoints: [next] });
        return;
      }
      // The same bindings programmed again (a retry): they are in place, keep them and their ports.
      if (ep.mappings.length > 0 && JSON.stringify(ep.requested) === JSON.stringify(requested.requested)) return;
      // Different bindings replace the old ones: take those away first (their own batch), so a
      // failure below leaves the endpoint with no bindings rather than half of two sets.
      let cur = ep;
      if (ep.mappings.length > 0) {
        await this.revokeNow(ep, net.spec);
        cur = this.books.endpoints.get(endpointId) ?? ep;
      }
      const mappings = await this.allocatePorts(ep.id, net.spec, cur, requested.requested as readonly PortRequest[]);
      const fwAfter = planEndpointPortsAdd(ep.id, net.spec, mappings);
      const r = await this.submit({ fwAfter }, { kind: 'ports-program', endpointId, mappings }, (res) => {
        if (!res.ok) return null;
        const next: EndpointRecord = { ...cur, requested: requested.requested, exposed: requested.exposed, mappings };
        this.books.putEndpoint(next);
        return { putEndpoints: [next] };
      });
      if (!r.ok) {
        this.ports.release(ep.id);
        throw new KernelError(`failed to program external connectivity: ${r.message ?? 'unknown error'}`);
      }
    });
  }

  /** Host ports for an endpoint; a port held by an endpoint whose veth vanished is freed first. */
  private async allocatePorts(id: string, spec: NetworkSpec, ep: EndpointRecord, requested: readonly PortRequest[]): Promise<PortMapping[]> {
    try {
      return await this.ports.allocate(id, spec, ep, requested);
    } catch (err) {
      if (!(err instanceof PortAllocatedError) || (await this.settleVanishedHoldingGate()) === 0) throw err;
      return await this.ports.allocate(id, spec, ep, requested);
    }
  }

  revokeExternalConnectivity(networkId: NetworkId, endpointId: EndpointId): Promise<void> {
    return this.withEndpoint(networkId, endpointId, async () => {
      const ep = this.books.endpoints.get(endpointId);
      // Revoking what was never programmed, or twice, is success (dockerd only logs our errors).
      if (ep === undefined || ep.mappings.length === 0) return;
      const net = this.books.networks.get(ep.networkId);
      if (net === undefined) return;
      await this.revokeNow(ep, net.spec);
    });
  }

  /** Removes an endpoint's bindings (rules, conntrack entries, ports); caller holds its lane. */
  private async revokeNow(ep: EndpointRecord, spec: NetworkSpec): Promise<void> {
    const r = await this.submit(
      { fwBefore: planEndpointPortsRemove(ep.id, spec, ep.mappings), conntrack: conntrackFor(ep) },
      { kind: 'ports-revoke', endpointId: ep.id, mappings: ep.mappings },
      (res) => {
        if (!res.ok) return null;
        this.ports.release(ep.id);
        const next: EndpointRecord = { ...ep, mappings: [] };
        this.books.putEndpoint(next);
        return { putEndpoints: [next] };
      },
      true,
    );
    if (!r.ok) throw new KernelError(`failed to revoke external connectivity: ${r.message ?? 'unknown error'}`);
  }

  /**
   * Owner tags whose firewall rules may be changing right now (endpoints with an operation in
   * flight), or null while network-wide work (a network created or deleted, reconciliation) is
   * in progress. The firewall watchdog leaves those out of its comparison.
   */
  changingFirewallOwners(): Set<string> | null {
    if (this.gate.exclusiveActive) return null;
    const out = new Set<string>();
    for (const id of this.lanes.activeEndpoints()) out.add(epTag(id));
    return out;
  }

  /** Bindings of every endpoint (for `batchbridge ports`). */
  listBindings(): Array<{ networkId: string; endpointId: string; mapping: PortMapping }> {
    const out: Array<{ networkId: string; endpointId: string; mapping: PortMapping }> = [];
    for (const e of this.books.endpoints.values()) for (const m of e.mappings) out.push({ networkId: e.networkId, endpointId: e.id, mapping: m });
    return out;
  }

  /** What reconciliation works on (src/scheduler/reconcile.ts); hold the gate exclusively. */
  reconcileTarget(): ReconcileTarget {
    return {
      books: this.books,
      store: this.store,
      exec: this.exec,
      tools: this.opts.tools,
      ports: this.ports,
      log: this.log,
      ownerGroup: this.ownerGroup,
    };
  }

  async close(): Promise<void> {
    if (this.booksRetry !== null) clearTimeout(this.booksRetry);
    this.booksRetry = null;
    this.flushUnsavedBooks();
    await this.ports.close();
  }
}

/** What a user's bridge gets back when our network leaves it: our addresses gone, its down state. */
function releaseUserBridge(bridge: string, addedAddrs: readonly string[], restoreDown: boolean): IpOp[] {
  if (addedAddrs.length === 0 && !restoreDown) return [];
  return [{ kind: 'bridge-addrs-remove', bridge, addrs: addedAddrs, ...(restoreDown ? { down: true } : {}) }];
}

interface EndpointRequestFacts {
  readonly networkId: string;
  readonly ipv4: string;
  readonly ipv6: string | null;
  readonly mac: string;
  readonly requested: readonly unknown[];
  readonly exposed: readonly unknown[];
}

/** The first field in which a booked endpoint differs from a CreateEndpoint request, or null. */
function endpointDifference(e: EndpointRecord, r: EndpointRequestFacts): string | null {
  if (e.networkId !== r.networkId) return 'NetworkID';
  if (e.ipv4 !== r.ipv4) return 'Interface.Address';
  if (e.ipv6 !== r.ipv6) return 'Interface.AddressIPv6';
  if (e.mac !== r.mac) return 'Interface.MacAddress';
  if (JSON.stringify(e.requested) !== JSON.stringify(r.requested)) return 'com.docker.network.portmap';
  if (JSON.stringify(e.exposed) !== JSON.stringify(r.exposed)) return 'com.docker.network.endpoint.exposedports';
  return null;
}

/** The ids an intent concerns, for log lines. */
function idsOf(intent: IntentItem | null): { networkId?: string; endpointId?: string } {
  if (intent === null) return {};
  return 'endpointId' in intent ? { endpointId: intent.endpointId } : { networkId: intent.networkId };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function protoNumber(p: string): number {
  return p === 'tcp' ? 6 : p === 'udp' ? 17 : p === 'sctp' ? 132 : 0;
}

function conntrackFor(ep: EndpointRecord): Array<{ family: 4 | 6; address: string }> {
  const out: Array<{ family: 4 | 6; address: string }> = [{ family: 4, address: parseCidr(ep.ipv4, 'endpoint address', 4).ip }];
  if (ep.ipv6 !== null) out.push({ family: 6, address: parseCidr(ep.ipv6, 'endpoint address', 6).ip });
  return out;
}

function mergeFirewall(changes: readonly FirewallChange[], tolerant: boolean): FirewallChange {
  return { v4: changes.flatMap((c) => c.v4), v6: changes.flatMap((c) => c.v6), tolerant };
}

function mergeChanges(list: readonly BookChanges[], intentBatch: number | null): BookChanges {
  return {
    putNetworks: list.flatMap((c) => c.putNetworks ?? []),
    deleteNetworks: list.flatMap((c) => c.deleteNetworks ?? []),
    putEndpoints: list.flatMap((c) => c.putEndpoints ?? []),
    deleteEndpoints: list.flatMap((c) => c.deleteEndpoints ?? []),
    clearIntents: [...list.flatMap((c) => c.clearIntents ?? []), ...(intentBatch === null ? [] : [intentBatch])],
  };
}
