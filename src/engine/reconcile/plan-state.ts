// The working state of one planning run (plan.ts, intents.ts): the books as they will be once
// the fixes are made, and the fixes so far.
import type { SysctlWrite } from '../../domain/network-setup.js';
import { renderIpLine, type IpLine } from '../../ip/lines.js';
import { RECONCILE_LINK_GROUP } from '../../ip/ops.js';
import { normAddr, type KernelLink } from '../../ip/read.js';
import type { EndpointRecord, NetworkRecord } from '../../state/records.js';
import type { Finding, FindingIds, FindingKind, ReconcileInput, ReconcilePlan } from './types.js';

/** Working state of one planning run: the books as they will be, the fixes so far. */
export class PlanState {
  readonly findings: Finding[] = [];
  readonly networks: Map<string, NetworkRecord>;
  readonly endpoints: Map<string, EndpointRecord>;
  readonly deleteEndpoints = new Set<string>();
  readonly deleteNetworks = new Set<string>();
  readonly putNetworks = new Map<string, NetworkRecord>();
  readonly putEndpoints = new Map<string, EndpointRecord>();
  readonly clearIntents: number[] = [];
  /** host-side veth names to delete (one link group, one RCU wait) */
  readonly vethDeletes = new Set<string>();
  readonly bridgeDeletes = new Set<string>();
  /** bridges an interrupted intent made that no booked network uses */
  readonly candidateOrphanBridges = new Set<string>();
  /** lines that create bridges (first in the script) */
  readonly early: IpLine[] = [];
  /** addresses, enslaving, up/down, marks (after the veth removals) */
  readonly late: IpLine[] = [];
  readonly sysctls: SysctlWrite[] = [];
  readonly parked: string[] = [];

  constructor(readonly input: ReconcileInput) {
    this.networks = new Map(input.networks.map((n) => [n.spec.id as string, n]));
    this.endpoints = new Map(input.endpoints.map((e) => [e.id, e]));
  }

  link(name: string): KernelLink | undefined {
    return this.input.kernel.links.get(name);
  }

  /** Carries our ownership mark: we made it. */
  ours(name: string): boolean {
    return this.link(name)?.group === this.input.ownerGroup;
  }

  /** A finding; the ids it concerns are looked up from its subject unless given. */
  note(kind: FindingKind, subject: string, detail: string, ids: FindingIds = this.idsOf(subject)): void {
    this.findings.push({ kind, subject, detail, ...ids });
  }

  /** The network and endpoint a subject (an id, a bridge or a host veth of the books) names. */
  idsOf(subject: string): FindingIds {
    const { networks, endpoints } = this.input;
    const ep = endpoints.find((e) => e.id === subject || e.host === subject);
    if (ep !== undefined) return { networkId: ep.networkId, endpointId: ep.id };
    const net = networks.find((n) => n.spec.id === subject || n.spec.bridge === subject);
    return net === undefined ? {} : { networkId: net.spec.id };
  }

  /** "removed" in a real run, "would remove" in a dry run. */
  act(done: string, would: string): string {
    return this.input.dryRun === true ? would : done;
  }

  unbookEndpoint(id: string): void {
    this.endpoints.delete(id);
    this.putEndpoints.delete(id);
    this.deleteEndpoints.add(id);
  }

  unbookNetwork(id: string): void {
    for (const e of [...this.endpoints.values()]) if (e.networkId === id) this.unbookEndpoint(e.id);
    this.networks.delete(id);
    this.putNetworks.delete(id);
    this.deleteNetworks.add(id);
  }

  /** Lines that give a user's bridge back: our addresses off it, down again if it was. */
  releaseUserBridge(bridge: string, addrs: readonly string[], restoreDown: boolean): void {
    const l = this.link(bridge);
    if (l === undefined || [...this.networks.values()].some((n) => n.spec.bridge === bridge)) return;
    for (const a of addrs) if (l.addrs.includes(normAddr(a))) this.late.push({ op: 'addr-del', addr: a, dev: bridge });
    if (restoreDown && l.up) this.late.push({ op: 'link-down', dev: bridge });
  }

  finish(): ReconcilePlan {
    // Never delete what a booked endpoint owns (an intent may name a veth that got booked later).
    for (const e of this.endpoints.values()) this.vethDeletes.delete(e.host);
    // Script order: new bridges, then veth removals (one link group, one RCU wait), then
    // addresses/enslaving/up, then bridge removals.
    const script: IpLine[] = [...this.early];
    if (this.vethDeletes.size > 0) {
      for (const v of this.vethDeletes) script.push({ op: 'set-group', dev: v, group: RECONCILE_LINK_GROUP });
      script.push({ op: 'del-group', group: RECONCILE_LINK_GROUP });
    }
    script.push(...this.late);
    for (const b of this.bridgeDeletes) script.push({ op: 'link-del', dev: b });
    return {
      findings: this.findings,
      ipLines: script.map(renderIpLine),
      sysctls: this.sysctls,
      deleteEndpoints: [...this.deleteEndpoints],
      deleteNetworks: [...this.deleteNetworks],
      putNetworks: [...this.putNetworks.values()],
      putEndpoints: [...this.putEndpoints.values()],
      clearIntents: this.clearIntents,
      parked: this.parked,
    };
  }
}

