// The last clean stop with no network left removes every rule and chain batchbridge owns (both
// families): `docker plugin disable` + `docker plugin rm` run no code of ours afterwards, and the
// fixed skeleton syncFirewall installs (hooks, BB-* chains, the 128 DNAT buckets: ~400 lines per
// family) would otherwise stay on the host for good. With networks left everything stays: their
// containers keep their traffic while the plugin is away, and the next start picks them up.
import type { IpTable, RuleLine } from '../batching/ops.js';
import { baseChains, HOOKS, renderRestorePayload, saveTables } from '../batching/plan-firewall.js';
import type { KernelExecutor } from '../workers/pool.js';
import type { ToolPaths } from '../workers/spawn.js';
import type { Books } from './books.js';

/** Our chains, by table, as syncFirewall declares them. */
function ourChains(): Map<IpTable, string[]> {
  const out = new Map<IpTable, string[]>();
  for (const l of baseChains()) {
    if (!l.line.startsWith(':')) continue;
    const name = l.line.slice(1, l.line.indexOf(' '));
    out.set(l.table, [...(out.get(l.table) ?? []), name]);
  }
  return out;
}

/** Chain names declared per table in `iptables-save` output. */
function declaredChains(save: string): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  let cur: Set<string> | null = null;
  for (const l of save.split('\n')) {
    if (l.startsWith('*')) out.set(l.slice(1), (cur = new Set()));
    else if (cur !== null && l.startsWith(':')) cur.add(l.slice(1, l.indexOf(' ')));
  }
  return out;
}

/**
 * The lines that remove our hooks and chains from one family, given its `iptables-save` output;
 * 'in-use' when one of our chains still holds a rule tagged with a network or endpoint (another
 * instance in this namespace still uses them, or books and kernel disagree: then nothing is
 * removed). Declaring a chain in a restore payload flushes it, so every jump between our chains
 * is gone before the `-X` lines delete them.
 */
export function planTeardown(save: string): RuleLine[] | 'in-use' {
  const rules = saveTables(save);
  const declared = declaredChains(save);
  const chains = ourChains();
  for (const [table, names] of chains) {
    const mine = new Set(names);
    const tagged = (rules.get(table) ?? []).some((l) => mine.has(l.split(' ')[1] ?? '') && /--comment "?bb:(net|ep)=/.test(l));
    if (tagged) return 'in-use';
  }
  const out: RuleLine[] = [];
  for (const hook of Object.values(HOOKS)) {
    const n = (rules.get(hook.table) ?? []).filter((l) => l === `-A ${hook.spec}`).length;
    for (let i = 0; i < n; i++) out.push({ table: hook.table, line: `-D ${hook.spec}` });
  }
  for (const [table, names] of chains) {
    const present = names.filter((c) => declared.get(table)?.has(c) === true);
    for (const c of present) out.push({ table, line: `:${c} - [0:0]` });
    for (const c of present) out.push({ table, line: `-X ${c}` });
  }
  return out;
}

export type TeardownOutcome = 'removed' | 'kept: networks left' | 'kept: tagged rules left' | 'nothing to remove';

export interface TeardownDeps {
  readonly exec: KernelExecutor;
  readonly tools: ToolPaths;
  readonly books: Books;
  /** The driver's gate: taken exclusively, so no firewall resync runs beside the removal. */
  readonly gate: { acquireExclusive(): Promise<() => void> };
}

/** Removes our firewall skeleton when no network is booked; see the file comment. */
export async function removeFirewallIfUnused(d: TeardownDeps): Promise<TeardownOutcome> {
  const release = await d.gate.acquireExclusive();
  try {
    if (d.books.networks.size > 0) return 'kept: networks left';
    const payloads: Array<{ family: 4 | 6; text: string }> = [];
    for (const family of [4, 6] as const) {
      const save = await d.exec.exec(family === 4 ? d.tools.iptablesSave : d.tools.ip6tablesSave, []);
      if (save.exitCode !== 0) throw new Error(`cannot read the IPv${family} firewall: ${save.stderr.trim() || save.spawnError || 'failed'}`);
      const plan = planTeardown(save.stdout);
      // Decide for both families before touching either: all or nothing.
      if (plan === 'in-use') return 'kept: tagged rules left';
      if (plan.length > 0) payloads.push({ family, text: renderRestorePayload([{ owner: 0, lines: plan }]).text });
    }
    if (payloads.length === 0) return 'nothing to remove';
    for (const p of payloads) {
      const r = await d.exec.exec(p.family === 4 ? d.tools.iptablesRestore : d.tools.ip6tablesRestore, ['--noflush', '-w'], p.text);
      if (r.exitCode !== 0) throw new Error(`cannot remove batchbridge's IPv${p.family} rules: ${r.stderr.trim() || r.spawnError || 'failed'}`);
    }
    return 'removed';
  } finally {
    release();
  }
}
