// What one operation asks of `ip`, as plain data: it crosses into a worker thread by structured
// clone, so no classes and no functions here. The lines these become are rendered in lines.ts.

/** A route inside a container's namespace. */
export interface SandboxRoute {
  /** "ip/prefix" */
  readonly dst: string;
  readonly via?: string;
}

/**
 * The container end of a veth made directly in the container's network namespace (CNI): no
 * move between namespaces, which costs an RCU barrier under the rtnl lock each time.
 */
export interface PeerNetns {
  /** a path as the runtime gave it (CNI_NETNS), checked to exist before the batch */
  readonly netns: string;
  readonly mac: string;
}

/**
 * What must happen inside a container's namespace once its veth end is there (CNI): addresses,
 * link up, routes. It cannot share a process with anything outside that namespace
 * (ip/sandbox.ts), so it is an operation of its own, after the veth's creation.
 */
export interface SandboxSetup {
  readonly kind: 'sandbox-setup';
  readonly netns: string;
  /** the container end's name (CNI_IFNAME) */
  readonly dev: string;
  /** "ip/prefix" texts */
  readonly addrs: readonly string[];
  readonly routes: readonly SandboxRoute[];
}

export interface VethCreate {
  readonly kind: 'veth-create';
  readonly host: string;
  /** the container end's name (in `sandbox.netns` when there is one) */
  readonly peer: string;
  readonly bridge: string;
  readonly mtu: number; // 0: kernel default
  /** link group of the host end: batchbridge's ownership mark (StateStore.ownerGroup) */
  readonly group?: number;
  /** the host end's MAC (else the kernel's random one) */
  readonly hostMac?: string;
  /** hairpin mode on the bridge port (CNI hairpinMode) */
  readonly hairpin?: boolean;
  readonly sandbox?: PeerNetns;
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

export type IpOp = VethCreate | VethDelete | BridgeCreate | BridgeAddrs | BridgeAddrsRemove | BridgeDelete | SandboxSetup;

/** "bb" in the high bytes: link groups batches put veths in to delete them all at once. */
export const LINK_GROUP_BASE = 0x62620000;
/** The link group reconciliation's veth deletions use (batches use LINK_GROUP_BASE..+0xfff). */
export const RECONCILE_LINK_GROUP = 0x62621000;
