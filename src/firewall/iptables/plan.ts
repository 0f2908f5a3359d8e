// Pure planner: the backend's verbs as changes (network up/down, an endpoint's ports up/down),
// and the whole rule set the books want (for a sync and for counting).
import type { Family, FirewallChange, FirewallState, FwNetwork, RuleLine } from '../types.js';
import { baseChains } from './layout.js';
import { addLine, invertLine } from './lines.js';
import { endpointPortSpecs } from './ports.js';
import { familyApplies, networkRuleSpecs } from './rules.js';

export function planNetworkAdd(n: FwNetwork): FirewallChange {
  return {
    v4: networkRuleSpecs(n, 4).map(addLine),
    v6: familyApplies(n, 6) ? networkRuleSpecs(n, 6).map(addLine) : [],
    tolerant: false,
  };
}

/** The deletions of a change's additions, in the same order (rules that may be gone: tolerant). */
function removalOf(c: FirewallChange): FirewallChange {
  return { v4: c.v4.flatMap((l) => invertLine(l) ?? []), v6: c.v6.flatMap((l) => invertLine(l) ?? []), tolerant: true };
}

export function planNetworkRemove(n: FwNetwork): FirewallChange {
  return removalOf(planNetworkAdd(n));
}

export function planEndpointPortsAdd(endpointId: string, mappings: Parameters<typeof endpointPortSpecs>[1]): FirewallChange {
  const { v4, v6 } = endpointPortSpecs(endpointId, mappings);
  return { v4: v4.map((l) => addLine(l)), v6: v6.map((l) => addLine(l)), tolerant: false };
}

export function planEndpointPortsRemove(endpointId: string, mappings: Parameters<typeof endpointPortSpecs>[1]): FirewallChange {
  return removalOf(planEndpointPortsAdd(endpointId, mappings));
}

export function combineChanges(changes: readonly FirewallChange[], tolerant: boolean): FirewallChange {
  return { v4: changes.flatMap((c) => c.v4), v6: changes.flatMap((c) => c.v6), tolerant };
}

/** Every rule of ours the state wants in one family: the skeleton, networks, published ports. */
export function desiredRules(state: FirewallState, family: Family): RuleLine[] {
  const out: RuleLine[] = [...baseChains()];
  for (const n of state.networks) {
    if (!familyApplies(n, family)) continue;
    for (const r of networkRuleSpecs(n, family)) out.push(addLine(r));
  }
  for (const p of state.ports) {
    if (p.mappings.length === 0) continue;
    const ch = planEndpointPortsAdd(p.endpointId, p.mappings);
    out.push(...(family === 4 ? ch.v4 : ch.v6));
  }
  return out;
}
