// Pure planner for published ports: one DNAT rule per installed binding, nothing else per
// endpoint (the per-network rules in plan-firewall.ts accept DNAT-ed flows and do the hairpin
// masquerade), so an endpoint's ports cost one rule each to add and to remove.
import type { FirewallChange, RuleLine } from './ops.js';
import { CHAINS, epTag } from './plan-firewall.js';
import type { PortMapping } from '../state/records.js';

interface NetLike {
  readonly id: string;
  readonly bridge: string;
}

export function dnatRuleSpec(endpointId: string, m: PortMapping): string {
  const any = m.hostIp === '0.0.0.0' || m.hostIp === '::';
  const dst = any ? '' : ` -d ${m.hostIp}/${m.family === 4 ? 32 : 128}`;
  const to = m.family === 4 ? `${m.containerIp}:${m.containerPort}` : `[${m.containerIp}]:${m.containerPort}`;
  return `${CHAINS.dnat}${dst} -p ${m.proto} -m ${m.proto} --dport ${m.hostPort} -m comment --comment ${epTag(endpointId)} -j DNAT --to-destination ${to}`;
}

function lines(endpointId: string, mappings: readonly PortMapping[], verb: '-A' | '-D'): FirewallChange {
  const v4: RuleLine[] = [];
  const v6: RuleLine[] = [];
  for (const m of mappings) (m.family === 4 ? v4 : v6).push({ table: 'nat', line: `${verb} ${dnatRuleSpec(endpointId, m)}` });
  return { v4, v6, tolerant: verb === '-D' };
}

export function planEndpointPortsAdd(endpointId: string, _net: NetLike, mappings: readonly PortMapping[]): FirewallChange {
  return lines(endpointId, mappings, '-A');
}

export function planEndpointPortsRemove(endpointId: string, _net: NetLike, mappings: readonly PortMapping[]): FirewallChange {
  return lines(endpointId, mappings, '-D');
}
