// What the books want in the firewall, in the backend's terms.
import type { NetworkSpec } from '../domain/network-spec.js';
import type { FirewallState, FwNetwork } from '../firewall/types.js';
import type { Books } from './books.js';

export function firewallState(books: Books): FirewallState {
  const networks = [...books.networks.values()].map((n) => toFwNetwork(n.spec));
  const ports = [...books.endpoints.values()].filter((e) => e.mappings.length > 0 && books.networks.has(e.networkId)).map((e) => ({ endpointId: e.id, mappings: e.mappings }));
  return { networks, ports };
}

/** What a network's firewall rules depend on. */
export function toFwNetwork(spec: NetworkSpec): FwNetwork {
  return {
    id: spec.id,
    bridge: spec.bridge,
    subnet4: spec.ipv4.network,
    subnet6: spec.ipv6 === null ? null : spec.ipv6.network,
    enableIpv6: spec.enableIpv6,
    icc: spec.icc,
    masquerade: spec.masquerade,
    hostIpv4: spec.hostIpv4,
    internal: spec.internal,
    gatewayModeIpv4: spec.gatewayModeIpv4,
    gatewayModeIpv6: spec.gatewayModeIpv6,
  };
}
