// piscina worker entry. Runs in a worker thread: plans scripts and spawns the tools, so the
// event loop that answers dockerd never builds large scripts or parses large outputs.
// Results are plain data ({ ok, message }); errors never cross the thread boundary as classes.
import { isFirewallOnly, type BatchRequest, type BatchResponse, type OpResult, type OpWork } from '../batching/ops.js';
import type { IpWork } from '../batching/plan-ip.js';
import { applyFirewallWork, type FwWork } from './apply-firewall.js';
import { applyIpWork } from './apply-ip.js';
import { runTool, type ToolPaths, type ToolResult } from './spawn.js';
import { flushConntrack } from './conntrack.js';
import { writeSysctl } from './sysctl.js';

export type WorkerTask =
  | { readonly type: 'batch'; readonly req: BatchRequest; readonly tools: ToolPaths }
  | { readonly type: 'exec'; readonly file: string; readonly args: readonly string[]; readonly input?: string }
  | { readonly type: 'crash' };

export type WorkerReply = BatchResponse | ToolResult;

export default async function run(task: WorkerTask): Promise<WorkerReply> {
  switch (task.type) {
    case 'batch':
      return runBatch(task.req, task.tools);
    case 'exec':
      return runTool(task.file, task.args, task.input);
    case 'crash':
      // Test hook for worker replacement (fault injection): kill this thread outright.
      process.exit(3);
  }
}

interface Outcome {
  readonly failed: Map<number, string>;
  ipSpawns: number;
  fwSpawns: number;
  ipMs: number;
  fwMs: number;
}

async function applyFw(works: readonly FwWork[], tools: ToolPaths, out: Outcome): Promise<void> {
  if (works.length === 0) return;
  const t = performance.now();
  const r = await applyFirewallWork(works, tools);
  out.fwMs += performance.now() - t;
  out.fwSpawns += r.spawns;
  for (const [id, m] of r.failed) out.failed.set(id, m);
}

async function flushFor(ops: readonly OpWork[], tools: ToolPaths, failed: ReadonlyMap<number, string>): Promise<void> {
  const flushes = ops.flatMap((o) => (o.conntrack && !failed.has(o.opId) ? o.conntrack : []));
  if (flushes.length > 0) await flushConntrack(flushes, tools);
}

/**
 * Two tracks run side by side. Most of a batch's time is the kernel waiting, not working: a
 * transaction that deletes nft rules and a veth deletion each wait for an RCU grace period
 * (measured here: ~17 ms and ~20 ms, whatever their size). Run one after the other they add up;
 * side by side they overlap.
 *  - track 1: the firewall-only operations, in one iptables-restore per family;
 *  - track 2: everything else, in its order: rule removals, ip script, sysctls, rule additions.
 * The two tracks never touch the same object: one endpoint never has two operations in a batch,
 * and network operations run alone (exclusive gate). Two transactions at once are safe:
 * iptables-nft retries a commit that raced another one.
 */
export async function runBatch(req: BatchRequest, tools: ToolPaths): Promise<BatchResponse> {
  const t0 = performance.now();
  const out: Outcome = { failed: new Map(), ipSpawns: 0, fwSpawns: 0, ipMs: 0, fwMs: 0 };
  const track1 = req.ops.filter(isFirewallOnly);
  const track2 = req.ops.filter((o) => !isFirewallOnly(o));

  const one = async (): Promise<void> => {
    await applyFw(
      track1.map((o) => ({ opId: o.opId, change: (o.fwBefore ?? o.fwAfter) as NonNullable<OpWork['fwBefore']> })),
      tools,
      out,
    );
    await flushFor(track1, tools, out.failed);
  };

  const two = async (): Promise<void> => {
    await applyFw(track2.flatMap((o) => (o.fwBefore ? [{ opId: o.opId, change: o.fwBefore }] : [])), tools, out);
    const tIp = performance.now();
    const ipWorks: IpWork[] = track2.flatMap((o) => (o.ip && o.ip.length > 0 && !out.failed.has(o.opId) ? [{ opId: o.opId, ops: o.ip }] : []));
    const ipr = await applyIpWork(ipWorks, req.linkGroup, tools);
    out.ipSpawns += ipr.spawns;
    for (const [id, m] of ipr.failed) out.failed.set(id, m);
    out.ipMs += performance.now() - tIp;
    for (const o of track2) {
      if (out.failed.has(o.opId) || !o.sysctls) continue;
      for (const sc of o.sysctls) {
        const err = await writeSysctl(sc, tools.sysctlDir);
        if (err !== null) {
          out.failed.set(o.opId, err);
          break;
        }
      }
    }
    await applyFw(track2.flatMap((o) => (o.fwAfter && !out.failed.has(o.opId) ? [{ opId: o.opId, change: o.fwAfter }] : [])), tools, out);
    await flushFor(track2, tools, out.failed);
  };

  await Promise.all([one(), two()]);

  const results: OpResult[] = req.ops.map((o) => {
    const m = out.failed.get(o.opId);
    return m === undefined ? { opId: o.opId, ok: true } : { opId: o.opId, ok: false, message: m };
  });
  const { ipMs, fwMs, ipSpawns, fwSpawns } = out;
  return { batchId: req.batchId, results, timings: { ipMs, fwMs, totalMs: performance.now() - t0, ipSpawns, fwSpawns } };
}
