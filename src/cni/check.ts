// CHECK: the attachment is still what ADD made and prevResult says. Read from the books and
// the kernel (host end on its bridge, container end's addresses and routes inside CNI_NETNS,
// the rules of its network and published ports); every difference is listed in the error.
import { parseIp } from '../domain/addr.js';
import { toFwNetwork } from '../engine/firewall-state.js';
import { CniCheckFailedError } from '../errors.js';
import { parseIpLinks, parseIpRoutes } from '../ip/read.js';
import { ipInNetns } from '../ip/sandbox.js';
import type { EndpointRecord, NetworkRecord } from '../state/records.js';
import type { CniContext } from './context.js';
import type { CniAnswer } from './handler.js';
import type { CheckRequest } from './invocation.js';
import { delegate, delegateCallOf } from './ipam-delegate.js';
import type { CniRoute } from './result.js';

function addrsOf(ep: EndpointRecord): string[] {
  return ep.ipv6 === null ? [ep.ipv4] : [ep.ipv4, ep.ipv6];
}

/** prevResult against the books. */
function prevResultProblems(req: CheckRequest, ep: EndpointRecord): string[] {
  const out: string[] = [];
  const prev = req.prevResult;
  const iface = prev.interfaces.find((i) => i.name === req.ifName && i.sandbox !== undefined && i.sandbox !== '');
  if (iface === undefined) out.push(`prevResult lists no interface ${req.ifName} with a sandbox`);
  else if (iface.mac !== undefined && iface.mac !== '' && iface.mac.toLowerCase() !== ep.mac) out.push(`prevResult gives ${req.ifName} MAC ${iface.mac}, the attachment has ${ep.mac}`);
  for (const a of addrsOf(ep)) if (!prev.ips.some((i) => i.address === a)) out.push(`prevResult does not list address ${a}, which the attachment holds`);
  for (const i of prev.ips) if (!addrsOf(ep).includes(i.address)) out.push(`prevResult lists address ${i.address}, which is not reserved for this attachment`);
  return out;
}

async function hostEndProblems(ctx: CniContext, ep: EndpointRecord, bridge: string): Promise<string[]> {
  const r = await ctx.tools.run(ctx.tools.tools.ip, ['-j', 'link', 'show', 'dev', ep.host]);
  const link = r.exitCode === 0 ? parseIpLinks(r.stdout)[0] : undefined;
  if (link === undefined) return [`host interface ${ep.host} is missing`];
  const out: string[] = [];
  if (link.master !== bridge) out.push(`host interface ${ep.host} is ${link.master === null ? 'on no bridge' : `on ${link.master}`}, not on ${bridge}`);
  if (!link.up) out.push(`host interface ${ep.host} is down`);
  return out;
}

async function inNetns(ctx: CniContext, netns: string, args: string[]): Promise<string | null> {
  const { file, args: full } = ipInNetns(ctx.tools.tools, netns, args);
  const r = await ctx.tools.run(file, full);
  return r.exitCode === 0 ? r.stdout : null;
}

function routeHolds(have: ReturnType<typeof parseIpRoutes>, want: CniRoute, via: string, ifName: string): boolean {
  const gw = parseIp(via, 'gateway').ip;
  return have.some((h) => h.dst === want.dst && (h.gateway === null ? false : parseIp(h.gateway, 'gateway').ip === gw) && (h.dev === null || h.dev === ifName));
}

async function containerEndProblems(ctx: CniContext, req: CheckRequest, ep: EndpointRecord, net: NetworkRecord): Promise<string[]> {
  const where = `${req.ifName} in ${req.netns}`;
  const links = await inNetns(ctx, req.netns, ['-j', 'addr', 'show', 'dev', req.ifName]);
  const link = links === null ? undefined : parseIpLinks(links)[0];
  if (link === undefined) return [`interface ${where} is missing`];
  const out: string[] = [];
  if (!link.up) out.push(`interface ${where} is down`);
  if (link.mac !== undefined && link.mac !== ep.mac) out.push(`interface ${where} has MAC ${link.mac}, not ${ep.mac}`);
  for (const a of addrsOf(ep)) if (!link.addrs.includes(a)) out.push(`interface ${where} lacks address ${a}`);
  const spec = net.spec;
  for (const family of ep.ipv6 === null ? ([4] as const) : ([4, 6] as const)) {
    const want = req.network.routes.filter((r) => r.dst.includes(':') === (family === 6));
    if (want.length === 0) continue;
    const text = await inNetns(ctx, req.netns, family === 4 ? ['-j', 'route', 'show'] : ['-6', '-j', 'route', 'show']);
    const have = text === null ? [] : parseIpRoutes(text, family);
    for (const r of want) {
      const via = r.gw ?? (family === 4 ? spec.gatewayIpv4 : spec.gatewayIpv6);
      if (!routeHolds(have, r, via, req.ifName)) out.push(`route ${r.dst} via ${via} is missing in ${req.netns}`);
    }
  }
  return out;
}

/** Rules of the network and of this attachment's ports that are missing. */
async function ruleProblems(ctx: CniContext, ep: EndpointRecord, net: NetworkRecord): Promise<string[]> {
  const state = { networks: [toFwNetwork(net.spec)], ports: ep.mappings.length > 0 ? [{ endpointId: ep.id, mappings: ep.mappings }] : [] };
  // Rules of other networks and endpoints count as extra here: only what is missing matters.
  const diffs = await ctx.engine.core.firewall.verify(state, () => new Set());
  if (diffs === null) return [];
  return diffs.filter((d) => d.have < d.want).map((d) => `firewall: ${d.want - d.have} rule(s) missing (${d.key})`);
}

export async function cniCheck(ctx: CniContext, req: CheckRequest): Promise<CniAnswer> {
  const what = `container ${req.containerId} interface ${req.ifName} on network "${req.network.name}"`;
  const ep = ctx.engine.books.endpoints.get(req.endpointId);
  const net = ctx.engine.books.networks.get(req.network.id);
  if (ep === undefined || ep.sandbox === undefined || net === undefined) throw new CniCheckFailedError(`CHECK of ${what}: no such attachment (never added, or deleted)`);
  const problems = prevResultProblems(req, ep);
  if (ep.sandbox.netns !== req.netns) problems.push(`the attachment was made in ${ep.sandbox.netns}, CHECK names ${req.netns}`);
  problems.push(...(await hostEndProblems(ctx, ep, net.spec.bridge)));
  if (ep.sandbox.netns === req.netns) problems.push(...(await containerEndProblems(ctx, req, ep, net)));
  problems.push(...(await ruleProblems(ctx, ep, net)));
  if (problems.length > 0) throw new CniCheckFailedError(`CHECK of ${what} failed: ${problems.join('; ')}`);
  const delegated = delegateCallOf(req);
  if (delegated !== null) await delegate('CHECK', delegated, ctx.runDelegate);
  return { exitCode: 0, stdout: '' };
}
