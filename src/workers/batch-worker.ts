// piscina worker entry. Runs in a worker thread: plans scripts and spawns the tools, so the
// event loop that answers dockerd never builds large scripts or parses large outputs.
// Results are plain data ({ ok, message }); errors never cross the thread boundary as classes.
import { workerData } from 'node:worker_threads';
import { isFirewallOnly, type BatchRequest, type BatchResponse, type FailureKind, type OpResult, type OpWork, type SessionRestarts } from '../batching/work.js';
import { restoreSessionStats } from '../firewall/iptables/session.js';
import { ipSessionStats } from '../ip/session.js';
import type { FirewallChange, FwWork } from '../firewall/types.js';
import { applyIpWork, noteBridgeEpoch } from '../ip/apply.js';
import type { IpWork } from '../ip/plan.js';
import type { ToolResult } from '../tools/spawn.js';
import { flushConntrack } from './conntrack.js';
import { workerEnv, type WorkerConfig, type WorkerEnv } from './env.js';

export type WorkerTask =
  | { readonly type: 'batch'; readonly req: BatchRequest }
  | { readonly type: 'exec'; readonly file: string; readonly args: readonly string[]; readonly input?: string }
  | { readonly type: 'crash' };

export type WorkerReply = BatchResponse | ToolResult;

/** This thread's environment, from what the pool passed when it started the thread. */
let env: WorkerEnv | null = null;
function threadEnv(): WorkerEnv {
  env ??= workerEnv(workerData as WorkerConfig);
  return env;
}

export default async function run(task: WorkerTask): Promise<WorkerReply> {
  switch (task.type) {
    case 'batch':
      return runBatch(task.req, threadEnv());
    case 'exec':
      return threadEnv().tool.run(task.file, task.args, task.input);
    case 'crash':
      // Test hook for worker replacement (fault injection): kill this thread outright.
      process.exit(3);
  }
}

interface Outcome {
  readonly failed: Map<number, string>;
  readonly kinds: Map<number, FailureKind>;
  ipSpawns: number;
  fwSpawns: number;
  ipMs: number;
  fwMs: number;
}

async function applyFw(works: readonly FwWork[], env: WorkerEnv, out: Outcome): Promise<void> {
  if (works.length === 0) return;
  const t = performance.now();
  const r = await env.firewall.apply(works);
  out.fwMs += performance.now() - t;
  out.fwSpawns += r.spawns;
  for (const [id, m] of r.failed) fail(out, id, m, 'firewall');
}

function fail(out: Outcome, opId: number, message: string, kind: FailureKind): void {
  out.failed.set(opId, message);
  out.kinds.set(opId, kind);
}

/** Restarts of this thread's tool sessions since the last answer (see SessionRestarts). */
const reported = { ip: 0, iptablesRestore: 0 };
function sessionRestarts(): SessionRestarts {
  const d = { ip: ipSessionStats.restarts - reported.ip, iptablesRestore: restoreSessionStats.restarts - reported.iptablesRestore };
  reported.ip = ipSessionStats.restarts;
  reported.iptablesRestore = restoreSessionStats.restarts;
  return d;
}

async function flushFor(ops: readonly OpWork[], env: WorkerEnv, failed: ReadonlyMap<number, string>): Promise<void> {
  const flushes = ops.flatMap((o) => (o.conntrack && !failed.has(o.opId) ? o.conntrack : []));
  if (flushes.length > 0) await flushConntrack(flushes, env.tool);
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
export async function runBatch(req: BatchRequest, env: WorkerEnv): Promise<BatchResponse> {
  const t0 = performance.now();
  noteBridgeEpoch(req.bridgeEpoch);
  const out: Outcome = { failed: new Map(), kinds: new Map(), ipSpawns: 0, fwSpawns: 0, ipMs: 0, fwMs: 0 };
  const track1 = req.ops.filter(isFirewallOnly);
  const track2 = req.ops.filter((o) => !isFirewallOnly(o));

  const one = async (): Promise<void> => {
    await applyFw(
      track1.map((o) => ({ opId: o.opId, change: (o.fwBefore ?? o.fwAfter) as FirewallChange })),
      env,
      out,
    );
    await flushFor(track1, env, out.failed);
  };

  const two = async (): Promise<void> => {
    await applyFw(track2.flatMap((o) => (o.fwBefore ? [{ opId: o.opId, change: o.fwBefore }] : [])), env, out);
    const tIp = performance.now();
    const ipWorks: IpWork[] = track2.flatMap((o) => (o.ip && o.ip.length > 0 && !out.failed.has(o.opId) ? [{ opId: o.opId, ops: o.ip }] : []));
    const ipr = await applyIpWork(ipWorks, req.linkGroup, env.tool);
    out.ipSpawns += ipr.spawns;
    for (const [id, m] of ipr.failed) fail(out, id, m, 'ip');
    out.ipMs += performance.now() - tIp;
    for (const o of track2) {
      if (out.failed.has(o.opId) || !o.sysctls) continue;
      for (const sc of o.sysctls) {
        const err = await env.tool.sysctl(sc);
        if (err !== null) {
          fail(out, o.opId, err, 'sysctl');
          break;
        }
      }
    }
    await applyFw(track2.flatMap((o) => (o.fwAfter && !out.failed.has(o.opId) ? [{ opId: o.opId, change: o.fwAfter }] : [])), env, out);
    await flushFor(track2, env, out.failed);
  };

  await Promise.all([one(), two()]);

  const results: OpResult[] = req.ops.map((o) => {
    const m = out.failed.get(o.opId);
    return m === undefined ? { opId: o.opId, ok: true } : { opId: o.opId, ok: false, message: m, kind: out.kinds.get(o.opId) ?? 'ip' };
  });
  const { ipMs, fwMs, ipSpawns, fwSpawns } = out;
  return { batchId: req.batchId, results, timings: { ipMs, fwMs, totalMs: performance.now() - t0, ipSpawns, fwSpawns }, sessionRestarts: sessionRestarts() };
}
