// The firewall as the engine sees it: what a network and an endpoint's published ports need,
// the verbs a backend offers, and the data a batch carries to a worker thread. The engine calls
// only these; today's backend is iptables-restore (iptables/), and another one (nftables) would
// be another folder beside it, chosen in index.ts.
import type { PortMapping } from '../domain/publishing.js';

export type Family = 4 | 6;
export type IpTable = 'filter' | 'nat' | 'mangle' | 'raw';

/** One iptables-restore line ("-A CHAIN …", "-D CHAIN …", "-I CHAIN N …", ":CHAIN - [0:0]"). */
export interface RuleLine {
  readonly table: IpTable;
  readonly line: string;
}

/** A change to our rules, per family: plain data, it crosses into worker threads. */
export interface FirewallChange {
  readonly v4: readonly RuleLine[];
  readonly v6: readonly RuleLine[];
  /**
   * Deletions of rules that may already be gone (someone flushed them, a crash): applied so a
   * missing rule cannot sink the rest (see iptables/apply.ts).
   */
  readonly tolerant: boolean;
}

/** What a network's rules depend on. */
export interface FwNetwork {
  readonly id: string;
  readonly bridge: string;
  readonly subnet4: string; // masked network, "198.18.20.0/24"
  readonly subnet6: string | null;
  readonly enableIpv6: boolean;
  readonly icc: boolean;
  readonly masquerade: boolean;
  readonly hostIpv4: string | null;
  readonly internal: boolean;
  readonly gatewayModeIpv4: 'nat' | 'routed';
  readonly gatewayModeIpv6: 'nat' | 'routed';
}

/** An endpoint's published ports. */
export interface FwPorts {
  readonly endpointId: string;
  readonly mappings: readonly PortMapping[];
}

/** Everything the books want in the firewall. */
export interface FirewallState {
  readonly networks: readonly FwNetwork[];
  readonly ports: readonly FwPorts[];
}

export interface FwWork {
  readonly opId: number;
  readonly change: FirewallChange;
}

export interface FwApplyOutcome {
  readonly failed: Map<number, string>;
  readonly spawns: number;
}

/** A (chain, owner) whose rule count differs from what the books want. */
export interface CensusDifference {
  readonly key: string;
  readonly have: number;
  readonly want: number;
}

/** A difference reconciliation reports: its owner and what it found. */
export interface DriftFinding {
  readonly subject: string;
  readonly detail: string;
}

/** The pure half: the engine composes these changes into batches. */
export interface FirewallPlanner {
  networkUp(n: FwNetwork): FirewallChange;
  networkDown(n: FwNetwork): FirewallChange;
  portsUp(p: FwPorts): FirewallChange;
  portsDown(p: FwPorts): FirewallChange;
  /** several changes as one (all tolerant or not) */
  combine(changes: readonly FirewallChange[], tolerant: boolean): FirewallChange;
}

/** A backend: the planner plus what touches the kernel. */
export interface FirewallBackend extends FirewallPlanner {
  readonly name: string;
  /** apply the changes of one batch (in a worker thread); one failure fails only its operation */
  apply(works: readonly FwWork[]): Promise<FwApplyOutcome>;
  /** make our rules exactly what `state` wants (at start, after a crash, after a flush) */
  sync(state: FirewallState): Promise<void>;
  /**
   * Count our rules per chain and owner against `state`. `changing` (asked before and after the
   * kernel is read) names endpoints whose rules may be changing meanwhile, left out; null from
   * it means nothing can be concluded now, and so does a null answer.
   */
  verify(state: FirewallState, changing: () => ReadonlySet<string> | null): Promise<CensusDifference[] | null>;
  /** what reconciliation reports about our rules against `state` */
  diff(state: FirewallState, dryRun: boolean): Promise<DriftFinding[]>;
  /**
   * Remove all our rules, chains and hooks (uninstall); returns what it removed, or with dryRun
   * what it would remove, removing nothing.
   */
  remove(dryRun?: boolean): Promise<string[]>;
}
