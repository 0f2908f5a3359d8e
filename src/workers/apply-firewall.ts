// Applies the firewall changes of many operations as one `iptables-restore --noflush`
// transaction per address family. iptables-restore is all-or-nothing per table block, so when the
// transaction fails we find the operation to blame (from the reported line, else by bisection),
// fail only that one, and apply the rest again.
import type { FirewallChange, RuleLine } from '../batching/ops.js';
import { renderRestorePayload } from '../batching/plan-firewall.js';
import { restoreSessionFor } from './restore-session.js';
import { runTool, type ToolPaths, type ToolResult } from './spawn.js';

export interface FwWork {
  readonly opId: number;
  readonly change: FirewallChange;
}

export interface FwApplyOutcome {
  readonly failed: Map<number, string>;
  readonly spawns: number;
}

const LINE_RE = /line:? (\d+)/i;

export async function applyFirewallWork(works: readonly FwWork[], tools: ToolPaths): Promise<FwApplyOutcome> {
  const failed = new Map<number, string>();
  let spawns = 0;
  const appliedV4 = new Map<number, readonly RuleLine[]>();
  for (const family of [4, 6] as const) {
    const exe = family === 4 ? tools.iptablesRestore : tools.ip6tablesRestore;
    const items = works
      .map((w) => ({ opId: w.opId, tolerant: w.change.tolerant, lines: family === 4 ? w.change.v4 : w.change.v6 }))
      .filter((w) => w.lines.length > 0 && !failed.has(w.opId));
    if (items.length === 0) continue;
    spawns += await applyFamily(exe, items, failed);
    if (family === 4) for (const i of items) if (!i.tolerant && !failed.has(i.opId)) appliedV4.set(i.opId, i.lines);
  }
  // An operation whose IPv6 half failed must not keep its IPv4 half: take those lines back, so
  // a failed request leaves nothing installed.
  for (const [opId, lines] of appliedV4) {
    if (!failed.has(opId)) continue;
    const undo = invertLines(lines);
    if (undo.length > 0) spawns += await applyTolerantly(tools.iptablesRestore, { opId, tolerant: true, lines: undo }, new Map());
  }
  return { failed, spawns };
}

/** The deletions that undo additions ("-A X r" / "-I X n r" → "-D X r"), last first. */
export function invertLines(lines: readonly RuleLine[]): RuleLine[] {
  const out: RuleLine[] = [];
  for (const l of lines) {
    const a = /^-A (\S+) (.*)$/.exec(l.line);
    const i = /^-I (\S+) \d+ (.*)$/.exec(l.line);
    const m = a ?? i;
    if (m !== null) out.push({ table: l.table, line: `-D ${m[1] ?? ''} ${m[2] ?? ''}` });
  }
  return out.reverse();
}

interface Item {
  readonly opId: number;
  readonly tolerant: boolean;
  readonly lines: readonly RuleLine[];
}

async function runRestore(exe: string, items: readonly Item[]): Promise<{ ok: boolean; message: string; blame: number | null }> {
  const { text, owners } = renderRestorePayload(items.map((i) => ({ owner: i.opId, lines: i.lines })));
  const r = await restore(exe, text);
  if (r.spawnError !== null) return { ok: false, message: `${exe}: ${r.spawnError}`, blame: null };
  if (r.exitCode === 0) return { ok: true, message: '', blame: null };
  const message = r.stderr.split('\n').filter((l) => l && !l.startsWith('Try `')).join('; ') || `${exe} exited ${r.exitCode}`;
  const m = LINE_RE.exec(r.stderr);
  const owner = m ? owners[Number(m[1]) - 1] : undefined;
  return { ok: false, message, blame: owner ?? null };
}

/** In this thread's session for `exe` when it is free, else in a process of its own. */
async function restore(exe: string, text: string): Promise<ToolResult> {
  const session = await restoreSessionFor(exe);
  if (session !== null && session.idle) return session.run(text);
  return runTool(exe, ['--noflush', '-w'], text);
}

async function applyFamily(exe: string, items: readonly Item[], failed: Map<number, string>): Promise<number> {
  let spawns = 0;
  let pending = [...items];
  // Each round either succeeds or removes at least one operation (or line), so this ends.
  while (pending.length > 0) {
    spawns++;
    const res = await runRestore(exe, pending);
    if (res.ok) return spawns;
    if (res.blame !== null) {
      const blamed = pending.find((p) => p.opId === res.blame);
      if (blamed !== undefined) {
        pending = pending.filter((p) => p !== blamed);
        if (blamed.tolerant) spawns += await applyTolerantly(exe, blamed, failed);
        else failed.set(blamed.opId, res.message);
        continue;
      }
    }
    // No usable line number (nft reports some errors at COMMIT): bisect.
    spawns += await bisect(exe, pending, failed);
    return spawns;
  }
  return spawns;
}

async function bisect(exe: string, items: readonly Item[], failed: Map<number, string>): Promise<number> {
  if (items.length === 1) {
    const only = items[0] as Item;
    if (only.tolerant) return applyTolerantly(exe, only, failed);
    const res = await runRestore(exe, items);
    if (!res.ok) failed.set(only.opId, res.message);
    return 1;
  }
  const mid = Math.ceil(items.length / 2);
  let spawns = 0;
  for (const half of [items.slice(0, mid), items.slice(mid)]) {
    spawns++;
    const res = await runRestore(exe, half);
    if (!res.ok) spawns += await bisect(exe, half, failed);
  }
  return spawns;
}

/** Removals that may already be gone: apply line by line, ignoring "no such rule/chain". */
async function applyTolerantly(exe: string, item: Item, failed: Map<number, string>): Promise<number> {
  let spawns = 0;
  for (const line of item.lines) {
    spawns++;
    const res = await runRestore(exe, [{ ...item, lines: [line] }]);
    if (!res.ok && !/does a matching rule exist|No chain\/target\/match|does not exist|No such file|Couldn't load target|Bad rule/i.test(res.message)) {
      if (!/Directory not empty|CHAIN_USER_DEL|Device or resource busy/i.test(res.message)) failed.set(item.opId, res.message);
    }
  }
  return spawns;
}
