// The in-memory view of the books, with the indexes the hot path needs so that no request scans
// every network or endpoint. Loaded from the StateStore at start; every change is also returned
// as BookChanges for the store.
import type { EndpointRecord, NetworkRecord } from '../state/records.js';

function addressKeys(e: EndpointRecord): string[] {
  return e.ipv6 === null ? [`${e.networkId} ${e.ipv4}`] : [`${e.networkId} ${e.ipv4}`, `${e.networkId} ${e.ipv6}`];
}

export class Books {
  readonly networks = new Map<string, NetworkRecord>();
  readonly endpoints = new Map<string, EndpointRecord>();
  private readonly byNetwork = new Map<string, Set<string>>();
  /** every interface name we own or have reserved (hosts, peers, bridges) */
  private readonly ifNames = new Set<string>();
  /** "<network id> <address>" → the endpoint that holds that address (IPv4 and IPv6) */
  private readonly byAddress = new Map<string, string>();

  load(networks: readonly NetworkRecord[], endpoints: readonly EndpointRecord[]): void {
    for (const n of networks) this.putNetwork(n);
    for (const e of endpoints) this.putEndpoint(e);
  }

  putNetwork(n: NetworkRecord): void {
    this.networks.set(n.spec.id, n);
    this.ifNames.add(n.spec.bridge);
    if (!this.byNetwork.has(n.spec.id)) this.byNetwork.set(n.spec.id, new Set());
  }

  deleteNetwork(id: string): void {
    const n = this.networks.get(id);
    if (n === undefined) return;
    this.networks.delete(id);
    this.ifNames.delete(n.spec.bridge);
    for (const eid of this.byNetwork.get(id) ?? []) this.deleteEndpoint(eid);
    this.byNetwork.delete(id);
  }

  putEndpoint(e: EndpointRecord): void {
    const old = this.endpoints.get(e.id);
    if (old !== undefined && (old.host !== e.host || old.peer !== e.peer)) {
      this.ifNames.delete(old.host);
      this.ifNames.delete(old.peer);
    }
    if (old !== undefined) this.unindexAddresses(old);
    for (const k of addressKeys(e)) this.byAddress.set(k, e.id);
    this.endpoints.set(e.id, e);
    this.ifNames.add(e.host);
    this.ifNames.add(e.peer);
    let set = this.byNetwork.get(e.networkId);
    if (set === undefined) this.byNetwork.set(e.networkId, (set = new Set()));
    set.add(e.id);
  }

  deleteEndpoint(id: string): void {
    const e = this.endpoints.get(id);
    if (e === undefined) return;
    this.endpoints.delete(id);
    this.ifNames.delete(e.host);
    this.ifNames.delete(e.peer);
    this.unindexAddresses(e);
    this.byNetwork.get(e.networkId)?.delete(id);
  }

  private unindexAddresses(e: EndpointRecord): void {
    for (const k of addressKeys(e)) if (this.byAddress.get(k) === e.id) this.byAddress.delete(k);
  }

  /** The endpoint of this network that holds `address` ("ip/prefix" as booked), if any. */
  addressHolder(networkId: string, address: string): EndpointRecord | undefined {
    const id = this.byAddress.get(`${networkId} ${address}`);
    return id === undefined ? undefined : this.endpoints.get(id);
  }

  endpointsOf(networkId: string): EndpointRecord[] {
    const out: EndpointRecord[] = [];
    for (const id of this.byNetwork.get(networkId) ?? []) {
      const e = this.endpoints.get(id);
      if (e !== undefined) out.push(e);
    }
    return out;
  }

  endpointCount(networkId: string): number {
    return this.byNetwork.get(networkId)?.size ?? 0;
  }

  isNameTaken(name: string): boolean {
    return this.ifNames.has(name);
  }

  reserveName(name: string): void {
    this.ifNames.add(name);
  }

  releaseName(name: string): void {
    this.ifNames.delete(name);
  }
}
