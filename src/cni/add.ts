// ADD: the network (made on first use), the address (the daemon's allocator, or the delegated
// IPAM plugin's), the veth with its container end made in CNI_NETNS and set up there, the
// published ports; all in the engine, so concurrent ADDs share its batches. A failure at any
// step undoes the steps before it: a failed ADD leaves no veth, no rule, no address.
import { statSync } from 'node:fs';
import { cidrText, resolveAddresses, type EndpointAddresses } from '../domain/endpoint-spec.js';
import type { AddressRange } from '../domain/address-range.js';
import type { NetworkSpec } from '../domain/network-spec.js';
import type { RequestedBinding } from '../domain/publishing.js';
import type { Engine } from '../engine/engine.js';
import { BbError, CniEnvironmentError, EndpointExistsError } from '../errors.js';
import type { SandboxRoute } from '../ip/ops.js';
import type { EndpointRecord } from '../state/records.js';
import type { CniContext } from './context.js';
import { ensureNetwork } from './cni-network.js';
import type { CniAnswer } from './handler.js';
import type { AddRequest } from './invocation.js';
import { checkIpamResult, delegateAdd, delegateCallOf, delegateDel } from './ipam-delegate.js';
import type { CniNetwork, CniRange } from './net-config.js';
import { refuseOwnNetns } from './netns-check.js';
import { buildAddResult, encodeResult, type CniResult, type CniRoute } from './result.js';

/** The network namespace must be there: ip would stop the whole shared batch on a missing one. */
function requireNetns(netns: string): void {
  try {
    statSync(netns);
  } catch (err) {
    throw new CniEnvironmentError(`CNI_NETNS ${netns} cannot be opened: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

function rangeOf(r: CniRange, spec: NetworkSpec): AddressRange {
  const gateway = r.family === 4 ? spec.ipv4.ip : spec.ipv6?.ip;
  return { subnet: r.subnet, start: r.rangeStart, end: r.rangeEnd, avoid: gateway === undefined ? [] : [gateway] };
}

/** The attachment's addresses: requested, given by the delegated IPAM, or chosen here. */
function chooseAddresses(engine: Engine, req: AddRequest, spec: NetworkSpec, ipam: CniResult | null): EndpointAddresses {
  const net = req.network;
  const pick = (family: 4 | 6, requested: string | null): string | null => {
    if (ipam !== null) return ipam.ips.find((i) => i.address.includes(':') === (family === 6))?.address ?? null;
    const range = net.ipam.ranges.find((r) => r.family === family);
    if (range === undefined) return null;
    if (requested !== null) return `${requested}/${range.subnet.prefix}`;
    try {
      return cidrText(engine.addresses.pick(net.id, rangeOf(range, spec)));
    } catch (err) {
      // The allocator names the network by its engine id; a CNI user knows it by name.
      if (err instanceof BbError) err.message = err.message.split(net.id).join(JSON.stringify(net.name));
      throw err;
    }
  };
  const ipv4 = pick(4, req.options.ipv4) as string; // checkIpamResult / parseNetConfig: always IPv4
  return resolveAddresses(spec, { ipv4, ipv6: pick(6, req.options.ipv6), mac: req.options.mac, names: { ipv4: 'IPv4 address', ipv6: 'IPv6 address' } });
}

/** Routes for the container: each via its own gateway, or the network's gateway of its family. */
function podRoutes(net: CniNetwork, ipam: CniResult | null, addrs: { v6: boolean }): CniRoute[] {
  const out: CniRoute[] = [...net.routes];
  for (const r of ipam?.routes ?? []) if (!out.some((o) => o.dst === r.dst)) out.push({ dst: r.dst, ...(r.gw !== undefined ? { gw: r.gw } : {}) });
  return out.filter((r) => addrs.v6 || !r.dst.includes(':'));
}

function sandboxRoutes(routes: readonly CniRoute[], spec: NetworkSpec): SandboxRoute[] {
  return routes.map((r) => ({ dst: r.dst, via: r.gw ?? (r.dst.includes(':') ? spec.gatewayIpv6 : spec.gatewayIpv4) }));
}

function bindingsOf(req: AddRequest): RequestedBinding[] {
  return req.options.ports.map((p) => ({ proto: p.proto, containerPort: p.containerPort, hostIp: p.hostIp, hostPort: p.hostPort, hostPortEnd: p.hostPort }));
}

function resultOf(req: AddRequest, spec: NetworkSpec, ep: EndpointRecord, routes: readonly CniRoute[], ipam: CniResult | null): CniResult {
  const ips = [{ address: ep.ipv4, gateway: spec.gatewayIpv4 }];
  if (ep.ipv6 !== null) ips.push({ address: ep.ipv6, gateway: spec.gatewayIpv6 });
  return buildAddResult({
    bridge: { name: spec.bridge, mac: spec.bridgeMac },
    hostVeth: { name: ep.host, mac: ep.hostMac ?? '' },
    container: { name: req.ifName, mac: ep.mac, sandbox: req.netns, ...(spec.mtu > 0 ? { mtu: spec.mtu } : {}) },
    ips,
    routes,
    dns: ipam?.dns ?? req.network.dns,
  });
}

/**
 * The engine part of an ADD; the delegated IPAM's address (if any) is already allocated. The
 * veth first (its container end made in the pod), then the setup inside the pod and the port
 * rules side by side: they touch different objects, and each is batched with other ADDs' in its
 * own pipeline. If either fails, the attachment is deleted again (with whatever the other made).
 */
async function attach(ctx: CniContext, req: AddRequest, ipam: CniResult | null): Promise<CniResult> {
  const { engine } = ctx;
  const net = req.network;
  await ensureNetwork(engine, net);
  const spec = net.spec;
  const routes = podRoutes(net, ipam, { v6: spec.enableIpv6 });
  await engine.endpoints.create({
    networkId: net.id,
    endpointId: req.endpointId,
    addresses: (s) => chooseAddresses(engine, req, s, ipam),
    requested: [],
    exposed: [],
    sandbox: { containerId: req.containerId, netns: req.netns, ifName: req.ifName, hairpin: net.hairpinMode },
  });
  const [setUp, ports] = await Promise.allSettled([
    engine.endpoints.setUpSandbox(req.endpointId, sandboxRoutes(routes, spec)),
    req.options.ports.length > 0 ? engine.publishing.program(net.id, req.endpointId, { requested: bindingsOf(req), exposed: [] }) : Promise.resolve(),
  ]);
  const failed = [setUp, ports].find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) {
    await engine.endpoints.delete(net.id, req.endpointId);
    throw failed.reason;
  }
  const ep = engine.endpoints.booked(req.endpointId);
  return resultOf(req, spec, ep, routes, ipam);
}

export async function cniAdd(ctx: CniContext, req: AddRequest): Promise<CniAnswer> {
  refuseOwnNetns(req.netns);
  requireNetns(req.netns);
  if (ctx.engine.books.endpoints.has(req.endpointId)) {
    throw new EndpointExistsError(`container ${req.containerId} already has interface ${req.ifName} on network "${req.network.name}": DEL it first`);
  }
  const delegated = delegateCallOf(req);
  let ipam: CniResult | null = null;
  let stderr = '';
  if (delegated !== null) {
    const r = await delegateAdd(delegated, ctx.runDelegate);
    ipam = r.result;
    stderr = r.stderr;
  }
  try {
    if (ipam !== null && delegated !== null) checkIpamResult(req.network, ipam, delegated.ipamType);
    const result = await attach(ctx, req, ipam);
    return { exitCode: 0, stdout: encodeResult(result, req.cniVersion), stderr };
  } catch (err) {
    // The spec: a failed ADD releases what the IPAM plugin allocated for it.
    if (delegated !== null) {
      await delegateDel(delegated, ctx.runDelegate).catch((e: unknown) => ctx.log.warn({ err: e, containerId: req.containerId }, 'releasing the delegated address after a failed ADD failed'));
    }
    throw err;
  }
}
