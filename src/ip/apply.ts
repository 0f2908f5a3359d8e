// Runs one planned ip script and turns its stderr into per-operation failures.
import type { ToolEnv } from '../tools/env.js';
import { classifyIpError, parseIpErrors } from './errors.js';
import { renderIpScript } from './lines.js';
import type { IpOp } from './ops.js';
import { attributeIpFailures, planIpBatch, type IpPlan, type IpWork } from './plan.js';
import { canLookUp, canProbeLinks, linkPresent } from './probe.js';
import { parseIpLinks } from './read.js';
import { configureSandboxes } from './sandbox.js';
import { IpSession, ipSessionStats, type VethNames } from './session.js';

/**
 * This thread's ip sessions, per ip binary (tests point tools at wrappers). Two, because a
 * deletion batch is answered before its ip is done (see runScript): the next batch takes the
 * other session instead of starting a process.
 */
const sessions = new Map<string, IpSession[]>();
const SESSIONS_PER_THREAD = 2;

let sessionsEpoch = 0;

/**
 * Ends this thread's ip sessions when a bridge may have been made again since they started
 * (BatchRequest.bridgeEpoch): their cached interface indexes may be stale.
 */
export function noteBridgeEpoch(epoch: number | undefined): void {
  if (epoch === undefined || epoch === sessionsEpoch) return;
  sessionsEpoch = epoch;
  for (const pool of sessions.values()) for (const s of pool) s.end();
}

/** An idle session that takes this script, or null (run it in its own process). */
function idleSession(ip: string, names: VethNames): IpSession | null {
  let pool = sessions.get(ip);
  if (pool === undefined) sessions.set(ip, (pool = []));
  for (const s of pool) if (s.accepts(names)) return s;
  if (pool.length >= SESSIONS_PER_THREAD) return null;
  const s = new IpSession(ip);
  pool.push(s);
  return s.accepts(names) ? s : null;
}

/**
 * Names a batch of veth work mentions and deletes; null if it must run in a process of its own
 * (it touches a bridge, or a container's namespace).
 */
function vethNames(works: readonly IpWork[]): VethNames | null {
  const mentioned: string[] = [];
  const deleted: string[] = [];
  for (const w of works) {
    for (const op of w.ops) {
      // ip keeps the namespace of every `netns PATH` it was given open until it exits: a
      // long-lived session would hold pods' namespaces alive. Such scripts run on their own.
      if ((op.kind === 'veth-create' && op.sandbox !== undefined) || op.kind === 'sandbox-setup') return null;
      if (op.kind === 'veth-create') mentioned.push(op.host, op.peer);
      else if (op.kind === 'veth-delete') {
        mentioned.push(op.host);
        deleted.push(op.host);
      } else return null;
    }
  }
  return { mentioned, deleted };
}

const GONE_POLL_MS = 1;

/**
 * Resolves once none of `names` exists any more, checking every millisecond, or with false
 * once `until` settles first. Names found gone stay gone: each check resumes at the first one
 * still present (probe.ts says why the check is sound).
 */
function allGone(names: readonly string[], until: Promise<unknown>): Promise<boolean> {
  return new Promise((resolve) => {
    let i = 0;
    let done = false;
    const check = (): boolean => {
      while (i < names.length && !linkPresent(names[i] as string)) i++;
      return i >= names.length;
    };
    const timer = setInterval(() => {
      if (!done && check()) {
        done = true;
        clearInterval(timer);
        resolve(true);
      }
    }, GONE_POLL_MS);
    void until.finally(() => {
      clearInterval(timer);
      if (!done) {
        done = true;
        resolve(false);
      }
    });
  });
}

function touchesBridge(works: readonly IpWork[]): boolean {
  return works.some((w) => w.ops.some((op) => op.kind !== 'veth-create' && op.kind !== 'veth-delete' && op.kind !== 'sandbox-setup'));
}

interface ScriptRun {
  readonly failures: ReturnType<typeof parseIpErrors>['failures'];
  readonly unattributed: string;
  /** ip stopped before the end of the script (or never started) */
  readonly stoppedEarly: boolean;
  readonly spawnError: string | null;
}

/**
 * Runs a planned script: in one of the thread's ip sessions when it only touches veths, else
 * alone.
 *
 * A script that only deletes veths is done, as far as anyone can observe, before ip says so.
 * The kernel unregisters the veths under the rtnl lock: after that they are unlisted and their
 * names are free. Then it releases the lock and waits for an RCU barrier and for the last
 * references to go, before it acknowledges: ~15–20 ms more, whatever the batch size (measured
 * with `ip monitor`: the deletion event arrived ~2 ms after the request, the answer ~20 ms
 * after). So once every veth the script deletes is gone, we answer and let ip finish in the
 * background. A veth that was already gone (dockerd deleted the container's end first) counts
 * as gone, as it does when ip reports "Cannot find device".
 */
async function runScript(works: readonly IpWork[], text: string, lines: number, env: ToolEnv): Promise<ScriptRun> {
  const names = vethNames(works);
  const session = !env.switches.ipSessions || names === null ? null : idleSession(env.tools.ip, names);
  if (session !== null && names !== null) {
    const full = session.run(text, lines, names);
    const deletesOnly = names.deleted.length > 0 && names.deleted.length === names.mentioned.length && names.deleted.every(canLookUp);
    if (env.switches.earlyDelete && deletesOnly && canProbeLinks() && (await allGone(names.deleted, full))) {
      ipSessionStats.answeredBeforeIp++;
      return { failures: [], unattributed: '', stoppedEarly: false, spawnError: null };
    }
    const r = await full;
    return { failures: r.failures, unattributed: r.unattributed, stoppedEarly: r.died || r.unattributed !== '', spawnError: null };
  }
  // A bridge changes: the sessions' cached interface indexes may go stale (see session.ts).
  if (names === null && touchesBridge(works)) for (const s of sessions.get(env.tools.ip) ?? []) s.end();
  const r = await env.run(env.tools.ip, ['-force', '-batch', '-'], text);
  const parsed = parseIpErrors(r.stderr);
  return {
    failures: parsed.failures,
    unattributed: parsed.unattributed,
    stoppedEarly: parsed.unattributed !== '' || (r.exitCode !== 0 && parsed.failures.length === 0),
    spawnError: r.spawnError,
  };
}

export interface IpApplyOutcome {
  readonly failed: Map<number, string>;
  readonly spawns: number;
}

export async function applyIpWork(works: readonly IpWork[], linkGroup: number, env: ToolEnv): Promise<IpApplyOutcome> {
  const failed = new Map<number, string>();
  if (works.length === 0) return { failed, spawns: 0 };
  const plan = planIpBatch(works, linkGroup);
  // A batch of only in-pod setups has no host-side script.
  const spawns = plan.text === '' ? 0 : await applyScript(works, plan, env, failed);
  return { failed, spawns: spawns + (await configureSandboxes(works, failed, env)) };
}

/** The host-side script and its fallbacks; returns the processes run. */
async function applyScript(works: readonly IpWork[], plan: IpPlan, env: ToolEnv, failed: Map<number, string>): Promise<number> {
  let spawns = 1;
  const r = await runScript(works, plan.text, plan.owners.length, env);
  if (r.spawnError !== null) {
    for (const w of works) failed.set(w.opId, `ip: ${r.spawnError}`);
    return spawns;
  }
  const verdict = attributeIpFailures(plan, r.failures);
  for (const [opId, msg] of verdict.failedOps) failed.set(opId, msg);

  if (r.stoppedEarly) {
    // ip stopped early (a syntax-level error). Which lines ran is unknown: ask the kernel.
    spawns += await verifyAgainstKernel(works, failed, env, r.unattributed || 'ip stopped early');
  } else if (verdict.groupDeleteFailed) {
    // The shared group delete failed: fall back to deleting each veth on its own.
    const members = works.filter((w) => plan.groupMembers.includes(w.opId) && !failed.has(w.opId));
    spawns += await deleteOneByOne(members, failed, env);
  }
  return spawns;
}

/** name → master of every interface in this namespace, or null if ip cannot tell. */
async function linkMasters(env: ToolEnv): Promise<Map<string, string | null> | null> {
  const r = await env.run(env.tools.ip, ['-j', 'link', 'show']);
  if (r.exitCode !== 0) return null;
  try {
    return new Map(parseIpLinks(r.stdout).map((l) => [l.name, l.master]));
  } catch {
    return null;
  }
}

async function verifyAgainstKernel(works: readonly IpWork[], failed: Map<number, string>, env: ToolEnv, why: string): Promise<number> {
  const links = await linkMasters(env);
  let spawns = 1;
  if (links === null) {
    for (const w of works) if (!failed.has(w.opId)) failed.set(w.opId, `ip: ${why}`);
    return spawns;
  }
  const cleanup: IpWork[] = [];
  for (const w of works) {
    if (failed.has(w.opId)) continue;
    const ok = w.ops.every((op) => opHolds(op, links));
    if (!ok) {
      failed.set(w.opId, `ip: ${why}`);
      // A veth created without its master is half-made: remove it.
      for (const op of w.ops) {
        if (op.kind === 'veth-create' && links.has(op.host)) cleanup.push({ opId: w.opId, ops: [{ kind: 'veth-delete', host: op.host }] });
      }
    }
  }
  if (cleanup.length > 0) spawns += await deleteOneByOne(cleanup, new Map(), env);
  return spawns;
}

function opHolds(op: IpOp, links: Map<string, string | null>): boolean {
  switch (op.kind) {
    case 'veth-create':
      // a container end made in a container's namespace is not listed here
      return links.get(op.host) === op.bridge && (op.sandbox !== undefined || links.has(op.peer));
    case 'veth-delete':
      return !links.has(op.host);
    case 'bridge-create':
      return links.has(op.bridge);
    case 'bridge-delete':
      return !links.has(op.bridge);
    case 'bridge-addrs':
    case 'bridge-addrs-remove':
      return links.has(op.bridge) === (op.kind === 'bridge-addrs');
    case 'sandbox-setup':
      return true; // not in the host script; its own process reports its own failures
  }
}

async function deleteOneByOne(works: readonly IpWork[], failed: Map<number, string>, env: ToolEnv): Promise<number> {
  const hosts: Array<[number, string]> = [];
  for (const w of works) for (const op of w.ops) if (op.kind === 'veth-delete') hosts.push([w.opId, op.host]);
  if (hosts.length === 0) return 0;
  const r = await env.run(env.tools.ip, ['-force', '-batch', '-'], renderIpScript(hosts.map(([, h]) => ({ op: 'link-del', dev: h }))));
  for (const f of parseIpErrors(r.stderr).failures) {
    const entry = hosts[f.line - 1];
    if (entry === undefined || classifyIpError(f.message) === 'no-device') continue;
    failed.set(entry[0], f.message);
  }
  return 1;
}
