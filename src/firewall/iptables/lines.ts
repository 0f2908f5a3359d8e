// iptables-restore lines: turning rule specs into "-A"/"-I"/"-D" lines (the one place a rule is
// inverted), reading iptables-save output by table, and rendering a payload with line owners.
import type { IpTable, RuleLine } from '../types.js';
import type { RuleSpec } from './rules.js';

/** "-A spec", or "-I CHAIN 1 rest" for rules that must sit above a chain's fixed rules. */
export function addLine(r: RuleSpec): RuleLine {
  if (r.insert !== true) return { table: r.table, line: `-A ${r.line}` };
  const sp = r.line.indexOf(' ');
  return { table: r.table, line: `-I ${r.line.slice(0, sp)} 1${r.line.slice(sp)}` };
}

/** The deletion that undoes an addition ("-A X r" / "-I X n r" → "-D X r"); null for other lines. */
export function invertLine(l: RuleLine): RuleLine | null {
  const a = /^-A (\S+) (.*)$/.exec(l.line) ?? /^-I (\S+) \d+ (.*)$/.exec(l.line);
  return a === null ? null : { table: l.table, line: `-D ${a[1] ?? ''} ${a[2] ?? ''}` };
}

/** The deletions that undo applied additions, last first. */
export function invertLines(lines: readonly RuleLine[]): RuleLine[] {
  return lines.flatMap((l) => invertLine(l) ?? []).reverse();
}

/** Splits `iptables-save` output into tables: table name → its "-A …" lines. */
export function saveTables(save: string): Map<string, string[]> {
  const tables = new Map<string, string[]>();
  let cur: string[] | null = null;
  for (const l of save.split('\n')) {
    if (l.startsWith('*')) tables.set(l.slice(1), (cur = []));
    else if (cur !== null && l.startsWith('-A ')) cur.push(l);
  }
  return tables;
}

export interface Owned {
  readonly owner: number;
  readonly lines: readonly RuleLine[];
}

const TABLE_ORDER: readonly IpTable[] = ['raw', 'mangle', 'nat', 'filter'];

/**
 * Renders an iptables-restore payload: one block per table, lines in the given order within a
 * table, plus owners[n - 1] = the owner of payload line n (null for *table and COMMIT lines).
 */
export function renderRestorePayload(items: readonly Owned[]): { text: string; owners: Array<number | null> } {
  const byTable = new Map<IpTable, Array<[number, string]>>();
  for (const item of items) {
    for (const l of item.lines) {
      let list = byTable.get(l.table);
      if (list === undefined) byTable.set(l.table, (list = []));
      list.push([item.owner, l.line]);
    }
  }
  const text: string[] = [];
  const owners: Array<number | null> = [];
  for (const table of TABLE_ORDER) {
    const list = byTable.get(table);
    if (list === undefined || list.length === 0) continue;
    text.push(`*${table}`);
    owners.push(null);
    // Chain declarations must precede the rules that use them.
    const decl = list.filter(([, l]) => l.startsWith(':'));
    const rest = list.filter(([, l]) => !l.startsWith(':'));
    for (const [owner, line] of [...decl, ...rest]) {
      text.push(line);
      owners.push(owner);
    }
    text.push('COMMIT');
    owners.push(null);
  }
  return { text: text.length ? `${text.join('\n')}\n` : '', owners };
}
