// What reconciliation works on and what it reports (plan.ts, run.ts).
import type { SysctlWrite } from '../../domain/network-setup.js';
import type { KernelLink } from '../../ip/read.js';
import type { EndpointRecord, Intent, NetworkRecord } from '../../state/records.js';

export interface KernelSnapshot {
  readonly links: ReadonlyMap<string, KernelLink>;
}

export interface ReconcileInput {
  readonly networks: readonly NetworkRecord[];
  readonly endpoints: readonly EndpointRecord[];
  readonly intents: readonly Intent[];
  readonly kernel: KernelSnapshot;
  /** our ownership mark (link group) */
  readonly ownerGroup: number;
  /** word the findings as what would be done */
  readonly dryRun?: boolean;
  /** endpoints joined now (the engine's memory; none for the offline CLI) */
  readonly joined?: ReadonlySet<string>;
  /** since when each endpoint has been seen parked by earlier runs (see ABANDONED_AFTER_MS) */
  readonly parkedSince?: ReadonlyMap<string, number>;
  readonly now?: number;
}

// ------------------------------------------------------------------------------------ output

export type FindingKind =
  | 'intent-undone'
  | 'intent-finished'
  | 'intent-cleared'
  | 'bridge-missing'
  | 'bridge-not-a-bridge'
  | 'bridge-down'
  | 'address-missing'
  | 'veth-detached'
  | 'endpoint-vanished'
  | 'orphan-veth'
  | 'orphan-bridge'
  | 'ownership-mark'
  | 'endpoint-abandoned'
  | 'firewall-drift'
  | 'error';

export interface Finding {
  readonly kind: FindingKind;
  /** the object concerned: an interface name, a network or endpoint id, a rule tag */
  readonly subject: string;
  /** what was found and what is (or would be) done about it */
  readonly detail: string;
  /** the network and endpoint it concerns, when it concerns one (for logs and metrics) */
  readonly networkId?: string;
  readonly endpointId?: string;
}

export type FindingIds = Pick<Finding, 'networkId' | 'endpointId'>;

export interface ReconcilePlan {
  readonly findings: Finding[];
  /** lines of one `ip -force -batch -` script, rendered by the ip vocabulary (checked values) */
  readonly ipLines: string[];
  readonly sysctls: SysctlWrite[];
  readonly deleteEndpoints: string[];
  readonly deleteNetworks: string[];
  readonly putNetworks: NetworkRecord[];
  readonly putEndpoints: EndpointRecord[];
  readonly clearIntents: number[];
  /** endpoints parked now and kept: their container end is in our namespace and nobody joined them */
  readonly parked: string[];
}

/**
 * A booked endpoint whose container end has sat in our own namespace, unjoined, this long was
 * forgotten by its runtime: its DeleteEndpoint was lost (dockerd resends a call whose answer it
 * did not get without its arguments, so a lost DeleteEndpoint cannot be told apart). dockerd
 * joins an endpoint right after creating it and deletes it right after Leave, so nothing live is
 * ever parked for minutes; a CNI container end is made in the pod's namespace and is never
 * parked at all. Counted from the first reconciliation that saw it parked.
 */
export const ABANDONED_AFTER_MS = 10 * 60_000;

export interface ReconcileReport {
  readonly findings: Finding[];
  /** true when fixes were applied (false for a dry run) */
  readonly applied: boolean;
  readonly networks: number;
  readonly endpoints: number;
  readonly intents: number;
  readonly ms: number;
}

