// piscina worker entry. Runs in a worker thread: plans scripts and spawns the tools, so the
// event loop that answers dockerd never builds large scripts or parses large outputs.
// Results are plain data ({ ok, message }); errors never cross the thread boundary as classes.
import type { BatchRequest, BatchResponse, OpResult } from '../batching/ops.js';
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

export async function runBatch(req: BatchRequest, tools: ToolPaths): Promise<BatchResponse> {
  const t0 = performance.now();
  const failed = new Map<number, string>();
  let ipSpawns = 0;
  let fwSpawns = 0;
  let fwMs = 0;

  // Additions of operations with no ip or sysctl work (ProgramExternalConnectivity) depend on
  // nothing else in the batch: they join the first transaction, which saves a second
  // iptables-restore process in most batches.
  const early = (o: (typeof req.ops)[number]): boolean => o.fwAfter !== undefined && o.fwBefore === undefined && (o.ip?.length ?? 0) === 0 && (o.sysctls?.length ?? 0) === 0;
  const before: FwWork[] = req.ops.flatMap((o) => (o.fwBefore ? [{ opId: o.opId, change: o.fwBefore }] : early(o) && o.fwAfter ? [{ opId: o.opId, change: o.fwAfter }] : []));
  if (before.length > 0) {
    const t = performance.now();
    const r = await applyFirewallWork(before, tools);
    fwMs += performance.now() - t;
    fwSpawns += r.spawns;
    for (const [id, m] of r.failed) failed.set(id, m);
  }

  const tIp = performance.now();
  const ipWorks: IpWork[] = req.ops.flatMap((o) => (o.ip && o.ip.length > 0 && !failed.has(o.opId) ? [{ opId: o.opId, ops: o.ip }] : []));
  const ipr = await applyIpWork(ipWorks, req.linkGroup, tools);
  ipSpawns += ipr.spawns;
  for (const [id, m] of ipr.failed) failed.set(id, m);
  const ipMs = performance.now() - tIp;

  for (const o of req.ops) {
    if (failed.has(o.opId) || !o.sysctls) continue;
    for (const s of o.sysctls) {
      const err = await writeSysctl(s);
      if (err !== null) {
        failed.set(o.opId, err);
        break;
      }
    }
  }

  const after: FwWork[] = req.ops.flatMap((o) => (o.fwAfter && !early(o) && !failed.has(o.opId) ? [{ opId: o.opId, change: o.fwAfter }] : []));
  if (after.length > 0) {
    const t = performance.now();
    const r = await applyFirewallWork(after, tools);
    fwMs += performance.now() - t;
    fwSpawns += r.spawns;
    for (const [id, m] of r.failed) failed.set(id, m);
  }

  const flushes = req.ops.flatMap((o) => (o.conntrack && !failed.has(o.opId) ? o.conntrack : []));
  if (flushes.length > 0) await flushConntrack(flushes, tools);

  const results: OpResult[] = req.ops.map((o) => {
    const m = failed.get(o.opId);
    return m === undefined ? { opId: o.opId, ok: true } : { opId: o.opId, ok: false, message: m };
  });
  return { batchId: req.batchId, results, timings: { ipMs, fwMs, totalMs: performance.now() - t0, ipSpawns, fwSpawns } };
}
