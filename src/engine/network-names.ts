// How error messages name a network and an endpoint: as their user knows them. A CNI network by
// the name in its config (its engine id is a hash nobody has seen), a Docker one by its id; a CNI
// attachment by its container and interface.
import type { EndpointRecord, NetworkRecord } from '../state/records.js';

export function networkName(id: string, label: Pick<NetworkRecord, 'cniName'> | undefined): string {
  return label?.cniName === undefined ? `network ${id}` : `CNI network ${JSON.stringify(label.cniName)}`;
}

export function endpointName(ep: EndpointRecord): string {
  return ep.sandbox === undefined ? `endpoint ${ep.id}` : `container ${ep.sandbox.containerId} (interface ${ep.peer})`;
}
