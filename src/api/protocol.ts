// Docker's remote network-driver protocol on top of the engine: each call's wire request decoded
// into domain terms, the engine asked, and the reply encoded as dockerd expects it. The fastify
// app (app.ts) only routes URLs here.
import type { Engine } from '../engine/engine.js';
import type { Binding } from '../engine/publishing.js';
import type { EndpointId, NetworkId } from '../domain/names.js';
import { InvalidRequestError } from '../errors.js';
import { protoNumber } from '../domain/publishing.js';
import { resolveEndpointAddresses, type CreateEndpointInterface, type EndpointReply } from './endpoint-request.js';
import { parseNetworkSpec, type CreateNetworkInput } from './network-options.js';
import { parsePortOptions } from './port-options.js';
import { RetryMemo } from './retry-memo.js';

export interface CreateEndpointRequest {
  readonly NetworkID: NetworkId;
  readonly EndpointID: EndpointId;
  readonly Interface: CreateEndpointInterface | null | undefined;
  readonly Options: Record<string, unknown>;
}

export interface JoinResponse {
  InterfaceName: { SrcName: string; DstPrefix: string };
  Gateway?: string;
  GatewayIPv6?: string;
  StaticRoutes: never[];
  DisableGatewayService: boolean;
}

const MAC_OPTION = 'com.docker.network.endpoint.macaddress';

export class DockerProtocol {
  /** creates whose answer dockerd may not have got (see retry-memo.ts) */
  readonly retries: RetryMemo;

  constructor(readonly engine: Engine) {
    this.retries = new RetryMemo();
    this.rememberRecentCreates();
  }

  /**
   * After a restart, the creates of the last seconds are those whose answer a crash may have
   * lost: dockerd's argument-less retry of one of them finds it here.
   */
  private rememberRecentCreates(): void {
    const since = Date.now() - 35_000;
    for (const n of this.engine.books.networks.values()) if (n.createdAt >= since) this.retries.remember('network', n.spec.id, {}, n.createdAt);
    for (const e of this.engine.books.endpoints.values()) {
      if (e.createdAt < since) continue;
      const reply: EndpointReply = {};
      if (e.macChosen === true) reply.MacAddress = e.mac;
      if (e.ipv6Chosen === true && e.ipv6 !== null) reply.AddressIPv6 = e.ipv6;
      this.retries.remember('endpoint', e.id, Object.keys(reply).length > 0 ? { Interface: reply } : {}, e.createdAt);
    }
  }

  async createNetwork(input: CreateNetworkInput): Promise<void> {
    await this.engine.networks.create(parseNetworkSpec(input));
    this.retries.remember('network', input.NetworkID, {});
  }

  deleteNetwork(id: NetworkId): Promise<void> {
    this.retries.forget(id);
    return this.engine.networks.delete(id);
  }

  /** An argument-less CreateNetwork or CreateEndpoint: dockerd's retry of a create (retry-memo.ts). */
  retriedCreate(call: 'network' | 'endpoint'): object {
    const r = this.retries.replay(call);
    if ('reply' in r) return r.reply;
    throw new InvalidRequestError(`request body is empty: this call needs a JSON object${r.ambiguous ? ` (as a retry, it could repeat any of ${r.ambiguous} recent creates)` : ''}`);
  }

  async createEndpoint(req: CreateEndpointRequest): Promise<{ Interface?: EndpointReply }> {
    // dockerd creates an endpoint only on a network it has the answer for.
    this.retries.forget(req.NetworkID);
    const ports = parsePortOptions(req.Options);
    let reply: EndpointReply = {};
    await this.engine.endpoints.create({
      networkId: req.NetworkID,
      endpointId: req.EndpointID,
      addresses: (spec) => {
        const a = resolveEndpointAddresses(spec, req.Interface, req.Options[MAC_OPTION]);
        reply = a.reply;
        return a;
      },
      ...ports,
    });
    const out = Object.keys(reply).length > 0 ? { Interface: reply } : {};
    this.retries.remember('endpoint', req.EndpointID, out);
    return out;
  }

  deleteEndpoint(networkId: NetworkId, endpointId: EndpointId): Promise<void> {
    this.retries.forget(endpointId);
    return this.engine.endpoints.delete(networkId, endpointId);
  }

  async join(networkId: NetworkId, endpointId: EndpointId): Promise<JoinResponse> {
    this.retries.forget(endpointId);
    const { endpoint, network } = await this.engine.endpoints.join(networkId, endpointId);
    const resp: JoinResponse = { InterfaceName: { SrcName: endpoint.peer, DstPrefix: network.spec.ifacePrefix }, StaticRoutes: [], DisableGatewayService: false };
    // Internal networks get no gateway: nothing leaves them (as in Docker 25+).
    if (!network.spec.internal) {
      resp.Gateway = network.spec.gatewayIpv4;
      if (network.spec.gatewayIpv6 !== '') resp.GatewayIPv6 = network.spec.gatewayIpv6;
    }
    return resp;
  }

  leave(networkId: NetworkId, endpointId: EndpointId): Promise<void> {
    this.retries.forget(endpointId);
    return this.engine.endpoints.leave(networkId, endpointId);
  }

  async endpointOperInfo(networkId: NetworkId, endpointId: EndpointId): Promise<{ Value: Record<string, unknown> }> {
    this.retries.forget(endpointId);
    const ep = await this.engine.endpoints.info(networkId, endpointId);
    return {
      Value: {
        [MAC_OPTION]: ep.mac,
        'com.docker.network.endpoint.exposedports': ep.exposed.map((x) => ({ Proto: protoNumber(x.proto), Port: x.port })),
        'com.docker.network.portmap': ep.mappings.map((m) => ({
          Proto: protoNumber(m.proto),
          IP: m.containerIp,
          Port: m.containerPort,
          HostIP: m.hostIp,
          HostPort: m.hostPort,
          HostPortEnd: m.hostPort,
        })),
      },
    };
  }

  programExternalConnectivity(networkId: NetworkId, endpointId: EndpointId, options: Record<string, unknown>): Promise<void> {
    this.retries.forget(endpointId);
    return this.engine.publishing.program(networkId, endpointId, parsePortOptions(options));
  }

  revokeExternalConnectivity(networkId: NetworkId, endpointId: EndpointId): Promise<void> {
    return this.engine.publishing.revoke(networkId, endpointId);
  }

  listBindings(): Binding[] {
    return this.engine.publishing.bindings();
  }
}
