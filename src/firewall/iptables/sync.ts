// Rewriting and removing all of our rules. A sync declares our chains (which flushes them) and
// refills them from the state in one iptables-restore transaction per family, and makes the hook
// rules in the built-in chains present exactly once. Used at start, after a crash, and when the
// watchdog or reconciliation finds our rules changed behind our back.
import { KernelError } from '../../errors.js';
import type { ToolEnv } from '../../tools/env.js';
import { familyTool } from '../../tools/paths.js';
import type { FirewallState, RuleLine } from '../types.js';
import { HOOKS, ourChains } from './layout.js';
import { planHooks, readHookState } from './hooks.js';
import { renderRestorePayload } from './lines.js';
import { desiredRules } from './plan.js';

export async function readSave(env: ToolEnv, family: 4 | 6): Promise<string> {
  const save = await env.run(familyTool(env.tools, family, 'save'), []);
  if (save.exitCode !== 0) throw new KernelError(`cannot read the firewall (IPv${family}): ${save.stderr.trim() || save.spawnError || 'failed'}`);
  return save.stdout;
}

async function restore(env: ToolEnv, family: 4 | 6, lines: readonly RuleLine[], what: string): Promise<void> {
  const { text } = renderRestorePayload([{ owner: 0, lines }]);
  if (text === '') return;
  const r = await env.run(familyTool(env.tools, family, 'restore'), ['--noflush', '-w'], text);
  if (r.exitCode !== 0) throw new KernelError(`cannot ${what} (IPv${family}): ${r.stderr.trim() || r.spawnError || 'failed'}`);
}

export async function syncFirewall(state: FirewallState, env: ToolEnv): Promise<void> {
  for (const family of [4, 6] as const) {
    const save = await readSave(env, family);
    await restore(env, family, [...desiredRules(state, family), ...planHooks(readHookState(save))], "install batchbridge's firewall rules");
  }
}

/**
 * Removes every hook, rule and chain of ours in both families (uninstall, or a clean stop with
 * no network left); returns what it removed. Rules of others are never touched: hooks are
 * deleted as exact rules, and only chains of ours are flushed and deleted.
 */
export async function removeFirewall(env: ToolEnv, dryRun = false): Promise<string[]> {
  const removed: string[] = [];
  for (const family of [4, 6] as const) {
    const save = await readSave(env, family);
    const hooks = readHookState(save);
    const lines: RuleLine[] = [];
    const hookCounts: Array<[keyof typeof HOOKS, number]> = [
      ['forward', hooks.forwardJumps],
      ['prerouting', hooks.preroutingJumps],
      ['output', hooks.outputJumps],
      ['postrouting', hooks.postroutingJumps],
      ['mangle', hooks.mangleJumps],
    ];
    for (const [name, count] of hookCounts) {
      const h = HOOKS[name];
      for (let i = 0; i < count; i++) lines.push({ table: h.table, line: `-D ${h.spec}` });
      if (count > 0) removed.push(`IPv${family} ${h.table} ${h.spec.split(' ')[0] ?? ''} -j ${h.spec.slice(h.spec.lastIndexOf(' ') + 1)} (hook)`);
    }
    // Declaring a chain flushes it (iptables-nft, even under --noflush); then it can be deleted.
    const present = ourChains().filter((c) => save.includes(`\n:${c.chain} `));
    for (const c of present) lines.push({ table: c.table, line: `:${c.chain} - [0:0]` });
    for (const c of present) lines.push({ table: c.table, line: `-X ${c.chain}` });
    if (present.length > 0) removed.push(`IPv${family}: ${present.length} chain(s) of ours with their rules`);
    if (!dryRun) await restore(env, family, lines, "remove batchbridge's firewall rules");
  }
  return removed;
}
