// Docker's remote network-driver protocol on top of the engine: each call's wire request decoded
// into domain terms, the engine asked, and the reply encoded as dockerd expects it. The fastify
// app (app.ts) only routes URLs here.
import type { Engine } from '../engine/engine.js';
import type { Binding } from '../engine/publishing.js';
import type { EndpointId, NetworkId } from '../domain/names.js';
import { protoNumber } from '../domain/publishing.js';
import { resolveEndpointAddresses, type CreateEndpointInterface, type EndpointReply } from './endpoint-request.js';
import { parseNetworkSpec, type CreateNetworkInput } from './network-options.js';
import { parsePortOptions } from './port-options.js';

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
  constructor(readonly engine: Engine) {}

  createNetwork(input: CreateNetworkInput): Promise<void> {
    return this.engine.networks.create(parseNetworkSpec(input));
  }

  deleteNetwork(id: NetworkId): Promise<void> {
    return this.engine.networks.delete(id);
  }

  async createEndpoint(req: CreateEndpointRequest): Promise<{ Interface?: EndpointReply }> {
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
    return Object.keys(reply).length > 0 ? { Interface: reply } : {};
  }

  deleteEndpoint(networkId: NetworkId, endpointId: EndpointId): Promise<void> {
    return this.engine.endpoints.delete(networkId, endpointId);
  }

  async join(networkId: NetworkId, endpointId: EndpointId): Promise<JoinResponse> {
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
    return this.engine.endpoints.leave(networkId, endpointId);
  }

  async endpointOperInfo(networkId: NetworkId, endpointId: EndpointId): Promise<{ Value: Record<string, unknown> }> {
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
    return this.engine.publishing.program(networkId, endpointId, parsePortOptions(options));
  }

  revokeExternalConnectivity(networkId: NetworkId, endpointId: EndpointId): Promise<void> {
    return this.engine.publishing.revoke(networkId, endpointId);
  }

  listBindings(): Binding[] {
    return this.engine.publishing.bindings();
  }
}
