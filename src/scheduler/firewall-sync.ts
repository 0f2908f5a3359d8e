// Rebuilds every rule batchbridge owns from the books in one iptables-restore transaction per
// family: our chains are declared (which flushes them) and refilled, and the hook rules in the
// built-in chains are made present exactly once. Used at start, after a restart or crash, and
// when the watchdog finds our rules gone (someone ran `iptables -F` or reloaded a firewall).
import type { RuleLine } from '../batching/ops.js';
import { addLine, baseChains, HEADS, HOOKS, networkRuleSpecs, planHooks, readHookState, renderRestorePayload } from '../batching/plan-firewall.js';
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
    for (const r of networkRuleSpecs(toFwNetwork(n.spec), family)) out.push(addLine(r));
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

/** `iptables` / `ip6tables` next to the configured iptables-save. */
function listTool(tools: ToolPaths, family: 4 | 6): string {
  const save = family === 4 ? tools.iptablesSave : tools.ip6tablesSave;
  return save.replace(/-save$/, '');
}

/**
 * True when our hooks and the fixed heads of our chains are all in place. Cheap on purpose: it
 * lists only the built-in chains we hook into and the first rule of BB-FORWARD and BB-DNAT
 * (`iptables -S CHAIN` reads one chain; `iptables-save` would read every DNAT rule), about 3 ms
 * per listing whatever the number of bindings. A flush of a table (`iptables -F`, `-t nat -F`,
 * a firewall reload) removes our hooks; a flush of BB-FORWARD or BB-DNAT removes their head.
 */
export async function firewallIntact(exec: KernelExecutor, tools: ToolPaths): Promise<boolean> {
  const checks: Array<Promise<boolean>> = [];
  for (const family of [4, 6] as const) {
    const bin = listTool(tools, family);
    for (const hook of Object.values(HOOKS)) {
      const chain = hook.spec.slice(0, hook.spec.indexOf(' '));
      checks.push(
        exec.exec(bin, ['-w', '-t', hook.table, '-S', chain]).then((r) => r.exitCode === 0 && r.stdout.split('\n').filter((l) => l === `-A ${hook.spec}`).length === 1),
      );
    }
    for (const [table, head] of [['filter', HEADS.forward], ['nat', HEADS.dnat]] as const) {
      const chain = head.split(' ')[1] as string;
      checks.push(exec.exec(bin, ['-w', '-t', table, '-S', chain, '1']).then((r) => r.exitCode === 0 && r.stdout.trim() === head));
    }
  }
  return (await Promise.all(checks)).every(Boolean);
}
