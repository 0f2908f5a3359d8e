// Endpoints: a veth pair on the network's bridge, booked. Creating is idempotent for a retried
// request; an address another endpoint still holds is taken back when that holder is left over;
// deleting what is gone is success; endpoints whose veth vanished are settled.
import type { Work } from '../batching/batcher.js';
import type { ConntrackFlush } from '../batching/work.js';
import { parseCidr } from '../domain/addr.js';
import { cidrText, type EndpointAddresses } from '../domain/endpoint-spec.js';
import type { EndpointId, NetworkId } from '../domain/names.js';
import type { NetworkSpec } from '../domain/network-spec.js';
import type { PublishRequest } from '../domain/publishing.js';
import { AddressInUseError, BridgeFullError, EndpointExistsError, EndpointNotFoundError, KernelError, NetworkNotFoundError } from '../errors.js';
import type { EndpointRecord, NetworkRecord } from '../state/records.js';
import type { EngineCore } from './core.js';
import type { SandboxRoute } from '../ip/ops.js';
import { endpointName, networkName } from './network-names.js';
import { makeSandboxVeth, makeVeth, setUpSandbox, type SandboxRequest } from './veths.js';

export type { SandboxRequest } from './veths.js';

/** A Linux bridge takes at most 1024 ports (BR_MAX_PORTS). */
const BRIDGE_MAX_PORTS = 1024;

export interface EndpointRequest extends PublishRequest {
  readonly networkId: NetworkId;
  readonly endpointId: EndpointId;
  /** the endpoint's addresses on this network (called in the endpoint's lane; may throw) */
  readonly addresses: (spec: NetworkSpec) => EndpointAddresses;
  readonly sandbox?: SandboxRequest;
}

/** Whether the kernel still shows a booked endpoint's veth, and where its container end is. */
type HolderState = 'gone' | 'stale' | 'alive' | 'young';

export class Endpoints {
  /** endpoints being created right now */
  private readonly pending = new Set<string>();
  /** "<network> <address>" → the endpoint being created that claimed it */
  private readonly claims = new Map<string, string>();
  /** write-behind veth deletions not yet done (deleteBehind), and how many per network */
  private readonly deferred = new Set<Promise<void>>();
  private readonly deferredCount = new Map<string, number>();

  constructor(private readonly core: EngineCore) {}

  /** The booked endpoint, or EndpointNotFoundError. */
  booked(endpointId: string): EndpointRecord {
    const ep = this.core.books.endpoints.get(endpointId);
    if (ep === undefined) throw new EndpointNotFoundError(`endpoint ${endpointId} not found`);
    return ep;
  }

  /** The endpoint's network, or NetworkNotFoundError. */
  networkOf(ep: EndpointRecord): NetworkRecord {
    const net = this.core.books.networks.get(ep.networkId);
    if (net === undefined) throw new NetworkNotFoundError(`network ${ep.networkId} not found`);
    return net;
  }

  /** Whether an endpoint holds `cidr` ("ip/prefix") on the network, or one being created claimed it. */
  addressTaken(networkId: string, cidr: string): boolean {
    return this.claims.has(`${networkId} ${cidr}`) || this.core.books.addressHolder(networkId, cidr) !== undefined;
  }

  /** Creates the endpoint and returns its addresses (the same ones again for a retried request). */
  create(req: EndpointRequest): Promise<EndpointAddresses> {
    const core = this.core;
    return core.withEndpoint(req.networkId, req.endpointId, async () => {
      const net = core.books.networks.get(req.networkId);
      if (net === undefined) throw new NetworkNotFoundError(`network ${req.networkId} not found`);
      const addrs = req.addresses(net.spec);
      const facts = { networkId: req.networkId, ipv4: cidrText(addrs.ipv4), ipv6: addrs.ipv6 === null ? null : cidrText(addrs.ipv6), mac: addrs.mac, requested: req.requested, exposed: req.exposed };
      const booked = core.books.endpoints.get(req.endpointId);
      if (booked !== undefined) {
        // A retried request (its answer was lost) is done already.
        const diff = endpointDifference(booked, facts);
        if (diff === null) return addrs;
        throw new EndpointExistsError(`Endpoint (${req.endpointId}) already exists (Only one endpoint allowed): this request differs in ${diff}`);
      }
      if (this.pending.has(req.endpointId)) throw new EndpointExistsError(`Endpoint (${req.endpointId}) already exists (Only one endpoint allowed)`);
      const cidrs = facts.ipv6 === null ? [facts.ipv4] : [facts.ipv4, facts.ipv6];
      const release = this.claim(net.spec, cidrs, req.endpointId);
      this.pending.add(req.endpointId);
      try {
        // Awaited only when another endpoint holds an address: the common path stays synchronous.
        for (const a of cidrs) {
          const holder = core.books.addressHolder(net.spec.id, a);
          if (holder !== undefined && holder.id !== req.endpointId) await this.claimAddress(net.spec, a, holder, req.endpointId);
        }
        if (core.books.endpointCount(net.spec.id) + (this.deferredCount.get(net.spec.id) ?? 0) >= BRIDGE_MAX_PORTS) {
          throw new BridgeFullError(`bridge ${net.spec.bridge} already has ${BRIDGE_MAX_PORTS} ports, the kernel's limit`);
        }
        const base = { ...facts, macChosen: addrs.macChosen, ipv6Chosen: addrs.ipv6Chosen, id: req.endpointId, joined: false, mappings: [], createdAt: Date.now() };
        await (req.sandbox === undefined ? makeVeth(core, net.spec, base) : makeSandboxVeth(core, net.spec, base, req.sandbox));
        return addrs;
      } finally {
        this.pending.delete(req.endpointId);
        release();
      }
    });
  }

  /**
   * A CNI attachment's setup inside its namespace (addresses, link up, routes), after create.
   * Outside the endpoint's lane (see setUpSandbox), so its ports can be programmed meanwhile; a
   * failure leaves the attachment for the caller to delete.
   */
  setUpSandbox(endpointId: EndpointId, routes: readonly SandboxRoute[]): Promise<void> {
    return setUpSandbox(this.core, this.booked(endpointId), routes);
  }

  /** Claims addresses for an endpoint being created; returns the release. */
  private claim(spec: NetworkSpec, cidrs: readonly string[], endpointId: string): () => void {
    for (const a of cidrs) {
      const other = this.claims.get(`${spec.id} ${a}`);
      if (other !== undefined && other !== endpointId) {
        throw new AddressInUseError(`Address ${a.slice(0, a.indexOf('/'))} is in use by endpoint ${other} on network ${spec.id}: it is being created; retry shortly`);
      }
    }
    for (const a of cidrs) this.claims.set(`${spec.id} ${a}`, endpointId);
    return () => {
      for (const a of cidrs) if (this.claims.get(`${spec.id} ${a}`) === endpointId) this.claims.delete(`${spec.id} ${a}`);
    };
  }

  /**
   * Makes sure no other endpoint of the network holds `address`. dockerd hands an address out
   * again only when it believes its holder gone, so a holder we still book is left over: from a
   * dockerd restart (dockerd never sent Leave/DeleteEndpoint for its killed containers), or from a
   * create whose answer was lost. It is removed — with its published ports, so no traffic meant
   * for it reaches the new endpoint — unless it is alive. The caller holds the new endpoint's
   * lane and the shared gate.
   */
  private async claimAddress(spec: NetworkSpec, address: string, holder: EndpointRecord, claimant: string): Promise<void> {
    const core = this.core;
    let state = this.holderState(holder);
    for (const until = Date.now() + core.opts.holderVanishWaitMs; state === 'alive' && Date.now() < until; state = this.holderState(holder)) {
      await sleep(20);
    }
    const what = `Address ${address.slice(0, address.indexOf('/'))} is in use by ${endpointName(holder)} on ${networkName(spec.id, core.books.networks.get(spec.id))}`;
    if (state === 'alive') throw new AddressInUseError(`${what}: it is joined to a container`);
    if (state === 'young') throw new AddressInUseError(`${what}: it was created ${Date.now() - holder.createdAt} ms ago and is not joined yet; retry later`);
    if (core.lanes.busy(holder.networkId, holder.id)) throw new AddressInUseError(`${what}: an operation on it is in progress; retry shortly`);
    core.log.warn({ networkId: spec.id, endpointId: holder.id, claimant, state }, 'removing a left-over endpoint whose address a new endpoint asks for');
    await core.lanes.run(holder.networkId, holder.id, () => this.removeNow(holder));
  }

  private holderState(ep: EndpointRecord): HolderState {
    const { exec } = this.core.deps;
    if (!exec.linkPresent(ep.host)) return 'gone';
    // A CNI attachment's container end is in its container's namespace from the start.
    if (ep.sandbox !== undefined) return 'alive';
    // Its container end is in a container's namespace, or the runtime has joined it: alive.
    if (this.core.joined.has(ep.id) || !exec.linkPresent(ep.peer)) return 'alive';
    return Date.now() - ep.createdAt > this.core.opts.staleEndpointGraceMs ? 'stale' : 'young';
  }

  /**
   * Removes booked endpoints whose host-side veth has vanished (their container's namespace
   * died). dockerd calls Plugin.Activate on every start, after it killed containers it will never
   * send Leave/DeleteEndpoint for; and a port or address refusal must not be caused by one of
   * them. Endpoints with an operation in progress are left to it. Returns how many were removed.
   */
  async settleVanished(): Promise<number> {
    this.core.checkOpen();
    const got = this.core.gate.acquireShared();
    const release = typeof got === 'function' ? got : await got;
    try {
      return await this.settleVanishedHoldingGate();
    } finally {
      release();
    }
  }

  async settleVanishedHoldingGate(): Promise<number> {
    const { books, lanes, deps, log } = this.core;
    const gone = [...books.endpoints.values()].filter((e) => !lanes.busy(e.networkId, e.id) && !deps.exec.linkPresent(e.host));
    if (gone.length === 0) return 0;
    log.warn({ endpointIds: gone.map((e) => e.id), networkIds: [...new Set(gone.map((e) => e.networkId))] }, `${gone.length} endpoint(s) whose veth vanished: removed with their published ports`);
    await Promise.all(gone.map((e) => lanes.run(e.networkId, e.id, () => this.removeNow(e))));
    return gone.length;
  }

  /** DeleteEndpoint's kernel work and unbooking; the caller holds the endpoint's lane and the gate. */
  private async removeNow(ep: EndpointRecord): Promise<void> {
    const core = this.core;
    if (core.books.endpoints.get(ep.id) !== ep) return; // removed or changed meanwhile
    const veth: Work = { ip: [{ kind: 'veth-delete', host: ep.host }] };
    const work: Work = ep.mappings.length === 0 ? veth : { ...veth, fwBefore: core.firewall.portsDown({ endpointId: ep.id, mappings: ep.mappings }), conntrack: conntrackFor(ep) };
    const r = await core.pipelines.submitDeletion({
      work,
      intent: { kind: 'endpoint-delete', endpointId: ep.id, host: ep.host },
      teardown: true,
      settle: (res) => {
        if (!res.ok) return null;
        core.ports.release(ep.id);
        core.joined.delete(ep.id);
        core.books.deleteEndpoint(ep.id);
        return { deleteEndpoints: [ep.id] };
      },
    });
    if (!r.ok) throw new KernelError(`failed to delete endpoint ${ep.id}: ${r.message ?? 'unknown error'}`);
  }

  /** Deleting what is gone is success (dockerd only logs DeleteEndpoint errors). */
  delete(networkId: NetworkId, endpointId: EndpointId): Promise<void> {
    const core = this.core;
    return core.withEndpoint(networkId, endpointId, async () => {
      const ep = core.books.endpoints.get(endpointId);
      if (ep === undefined) return;
      if (core.opts.writeBehindDeletes && ep.mappings.length === 0 && core.pipelines.vethWorkPending && this.deleteBehind(ep)) return;
      await this.removeNow(ep);
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
   * deletion keeps the intent too (logged), so the next reconciliation retries it. When the
   * deletion cannot be made durable first (a full disk), it is done synchronously instead.
   */
  private deleteBehind(ep: EndpointRecord): boolean {
    const core = this.core;
    let intentId: number;
    try {
      intentId = core.keeper.writeOwnIntent([{ kind: 'endpoint-delete', endpointId: ep.id, host: ep.host }]);
      core.keeper.write({ deleteEndpoints: [ep.id] }, null);
    } catch {
      return false;
    }
    core.joined.delete(ep.id);
    core.books.deleteEndpoint(ep.id);
    core.ports.release(ep.id);
    core.books.reserveName(ep.host);
    if (ep.sandbox === undefined) core.books.reserveName(ep.peer);
    this.deferredCount.set(ep.networkId, (this.deferredCount.get(ep.networkId) ?? 0) + 1);
    const done: Promise<void> = core.pipelines
      .submitDeletion({
        work: { ip: [{ kind: 'veth-delete', host: ep.host }] },
        intent: null,
        settle: (res) => {
          core.books.releaseName(ep.host);
          if (ep.sandbox === undefined) core.books.releaseName(ep.peer);
          return res.ok ? { clearIntents: [intentId] } : null;
        },
      })
      .then((r) => {
        if (!r.ok) core.log.warn({ networkId: ep.networkId, endpointId: ep.id, host: ep.host, err: r.message }, 'write-behind veth deletion failed; reconciliation will retry');
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

  /** Resolves once every write-behind deletion accepted so far has been done by the kernel. */
  async settleDeferred(): Promise<void> {
    while (this.deferred.size > 0) await Promise.all([...this.deferred]);
  }

  /** Marks the endpoint joined (for whether it is alive) and returns it with its network. */
  join(networkId: NetworkId, endpointId: EndpointId): Promise<{ endpoint: EndpointRecord; network: NetworkRecord }> {
    return this.core.withEndpoint(networkId, endpointId, async () => {
      const endpoint = this.booked(endpointId);
      const network = this.networkOf(endpoint);
      this.core.joined.add(endpoint.id);
      return { endpoint, network };
    });
  }

  /** Nothing of ours changes in the kernel on Leave: the runtime moves the interface back itself. */
  leave(networkId: NetworkId, endpointId: EndpointId): Promise<void> {
    return this.core.withEndpoint(networkId, endpointId, async () => {
      this.core.joined.delete(endpointId);
    });
  }

  /** The booked endpoint, read in its lane (after its earlier operations). */
  info(networkId: NetworkId, endpointId: EndpointId): Promise<EndpointRecord> {
    return this.core.withEndpoint(networkId, endpointId, async () => this.booked(endpointId));
  }
}

interface EndpointFacts {
  readonly networkId: string;
  readonly ipv4: string;
  readonly ipv6: string | null;
  readonly mac: string;
  readonly requested: readonly unknown[];
  readonly exposed: readonly unknown[];
}

/** The first field in which a booked endpoint differs from a create request, or null. */
function endpointDifference(e: EndpointRecord, r: EndpointFacts): string | null {
  if (e.networkId !== r.networkId) return 'its network';
  if (e.ipv4 !== r.ipv4) return 'its IPv4 address';
  if (e.ipv6 !== r.ipv6) return 'its IPv6 address';
  if (e.mac !== r.mac) return 'its MAC address';
  if (JSON.stringify(e.requested) !== JSON.stringify(r.requested)) return 'its published ports';
  if (JSON.stringify(e.exposed) !== JSON.stringify(r.exposed)) return 'its exposed ports';
  return null;
}

/** The conntrack entries to clear when an endpoint's bindings go: those of its addresses. */
export function conntrackFor(ep: EndpointRecord): ConntrackFlush[] {
  const out: ConntrackFlush[] = [{ family: 4, address: parseCidr(ep.ipv4, 'endpoint address', 4).ip }];
  if (ep.ipv6 !== null) out.push({ family: 6, address: parseCidr(ep.ipv6, 'endpoint address', 6).ip });
  return out;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
