// Rebuilds every rule batchbridge owns from the books in one iptables-restore transaction per
// family: our chains are declared (which flushes them) and refilled, and the hook rules in the
// built-in chains are made present exactly once. Used at start, after a restart or crash, and
// when the watchdog finds our rules gone (someone ran `iptables -F` or reloaded a firewall).
import type { RuleLine } from '../batching/ops.js';
import { addLine, baseChains, HOOKS, networkRuleSpecs, planHooks, readHookState, renderRestorePayload } from '../batching/plan-firewall.js';
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

const TAG = /--comment "?(bb:(?:net|ep)=[A-Za-z0-9_-]+)"?/;
const HOOK_LINES: ReadonlyMap<string, string> = new Map(Object.values(HOOKS).map((h) => [`-A ${h.spec}`, h.table]));

/** The owner tag of a rule line, or "-" for our chains' fixed rules. */
export function ruleTag(line: string): string {
  return TAG.exec(line)?.[1] ?? '-';
}

/**
 * How many rules of each owner each of our chains holds, and how many copies of each hook rule
 * the built-in chains hold, from `iptables-save` output: "<table> <chain> <tag>" → count.
 */
export function censusOfSave(save: string): Map<string, number> {
  const out = new Map<string, number>();
  let table = '';
  for (const l of save.split('\n')) {
    if (l.startsWith('*')) table = l.slice(1);
    else if (l.startsWith('-A BB-')) bump(out, `${table} ${l.slice(3, l.indexOf(' ', 3))} ${ruleTag(l)}`);
    else if (HOOK_LINES.get(l) === table) bump(out, `${table} hook ${l}`);
  }
  return out;
}

/** The same census as the books want it. Inserted rules ("-I CHAIN 1 …") count like appended ones. */
export function censusOfBooks(books: Books, family: 4 | 6): Map<string, number> {
  const out = new Map<string, number>();
  for (const r of desiredRules(books, family)) {
    if (!r.line.startsWith('-A ') && !r.line.startsWith('-I ')) continue;
    bump(out, `${r.table} ${r.line.slice(3, r.line.indexOf(' ', 3))} ${ruleTag(r.line)}`);
  }
  for (const [line, table] of HOOK_LINES) out.set(`${table} hook ${line}`, 1);
  return out;
}

function bump(m: Map<string, number>, k: string): void {
  m.set(k, (m.get(k) ?? 0) + 1);
}

export interface CensusDifference {
  /** "<table> <chain> <tag>" or "<table> hook <rule>" */
  readonly key: string;
  readonly have: number;
  readonly want: number;
}

/** Census keys that differ, ignoring owners `skip` names (their rules may be changing right now). */
export function censusDiff(have: ReadonlyMap<string, number>, want: ReadonlyMap<string, number>, skip: (tag: string) => boolean = () => false): CensusDifference[] {
  const out: CensusDifference[] = [];
  for (const key of new Set([...have.keys(), ...want.keys()])) {
    if (skip(key.slice(key.lastIndexOf(' ') + 1))) continue;
    const h = have.get(key) ?? 0;
    const w = want.get(key) ?? 0;
    if (h !== w) out.push({ key, have: h, want: w });
  }
  return out;
}

/**
 * The watchdog's check: every rule of ours, counted per chain and owner, against the books — one
 * `iptables-save` per family, whatever the number of bindings, so a partial flush of any of our
 * chains (one DNAT bucket, the masquerade chain) shows, not only a flushed table. `changing` is
 * asked before and after the kernel is read: owners whose rules may be changing meanwhile are
 * left out; null means network-wide work is in progress and nothing can be concluded.
 */
export async function firewallDrift(
  exec: Pick<KernelExecutor, 'exec'>,
  tools: ToolPaths,
  books: Books,
  changing: () => ReadonlySet<string> | null,
): Promise<CensusDifference[] | null> {
  const before = changing();
  if (before === null) return null;
  const saves: string[] = [];
  for (const family of [4, 6] as const) {
    const save = await exec.exec(family === 4 ? tools.iptablesSave : tools.ip6tablesSave, []);
    if (save.exitCode !== 0) throw new KernelError(`cannot read the firewall: ${save.stderr.trim() || save.spawnError || 'failed'}`);
    saves.push(save.stdout);
  }
  const after = changing();
  if (after === null) return null;
  const skip = (tag: string): boolean => before.has(tag) || after.has(tag);
  return ([4, 6] as const).flatMap((family, i) =>
    censusDiff(censusOfSave(saves[i] ?? ''), censusOfBooks(books, family), skip).map((d) => ({ ...d, key: `IPv${family} ${d.key}` })),
  );
}
