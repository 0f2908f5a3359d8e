// The kernel work of one accepted operation, as plain data: it crosses into a worker thread by
// structured clone, so no classes and no functions here.

export interface VethCreate {
  readonly kind: 'veth-create';
  readonly host: string;
  readonly peer: string;
  readonly bridge: string;
  readonly mtu: number; // 0: kernel default
  /** link group of the host end: batchbridge's ownership mark (see OwnershipMark) */
  readonly group?: number;
}

export interface VethDelete {
  readonly kind: 'veth-delete';
  readonly host: string;
}

export interface BridgeCreate {
  readonly kind: 'bridge-create';
  readonly bridge: string;
  readonly mac: string;
  readonly mtu: number;
  /** link group: batchbridge's ownership mark */
  readonly group?: number;
}

export interface BridgeAddrs {
  readonly kind: 'bridge-addrs';
  readonly bridge: string;
  /** "ip/prefix" texts, rendered from parsed addresses */
  readonly addrs: readonly string[];
  readonly up: boolean;
}

export interface BridgeAddrsRemove {
  readonly kind: 'bridge-addrs-remove';
  readonly bridge: string;
  readonly addrs: readonly string[];
  /** set the (user's) bridge down again: it was down before we used it */
  readonly down?: boolean;
}

export interface BridgeDelete {
  readonly kind: 'bridge-delete';
  readonly bridge: string;
}

export type IpOp = VethCreate | VethDelete | BridgeCreate | BridgeAddrs | BridgeAddrsRemove | BridgeDelete;

export type IpTable = 'filter' | 'nat' | 'mangle' | 'raw';

/** One iptables-restore line ("-A CHAIN …", "-D CHAIN …", "-I CHAIN N …", ":CHAIN - [0:0]"). */
export interface RuleLine {
  readonly table: IpTable;
  readonly line: string;
}

export interface FirewallChange {
  readonly v4: readonly RuleLine[];
  readonly v6: readonly RuleLine[];
  /**
   * Deletions of rules that may already be gone (someone flushed them, a crash): applied
   * one transaction apart so a missing rule cannot sink the rest. See apply-firewall.ts.
   */
  readonly tolerant: boolean;
}

export interface SysctlWrite {
  readonly path: string; // relative to /proc/sys, e.g. "net/ipv6/conf/bb-x/accept_ra"
  readonly value: string;
  readonly optional: boolean; // missing file is fine (IPv6 disabled on the host)
}

export interface ConntrackFlush {
  readonly family: 4 | 6;
  readonly address: string;
}

/** Everything one operation asks of the kernel, in the order the stages run. */
export interface OpWork {
  readonly opId: number;
  /** firewall removals run before ip work (so no rule points at a vanishing veth) */
  readonly fwBefore?: FirewallChange;
  readonly ip?: readonly IpOp[];
  readonly sysctls?: readonly SysctlWrite[];
  /** additions run after ip work */
  readonly fwAfter?: FirewallChange;
  readonly conntrack?: readonly ConntrackFlush[];
}

/**
 * Operations that only change the firewall, in one direction (ProgramExternalConnectivity adds,
 * RevokeExternalConnectivity removes): they depend on no ip work, so they need not wait for any.
 */
export function isFirewallOnly(o: Omit<OpWork, 'opId'>): boolean {
  return (o.ip?.length ?? 0) === 0 && (o.sysctls?.length ?? 0) === 0 && (o.fwBefore === undefined) !== (o.fwAfter === undefined);
}

export interface OpResult {
  readonly opId: number;
  readonly ok: boolean;
  readonly message?: string;
}

export interface BatchRequest {
  readonly batchId: number;
  readonly ops: readonly OpWork[];
  /** link group for this batch's veth deletions, unique among concurrent batches */
  readonly linkGroup: number;
}

export interface BatchTimings {
  readonly ipMs: number;
  readonly fwMs: number;
  readonly totalMs: number;
  readonly ipSpawns: number;
  readonly fwSpawns: number;
}

export interface BatchResponse {
  readonly batchId: number;
  readonly results: readonly OpResult[];
  readonly timings: BatchTimings;
}
