// Networks: create (idempotent for a retried request) and delete, under the exclusive gate so
// conflict checks see a stable set of networks and no endpoint work runs beside them.
import { conflictReason, specDifference, type NetworkSpec } from '../domain/network-spec.js';
import { bridgeAddrs, networkSysctls } from '../domain/network-setup.js';
import { KernelError, NetworkConflictError, NetworkExistsError } from '../errors.js';
import { classifyIpError } from '../ip/errors.js';
import type { IpOp } from '../ip/ops.js';
import { parseIpLinks, type KernelLink } from '../ip/read.js';
import type { NetworkRecord } from '../state/records.js';
import type { EngineCore } from './core.js';
import { toFwNetwork } from './firewall-state.js';
import type { Endpoints } from './endpoints.js';
import { networkName } from './network-names.js';

/** What the books also say about a network, beyond its spec. */
export interface NetworkLabel {
  /** made for the CNI config of this name */
  readonly cniName?: string;
}

export class Networks {
  constructor(
    private readonly core: EngineCore,
    private readonly endpoints: Endpoints,
  ) {}

  /** The network's spec, or undefined. */
  get(id: string): NetworkSpec | undefined {
    return this.core.books.networks.get(id)?.spec;
  }

  async create(spec: NetworkSpec, label: NetworkLabel = {}): Promise<void> {
    const core = this.core;
    core.checkOpen();
    await core.exclusively(async () => {
      const booked = core.books.networks.get(spec.id);
      if (booked !== undefined) {
        // A retried request (its answer was lost) is done already; the same id asking for
        // something else is refused.
        const diff = specDifference(booked.spec, spec);
        if (diff === null) return;
        throw new NetworkExistsError(`network ${spec.id} exists with a different configuration (${diff})`);
      }
      this.checkConflicts(spec, label);
      const existing = await this.probeLink(spec.bridge);
      if (existing !== null && existing.kind !== 'bridge') throw new NetworkConflictError(`existing interface ${spec.bridge} is not a bridge`);
      await this.build(spec, existing, label);
    });
  }

  private checkConflicts(spec: NetworkSpec, label: NetworkLabel): void {
    for (const other of this.core.books.networks.values()) {
      const reason = conflictReason(spec, other.spec);
      if (reason !== null) {
        throw new NetworkConflictError(`cannot create ${networkName(spec.id, label)} (${spec.bridge}): conflicts with ${networkName(other.spec.id, other)} (${other.spec.bridge}): ${reason}`);
      }
    }
    if (this.core.books.isNameTaken(spec.bridge)) {
      throw new NetworkConflictError(`cannot create ${networkName(spec.id, label)}: interface name ${spec.bridge} is in use by an endpoint of batchbridge`);
    }
  }

  /** The bridge (ours, or the user's `existing` one), its addresses, sysctls and rules; booked. */
  private async build(spec: NetworkSpec, existing: KernelLink | null, label: NetworkLabel): Promise<void> {
    const core = this.core;
    const createdBridge = existing === null;
    const wanted = bridgeAddrs(spec);
    const addedAddrs = createdBridge ? [] : wanted.filter((a) => !existing.addrs.includes(a));
    // A user's bridge keeps its state: if it was down, it goes down again with the network.
    const restoreDown = existing !== null && !existing.up;
    // One intent covers both steps and the rollback, written before step 1 and removed in the
    // transaction that books the network (or after the rollback): a crash anywhere in between
    // leaves it for reconciliation to undo (a per-batch intent would leave a gap between steps).
    const intentId = core.keeper.writeOwnIntent([
      { kind: 'network-create', networkId: spec.id, bridge: spec.bridge, createdBridge, addrs: createdBridge ? wanted : addedAddrs, restoreDown },
    ]);
    const undo = (): Promise<void> => this.rollback(spec, createdBridge, addedAddrs, restoreDown, intentId);
    core.bridgeEpoch++;
    // Step 1: the bridge itself, and the sysctls that must precede its IPv6 addresses.
    const step1: IpOp[] = createdBridge ? [{ kind: 'bridge-create', bridge: spec.bridge, mac: spec.bridgeMac, mtu: spec.mtu, group: core.ownerGroup }] : [];
    const r1 = await core.submit({ ip: step1, sysctls: networkSysctls(spec) }, null, () => null);
    if (!r1.ok) {
      await undo();
      throw new KernelError(`failed to create bridge ${spec.bridge}: ${r1.message ?? 'unknown error'}`);
    }
    // Step 2: addresses, up, firewall. Booked in the same transaction that clears the intent.
    const record: NetworkRecord = { spec, createdBridge, addedAddrs, ...(restoreDown ? { restoreDown } : {}), ...label, createdAt: Date.now() };
    const r2 = await core.submit(
      { ip: [{ kind: 'bridge-addrs', bridge: spec.bridge, addrs: createdBridge ? wanted : addedAddrs, up: true }], fwAfter: core.firewall.networkUp(toFwNetwork(spec)) },
      null,
      (r) => {
        if (!r.ok) return null;
        core.books.putNetwork(record);
        return { putNetworks: [record], clearIntents: [intentId] };
      },
    );
    if (!r2.ok) {
      await undo();
      throw new KernelError(`failed to set up bridge ${spec.bridge}: ${r2.message ?? 'unknown error'}`);
    }
    core.log.info({ networkId: spec.id, bridge: spec.bridge, createdBridge }, 'network created');
  }

  private async rollback(spec: NetworkSpec, createdBridge: boolean, addedAddrs: readonly string[], restoreDown: boolean, intentId: number): Promise<void> {
    const ip: IpOp[] = createdBridge ? [{ kind: 'bridge-delete', bridge: spec.bridge }] : releaseUserBridge(spec.bridge, addedAddrs, restoreDown);
    // The creation's intent stays until the rollback is done; if it fails, reconciliation retries.
    const r = await this.core.submit({ fwBefore: this.core.firewall.networkDown(toFwNetwork(spec)), ip }, null, (res) => (res.ok ? { clearIntents: [intentId] } : null), true);
    if (!r.ok) this.core.log.warn({ networkId: spec.id, err: r.message }, 'rollback of a failed network creation was incomplete');
  }

  /** Deleting what is gone is success (dockerd only logs DeleteNetwork errors). */
  async delete(id: string): Promise<void> {
    const core = this.core;
    core.checkOpen();
    await core.exclusively(async () => {
      // The bridge goes after its veths: write-behind deletions first (none run under the gate).
      await this.endpoints.settleDeferred();
      const net = core.books.networks.get(id);
      if (net === undefined) return;
      const eps = core.books.endpointsOf(id);
      const fw = core.firewall;
      core.bridgeEpoch++;
      const fwBefore = fw.combine([...eps.map((e) => fw.portsDown({ endpointId: e.id, mappings: e.mappings })), fw.networkDown(toFwNetwork(net.spec))], true);
      const ip: IpOp[] = eps.map((e): IpOp => ({ kind: 'veth-delete', host: e.host }));
      if (net.createdBridge) ip.push({ kind: 'bridge-delete', bridge: net.spec.bridge });
      else ip.push(...releaseUserBridge(net.spec.bridge, net.addedAddrs, net.restoreDown === true));
      const r = await core.submit(
        { fwBefore, ip },
        { kind: 'network-delete', networkId: id, bridge: net.spec.bridge, createdBridge: net.createdBridge },
        (res) => {
          if (!res.ok) return null;
          for (const e of eps) {
            core.ports.release(e.id);
            core.joined.delete(e.id);
          }
          core.books.deleteNetwork(id);
          return { deleteEndpoints: eps.map((e) => e.id), deleteNetworks: [id] };
        },
        true,
      );
      if (!r.ok) throw new KernelError(`failed to delete network ${id}: ${r.message ?? 'unknown error'}`);
      core.log.info({ networkId: id, endpoints: eps.length }, 'network deleted');
    });
  }

  private async probeLink(name: string): Promise<KernelLink | null> {
    const { tools } = this.core.deps;
    const r = await tools.run(tools.tools.ip, ['-j', '-d', 'addr', 'show', 'dev', name]);
    if (r.exitCode !== 0) {
      if (classifyIpError(r.stderr) === 'no-device') return null;
      throw new KernelError(`cannot inspect interface ${name}: ${r.stderr.trim() || r.spawnError || 'ip failed'}`);
    }
    return parseIpLinks(r.stdout)[0] ?? null;
  }
}

/** What a user's bridge gets back when our network leaves it: our addresses gone, its down state. */
function releaseUserBridge(bridge: string, addedAddrs: readonly string[], restoreDown: boolean): IpOp[] {
  if (addedAddrs.length === 0 && !restoreDown) return [];
  return [{ kind: 'bridge-addrs-remove', bridge, addrs: addedAddrs, ...(restoreDown ? { down: true } : {}) }];
}
