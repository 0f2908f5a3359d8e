// What the books hold. These records are serialized as JSON columns, so they stay plain data.
import type { NetworkSpec } from '../domain/network-spec.js';

import type { PortMapping, PublishRequest } from '../domain/publishing.js';

export type { ExposedPort, PortMapping, Proto, RequestedBinding } from '../domain/publishing.js';

export interface NetworkRecord {
  readonly spec: NetworkSpec;
  /** we made the bridge (and so delete it); false for a bridge the user made */
  readonly createdBridge: boolean;
  /** addresses we put on a user's bridge, removed again with the network */
  readonly addedAddrs: readonly string[];
  /** a user's bridge that was down before we used it: set down again with the network */
  readonly restoreDown?: boolean;
  /** a network made for a CNI config: its name there (the id is derived from it) */
  readonly cniName?: string;
  readonly createdAt: number;
}

/** Where a CNI attachment's container end lives (the endpoint's `peer` is its name there). */
export interface EndpointSandbox {
  readonly containerId: string;
  /** CNI_NETNS as the runtime gave it at ADD */
  readonly netns: string;
}

/** A booked endpoint; what it asked to publish (PublishRequest) is kept for a Program without ports. */
export interface EndpointRecord extends PublishRequest {
  readonly id: string;
  readonly networkId: string;
  readonly host: string; // host-side veth, on the bridge
  readonly peer: string; // container side (SrcName)
  readonly ipv4: string; // "ip/prefix"
  readonly ipv6: string | null;
  readonly mac: string;
  /** the MAC / IPv6 address was chosen by us, not given by the request (a replayed answer says so) */
  readonly macChosen?: boolean;
  readonly ipv6Chosen?: boolean;
  /** a CNI attachment: the container end was made in the container's namespace */
  readonly sandbox?: EndpointSandbox;
  /** the host end's MAC, when we chose it (CNI results report it) */
  readonly hostMac?: string;
  readonly joined: boolean;
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
