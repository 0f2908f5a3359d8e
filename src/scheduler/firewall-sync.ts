// Rebuilds every rule batchbridge owns from the books in one iptables-restore transaction per
// family: our chains are declared (which flushes them) and refilled, and the hook rules in the
// built-in chains are made present exactly once. Used at start, after a restart or crash, and
// when the watchdog finds our rules gone (someone ran `iptables -F` or reloaded a firewall).
import type { RuleLine } from '../batching/ops.js';
import { baseChains, networkRuleSpecs, planHooks, readHookState, renderRestorePayload, CHAINS } from '../batching/plan-firewall.js';
import { planEndpointPortsAdd } from '../batching/plan-ports.js';
import { KernelError } from '../errors.js';
import type { KernelExecutor } from '../workers/pool.js';
import type { ToolPaths } from '../workers/spawn.js';
import type { Books } from './books.js';
import { toFwNetwork } from './driver.js';

export function desiredRules(books: Books, family: 4 | 6): RuleLine[] {
  const out: RuleLine[] = [...baseChains()];
  for (const n of books.networks.values()) {
    if (family === 6 && !n.spec.enableIpv6) continue;
    for (const r of networkRuleSpecs(toFwNetwork(n.spec), family)) out.push({ table: r.table, line: `-A ${r.line}` });
  }
  for (const e of books.endpoints.values()) {
    const net = books.networks.get(e.networkId);
    if (net === undefined || e.mappings.length === 0) continue;
    const ch = planEndpointPortsAdd(e.id, net.spec, e.mappings);
    out.push(...(family === 4 ? ch.v4 : ch.v6));
  }
  return out;
}

export async function syncFirewall(exec: KernelExecutor, tools: ToolPaths, books: Books): Promise<void> {
  for (const family of [4, 6] as const) {
    const save = await exec.exec(family === 4 ? tools.iptablesSave : tools.ip6tablesSave, []);
    if (save.exitCode !== 0) throw new KernelError(`cannot read the firewall: ${save.stderr.trim() || save.spawnError || 'failed'}`);
    const lines = [...desiredRules(books, family), ...planHooks(readHookState(save.stdout))];
    const { text } = renderRestorePayload([{ owner: 0, lines }]);
    const r = await exec.exec(family === 4 ? tools.iptablesRestore : tools.ip6tablesRestore, ['--noflush', '-w'], text);
    if (r.exitCode !== 0) throw new KernelError(`cannot install batchbridge's firewall rules (IPv${family}): ${r.stderr.trim() || r.spawnError || 'failed'}`);
  }
}

/** True when our hooks and chains are all still in place (cheap check for the watchdog). */
export async function firewallIntact(exec: KernelExecutor, tools: ToolPaths): Promise<boolean> {
  for (const family of [4, 6] as const) {
    const save = await exec.exec(family === 4 ? tools.iptablesSave : tools.ip6tablesSave, []);
    if (save.exitCode !== 0) return false;
    const text = save.stdout;
    const hooks = readHookState(text);
    if (hooks.forwardJumps !== 1 || hooks.preroutingJumps !== 1 || hooks.outputJumps !== 1 || hooks.postroutingJumps !== 1) return false;
    // BB-FORWARD's fixed first rule gone means our chains were flushed.
    if (!text.includes(`-A ${CHAINS.forward} -j ${CHAINS.isolation1}`)) return false;
  }
  return true;
}
