// The iptables-restore backend: the verbs of FirewallBackend over the files beside this one.
import type { ToolEnv } from '../../tools/env.js';
import type { CensusDifference, DriftFinding, FirewallBackend, FirewallChange, FirewallState, FwApplyOutcome, FwNetwork, FwPorts, FwWork } from '../types.js';
import { applyFirewallWork } from './apply.js';
import { censusDiff, censusOfSave, censusOfState, driftFindings } from './census.js';
import { epTag } from './layout.js';
import { combineChanges, planEndpointPortsAdd, planEndpointPortsRemove, planNetworkAdd, planNetworkRemove } from './plan.js';
import { readSave, removeFirewall, syncFirewall } from './sync.js';

export class IptablesBackend implements FirewallBackend {
  readonly name = 'iptables';

  constructor(private readonly env: ToolEnv) {}

  networkUp(n: FwNetwork): FirewallChange {
    return planNetworkAdd(n);
  }

  networkDown(n: FwNetwork): FirewallChange {
    return planNetworkRemove(n);
  }

  portsUp(p: FwPorts): FirewallChange {
    return planEndpointPortsAdd(p.endpointId, p.mappings);
  }

  portsDown(p: FwPorts): FirewallChange {
    return planEndpointPortsRemove(p.endpointId, p.mappings);
  }

  combine(changes: readonly FirewallChange[], tolerant: boolean): FirewallChange {
    return combineChanges(changes, tolerant);
  }

  apply(works: readonly FwWork[]): Promise<FwApplyOutcome> {
    return applyFirewallWork(works, this.env);
  }

  sync(state: FirewallState): Promise<void> {
    return syncFirewall(state, this.env);
  }

  async verify(state: FirewallState, changing: () => ReadonlySet<string> | null): Promise<CensusDifference[] | null> {
    const before = changing();
    if (before === null) return null;
    const saves = [await readSave(this.env, 4), await readSave(this.env, 6)];
    const after = changing();
    if (after === null) return null;
    const skipTags = new Set([...before, ...after].map(epTag));
    return ([4, 6] as const).flatMap((family, i) =>
      censusDiff(censusOfSave(saves[i] ?? ''), censusOfState(state, family), (tag) => skipTags.has(tag)).map((d) => ({ ...d, key: `IPv${family} ${d.key}` })),
    );
  }

  async diff(state: FirewallState, dryRun: boolean): Promise<DriftFinding[]> {
    const out: DriftFinding[] = [];
    for (const family of [4, 6] as const) out.push(...driftFindings(await readSave(this.env, family), state, family, dryRun));
    return out;
  }

  remove(dryRun = false): Promise<string[]> {
    return removeFirewall(this.env, dryRun);
  }
}
