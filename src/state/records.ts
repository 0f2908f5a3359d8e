// What the books hold. These records are serialized as JSON columns, so they stay plain data.
import type { NetworkSpec } from '../domain/network-spec.js';

export type Proto = 'tcp' | 'udp' | 'sctp';

/** A port binding as requested by dockerd (com.docker.network.portmap), normalised. */
export interface RequestedBinding {
  readonly proto: Proto;
  readonly containerPort: number;
  readonly hostIp: string; // "" when unset
  readonly hostPort: number; // 0: ephemeral
  readonly hostPortEnd: number; // == hostPort for single ports
}

/** A binding actually installed: one DNAT rule. */
export interface PortMapping {
  readonly proto: Proto;
  readonly family: 4 | 6;
  readonly hostIp: string; // "0.0.0.0" / "::" for all addresses
  readonly hostPort: number;
  readonly containerIp: string;
  readonly containerPort: number;
}

export interface ExposedPort {
  readonly proto: Proto;
  readonly port: number;
}

export interface NetworkRecord {
  readonly spec: NetworkSpec;
  /** we made the bridge (and so delete it); false for a bridge the user made */
  readonly createdBridge: boolean;
  /** addresses we put on a user's bridge, removed again with the network */
  readonly addedAddrs: readonly string[];
  /** a user's bridge that was down before we used it: set down again with the network */
  readonly restoreDown?: boolean;
  readonly createdAt: number;
}

export interface EndpointRecord {
  readonly id: string;
  readonly networkId: string;
  readonly host: string; // host-side veth, on the bridge
  readonly peer: string; // container side (SrcName)
  readonly ipv4: string; // "ip/prefix"
  readonly ipv6: string | null;
  readonly mac: string;
  readonly joined: boolean;
  readonly exposed: readonly ExposedPort[];
  readonly requested: readonly RequestedBinding[];
  readonly mappings: readonly PortMapping[];
  readonly createdAt: number;
}

/** What a batch is about to do, written before the kernel is touched (crash recovery). */
export interface Intent {
  readonly batchId: number;
  readonly createdAt: number;
  readonly items: readonly IntentItem[];
}

export type IntentItem =
  | { readonly kind: 'endpoint-create'; readonly endpointId: string; readonly networkId: string; readonly host: string; readonly peer: string }
  | { readonly kind: 'endpoint-delete'; readonly endpointId: string; readonly host: string }
  | { readonly kind: 'ports-program'; readonly endpointId: string; readonly mappings: readonly PortMapping[] }
  | { readonly kind: 'ports-revoke'; readonly endpointId: string; readonly mappings: readonly PortMapping[] }
  // createdBridge/addrs: whether the bridge is ours to delete and which addresses we add to it,
  // so that reconciliation can undo an interrupted creation without touching a user's bridge.
  | {
      readonly kind: 'network-create';
      readonly networkId: string;
      readonly bridge: string;
      readonly createdBridge?: boolean;
      readonly addrs?: readonly string[];
      /** the user's bridge was down: an undo sets it down again */
      readonly restoreDown?: boolean;
    }
  | { readonly kind: 'network-delete'; readonly networkId: string; readonly bridge: string; readonly createdBridge?: boolean };
