// Applies the firewall changes of many operations as one `iptables-restore --noflush`
// transaction per address family. iptables-restore is all-or-nothing per table block, so when the
// transaction fails we find the operation to blame (from the reported line, else by bisection),
// fail only that one, and apply the rest again.
import type { ToolEnv } from '../../tools/env.js';
import { familyTool } from '../../tools/paths.js';
import type { ToolResult } from '../../tools/spawn.js';
import type { FwApplyOutcome, FwWork, RuleLine } from '../types.js';
import { invertLines, renderRestorePayload } from './lines.js';
import { restoreSessionFor } from './session.js';

const LINE_RE = /line:? (\d+)/i;

export async function applyFirewallWork(works: readonly FwWork[], env: ToolEnv): Promise<FwApplyOutcome> {
  const failed = new Map<number, string>();
  let spawns = 0;
  const appliedV4 = new Map<number, readonly RuleLine[]>();
  const run = (exe: string, text: string): Promise<ToolResult> => restore(exe, text, env);
  for (const family of [4, 6] as const) {
    const exe = familyTool(env.tools, family, 'restore');
    const items = works
      .map((w) => ({ opId: w.opId, tolerant: w.change.tolerant, lines: family === 4 ? w.change.v4 : w.change.v6 }))
      .filter((w) => w.lines.length > 0 && !failed.has(w.opId));
    if (items.length === 0) continue;
    spawns += await applyFamily(exe, items, failed, run);
    if (family === 4) for (const i of items) if (!i.tolerant && !failed.has(i.opId)) appliedV4.set(i.opId, i.lines);
  }
  // An operation whose IPv6 half failed must not keep its IPv4 half: take those lines back, so
  // a failed request leaves nothing installed.
  for (const [opId, lines] of appliedV4) {
    if (!failed.has(opId)) continue;
    const undo = invertLines(lines);
    if (undo.length > 0) spawns += await applyTolerantly(familyTool(env.tools, 4, 'restore'), { opId, tolerant: true, lines: undo }, new Map(), run);
  }
  return { failed, spawns };
}

type Restore = (exe: string, text: string) => Promise<ToolResult>;

interface Item {
  readonly opId: number;
  readonly tolerant: boolean;
  readonly lines: readonly RuleLine[];
}

async function runRestore(exe: string, items: readonly Item[], run: Restore): Promise<{ ok: boolean; message: string; blame: number | null }> {
  const { text, owners } = renderRestorePayload(items.map((i) => ({ owner: i.opId, lines: i.lines })));
  const r = await run(exe, text);
  if (r.spawnError !== null) return { ok: false, message: `${exe}: ${r.spawnError}`, blame: null };
  if (r.exitCode === 0) return { ok: true, message: '', blame: null };
  const message = r.stderr.split('\n').filter((l) => l && !l.startsWith('Try `')).join('; ') || `${exe} exited ${r.exitCode}`;
  const m = LINE_RE.exec(r.stderr);
  const owner = m ? owners[Number(m[1]) - 1] : undefined;
  return { ok: false, message, blame: owner ?? null };
}

/** In this thread's session for `exe` when it is free, else in a process of its own. */
async function restore(exe: string, text: string, env: ToolEnv): Promise<ToolResult> {
  const session = await restoreSessionFor(exe, env);
  if (session !== null && session.idle) return session.run(text);
  return env.run(exe, ['--noflush', '-w'], text);
}

async function applyFamily(exe: string, items: readonly Item[], failed: Map<number, string>, run: Restore): Promise<number> {
  let spawns = 0;
  let pending = [...items];
  // Each round either succeeds or removes at least one operation (or line), so this ends.
  while (pending.length > 0) {
    spawns++;
    const res = await runRestore(exe, pending, run);
    if (res.ok) return spawns;
    if (res.blame !== null) {
      const blamed = pending.find((p) => p.opId === res.blame);
      if (blamed !== undefined) {
        pending = pending.filter((p) => p !== blamed);
        if (blamed.tolerant) spawns += await applyTolerantly(exe, blamed, failed, run);
        else failed.set(blamed.opId, res.message);
        continue;
      }
    }
    // No usable line number (nft reports some errors at COMMIT): bisect.
    spawns += await bisect(exe, pending, failed, run);
    return spawns;
  }
  return spawns;
}

async function bisect(exe: string, items: readonly Item[], failed: Map<number, string>, run: Restore): Promise<number> {
  if (items.length === 1) {
    const only = items[0] as Item;
    if (only.tolerant) return applyTolerantly(exe, only, failed, run);
    const res = await runRestore(exe, items, run);
    if (!res.ok) failed.set(only.opId, res.message);
    return 1;
  }
  const mid = Math.ceil(items.length / 2);
  let spawns = 0;
  for (const half of [items.slice(0, mid), items.slice(mid)]) {
    spawns++;
    const res = await runRestore(exe, half, run);
    if (!res.ok) spawns += await bisect(exe, half, failed, run);
  }
  return spawns;
}

/** Removals that may already be gone: apply line by line, ignoring "no such rule/chain". */
async function applyTolerantly(exe: string, item: Item, failed: Map<number, string>, run: Restore): Promise<number> {
  let spawns = 0;
  for (const line of item.lines) {
    spawns++;
    const res = await runRestore(exe, [{ ...item, lines: [line] }], run);
    if (!res.ok && !/does a matching rule exist|No chain\/target\/match|does not exist|No such file|Couldn't load target|Bad rule/i.test(res.message)) {
      if (!/Directory not empty|CHAIN_USER_DEL|Device or resource busy/i.test(res.message)) failed.set(item.opId, res.message);
    }
  }
  return spawns;
}
