// Published ports: allocating host ports (port-allocator.ts), their DNAT rules through the
// firewall pipeline, and taking them away again.
import type { EndpointId, NetworkId } from '../domain/names.js';
import type { NetworkSpec } from '../domain/network-spec.js';
import type { PortMapping, PublishRequest, RequestedBinding } from '../domain/publishing.js';
import { KernelError, PortAllocatedError } from '../errors.js';
import type { EndpointRecord } from '../state/records.js';
import type { EngineCore } from './core.js';
import { conntrackFor, type Endpoints } from './endpoints.js';

export interface Binding {
  readonly networkId: string;
  readonly endpointId: string;
  readonly mapping: PortMapping;
}

export class Publishing {
  constructor(
    private readonly core: EngineCore,
    private readonly endpoints: Endpoints,
  ) {}

  /**
   * Installs the endpoint's bindings: `ports` if it names any, else those it asked for at
   * creation. The same bindings again (a retry) are kept as they are; different ones replace
   * them.
   */
  program(networkId: NetworkId, endpointId: EndpointId, ports: PublishRequest): Promise<void> {
    const core = this.core;
    return core.withEndpoint(networkId, endpointId, async () => {
      const ep = this.endpoints.booked(endpointId);
      const net = this.endpoints.networkOf(ep);
      const want = ports.requested.length > 0 || ports.exposed.length > 0 ? ports : { requested: ep.requested, exposed: ep.exposed };
      if (net.spec.internal || want.requested.length === 0) {
        const next: EndpointRecord = { ...ep, requested: want.requested, exposed: want.exposed };
        core.books.putEndpoint(next);
        core.keeper.write({ putEndpoints: [next] }, null);
        return;
      }
      if (ep.mappings.length > 0 && JSON.stringify(ep.requested) === JSON.stringify(want.requested)) return;
      // Different bindings replace the old ones: take those away first (their own batch), so a
      // failure below leaves the endpoint with no bindings rather than half of two sets.
      let cur = ep;
      if (ep.mappings.length > 0) {
        await this.revokeNow(ep);
        cur = core.books.endpoints.get(endpointId) ?? ep;
      }
      const mappings = await this.allocate(net.spec, cur, want.requested);
      const r = await core.submit({ fwAfter: core.firewall.portsUp({ endpointId: ep.id, mappings }) }, { kind: 'ports-program', endpointId, mappings }, (res) => {
        if (!res.ok) return null;
        const next: EndpointRecord = { ...cur, requested: want.requested, exposed: want.exposed, mappings };
        core.books.putEndpoint(next);
        return { putEndpoints: [next] };
      });
      if (!r.ok) {
        core.ports.release(ep.id);
        throw new KernelError(`failed to program external connectivity: ${r.message ?? 'unknown error'}`);
      }
    });
  }

  /** Host ports for an endpoint; a port held by an endpoint whose veth vanished is freed first. */
  private async allocate(spec: NetworkSpec, ep: EndpointRecord, requested: readonly RequestedBinding[]): Promise<PortMapping[]> {
    try {
      return await this.core.ports.allocate(ep.id, spec, ep, requested);
    } catch (err) {
      if (!(err instanceof PortAllocatedError) || (await this.endpoints.settleVanishedHoldingGate()) === 0) throw err;
      return await this.core.ports.allocate(ep.id, spec, ep, requested);
    }
  }

  /** Revoking what was never programmed, or twice, is success (dockerd only logs our errors). */
  revoke(networkId: NetworkId, endpointId: EndpointId): Promise<void> {
    return this.core.withEndpoint(networkId, endpointId, async () => {
      const ep = this.core.books.endpoints.get(endpointId);
      if (ep === undefined || ep.mappings.length === 0 || !this.core.books.networks.has(ep.networkId)) return;
      await this.revokeNow(ep);
    });
  }

  /** Removes an endpoint's bindings (rules, conntrack entries, ports); caller holds its lane. */
  private async revokeNow(ep: EndpointRecord): Promise<void> {
    const core = this.core;
    const r = await core.submit(
      { fwBefore: core.firewall.portsDown({ endpointId: ep.id, mappings: ep.mappings }), conntrack: conntrackFor(ep) },
      { kind: 'ports-revoke', endpointId: ep.id, mappings: ep.mappings },
      (res) => {
        if (!res.ok) return null;
        core.ports.release(ep.id);
        const next: EndpointRecord = { ...ep, mappings: [] };
        core.books.putEndpoint(next);
        return { putEndpoints: [next] };
      },
      true,
    );
    if (!r.ok) throw new KernelError(`failed to revoke external connectivity: ${r.message ?? 'unknown error'}`);
  }

  /** Bindings of every endpoint (for `batchbridge ports`). */
  bindings(): Binding[] {
    const out: Binding[] = [];
    for (const e of this.core.books.endpoints.values()) for (const m of e.mappings) out.push({ networkId: e.networkId, endpointId: e.id, mapping: m });
    return out;
  }
}
