// What one operation asks of `ip`, as plain data: it crosses into a worker thread by structured
// clone, so no classes and no functions here. The lines these become are rendered in lines.ts.

export interface VethCreate {
  readonly kind: 'veth-create';
  readonly host: string;
  readonly peer: string;
  readonly bridge: string;
  readonly mtu: number; // 0: kernel default
  /** link group of the host end: batchbridge's ownership mark (StateStore.ownerGroup) */
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

/** "bb" in the high bytes: link groups batches put veths in to delete them all at once. */
export const LINK_GROUP_BASE = 0x62620000;
/** The link group reconciliation's veth deletions use (batches use LINK_GROUP_BASE..+0xfff). */
export const RECONCILE_LINK_GROUP = 0x62621000;
