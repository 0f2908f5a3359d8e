// Pure planner for published ports: one DNAT rule per installed binding, in the bucket chain of
// its host port (plan-firewall.ts), plus Docker's CHECKSUM fill for sctp. The per-network rules
// accept DNAT-ed flows and do the hairpin masquerade, so an endpoint's ports cost one rule each
// to add and to remove, and a removal only makes iptables-nft read one small bucket chain.
import type { FirewallChange, RuleLine } from './ops.js';
import { CHAINS, dnatBucketChain, epTag } from './plan-firewall.js';
import { parseIp } from '../domain/addr.js';
import type { PortMapping } from '../state/records.js';

interface NetLike {
  readonly id: string;
  readonly bridge: string;
}

const PROTOS: ReadonlySet<string> = new Set(['tcp', 'udp', 'sctp']);

function port(n: number, what: string): number {
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new Error(`refusing ${what} ${String(n)} in a firewall rule`);
  return n;
}

/** Re-checks a binding (it may come from the books) and renders its parts canonically. */
function checked(m: PortMapping): { proto: PortMapping['proto']; hostIp: string; hostPort: number; containerIp: string; containerPort: number; family: 4 | 6 } {
  if (!PROTOS.has(m.proto)) throw new Error(`refusing protocol ${JSON.stringify(m.proto)} in a firewall rule`);
  if (m.family !== 4 && m.family !== 6) throw new Error('refusing a binding without an address family');
  return {
    proto: m.proto,
    family: m.family,
    hostIp: parseIp(m.hostIp, 'host address', m.family).ip,
    hostPort: port(m.hostPort, 'host port'),
    containerIp: parseIp(m.containerIp, 'container address', m.family).ip,
    containerPort: port(m.containerPort, 'container port'),
  };
}

export function dnatRuleSpec(endpointId: string, mapping: PortMapping): string {
  const m = checked(mapping);
  const any = m.hostIp === '0.0.0.0' || m.hostIp === '::';
  const dst = any ? '' : ` -d ${m.hostIp}/${m.family === 4 ? 32 : 128}`;
  const to = m.family === 4 ? `${m.containerIp}:${m.containerPort}` : `[${m.containerIp}]:${m.containerPort}`;
  return `${dnatBucketChain(m.proto, m.hostPort)}${dst} -p ${m.proto} -m ${m.proto} --dport ${m.hostPort} -m comment --comment ${epTag(endpointId)} -j DNAT --to-destination ${to}`;
}

/** Docker's workaround for sctp checksums of replies leaving the container (mangle table). */
export function sctpChecksumSpec(endpointId: string, mapping: PortMapping): string {
  const m = checked(mapping);
  return `${CHAINS.mangle} -p sctp -m sctp --sport ${m.containerPort} -m comment --comment ${epTag(endpointId)} -j CHECKSUM --checksum-fill`;
}

/** The rule specs ("CHAIN rest") of an endpoint's bindings, per family. */
export function endpointPortSpecs(endpointId: string, mappings: readonly PortMapping[]): { v4: RuleLine[]; v6: RuleLine[] } {
  const v4: RuleLine[] = [];
  const v6: RuleLine[] = [];
  for (const m of mappings) {
    const list = m.family === 4 ? v4 : v6;
    list.push({ table: 'nat', line: dnatRuleSpec(endpointId, m) });
    if (m.proto === 'sctp') list.push({ table: 'mangle', line: sctpChecksumSpec(endpointId, m) });
  }
  return { v4, v6 };
}

function lines(endpointId: string, mappings: readonly PortMapping[], verb: '-A' | '-D'): FirewallChange {
  const { v4, v6 } = endpointPortSpecs(endpointId, mappings);
  const prefix = (l: RuleLine): RuleLine => ({ table: l.table, line: `${verb} ${l.line}` });
  return { v4: v4.map(prefix), v6: v6.map(prefix), tolerant: verb === '-D' };
}

export function planEndpointPortsAdd(endpointId: string, _net: NetLike, mappings: readonly PortMapping[]): FirewallChange {
  return lines(endpointId, mappings, '-A');
}

export function planEndpointPortsRemove(endpointId: string, _net: NetLike, mappings: readonly PortMapping[]): FirewallChange {
  return lines(endpointId, mappings, '-D');
}
