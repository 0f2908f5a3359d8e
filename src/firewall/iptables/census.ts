// Counting our rules: per chain and owner tag, from `iptables-save`, against what the books
// want. The watchdog compares these counts every few seconds (so a flush of any one chain of
// ours shows, not only a flushed table), and reconciliation reports them per owner.
import type { CensusDifference, DriftFinding, Family, FirewallState } from '../types.js';
import { HOOKS, ruleTag } from './layout.js';
import { desiredRules } from './plan.js';
import { readHookState } from './hooks.js';

const HOOK_LINES: ReadonlyMap<string, string> = new Map(Object.values(HOOKS).map((h) => [`-A ${h.spec}`, h.table]));

function bump(m: Map<string, number>, k: string): void {
  m.set(k, (m.get(k) ?? 0) + 1);
}

const chainOf = (line: string): string => line.slice(3, line.indexOf(' ', 3));

/**
 * How many rules of each owner each of our chains holds, and how many copies of each hook rule
 * the built-in chains hold, from `iptables-save` output: "<table> <chain> <tag>" → count.
 */
export function censusOfSave(save: string): Map<string, number> {
  const out = new Map<string, number>();
  let table = '';
  for (const l of save.split('\n')) {
    if (l.startsWith('*')) table = l.slice(1);
    else if (l.startsWith('-A BB-')) bump(out, `${table} ${chainOf(l)} ${ruleTag(l)}`);
    else if (HOOK_LINES.get(l) === table) bump(out, `${table} hook ${l}`);
  }
  return out;
}

/** The same census as the state wants it. Inserted rules ("-I CHAIN 1 …") count like appended ones. */
export function censusOfState(state: FirewallState, family: Family): Map<string, number> {
  const out = new Map<string, number>();
  for (const r of desiredRules(state, family)) {
    if (r.line.startsWith('-A ') || r.line.startsWith('-I ')) bump(out, `${r.table} ${chainOf(r.line)} ${ruleTag(r.line)}`);
  }
  for (const [line, table] of HOOK_LINES) out.set(`${table} hook ${line}`, 1);
  return out;
}

/** Census keys that differ, ignoring owner tags `skip` names (their rules may be changing now). */
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

function countTags(lines: Iterable<string>): Map<string, number> {
  const out = new Map<string, number>();
  for (const l of lines) {
    const tag = ruleTag(l);
    bump(out, tag === '-' ? '(untagged)' : tag);
  }
  return out;
}

/**
 * What reconciliation reports: rules in our chains counted per owner tag against the state, and
 * the hook rules. Empty when they agree and every hook rule is present exactly once.
 */
export function driftFindings(save: string, state: FirewallState, family: Family, dryRun: boolean): DriftFinding[] {
  const have = countTags(save.split('\n').filter((l) => l.startsWith('-A BB-')));
  // Inserted rules (internal networks' drops, "-I CHAIN 1 …") show up as "-A" in iptables-save.
  const want = countTags(desiredRules(state, family).filter((r) => r.line.startsWith('-A ') || r.line.startsWith('-I ')).map((r) => r.line));
  const fix = dryRun ? 'chains would be rewritten from the books' : 'chains rewritten from the books';
  const out: DriftFinding[] = [];
  for (const tag of new Set([...have.keys(), ...want.keys()])) {
    const h = have.get(tag) ?? 0;
    const w = want.get(tag) ?? 0;
    if (h === w) continue;
    const what = w === 0 ? 'no booking explains them' : h < w ? 'some are missing' : 'some are extra';
    out.push({ subject: tag, detail: `IPv${family}: ${h} rule(s) tagged ${tag} in our chains, the books want ${w} (${what}): ${fix}` });
  }
  const hooks = readHookState(save);
  if (hooks.forwardJumps !== 1 || hooks.preroutingJumps !== 1 || hooks.outputJumps !== 1 || hooks.postroutingJumps !== 1) {
    out.push({ subject: 'hooks', detail: `IPv${family}: the jumps into our chains are not each present exactly once: ${dryRun ? 'would be restored' : 'restored'}` });
  }
  return out;
}
