// Reconciliation, the part that touches things: read the kernel, plan (plan.ts), apply the ip
// script and sysctls, commit the book changes, then compare our firewall rules with the books
// and rewrite them when they differ. Runs at start (before the sockets listen), on a timer and
// on demand (`batchbridge reconcile`), always under the engine's exclusive gate (or with books
// nobody else holds, as the offline CLI does), so no batch runs beside it.
import type { Logger } from 'pino';
import { KernelError } from '../../errors.js';
import type { FirewallBackend } from '../../firewall/types.js';
import { classifyIpError, parseIpErrors } from '../../ip/errors.js';
import { parseIpLinks } from '../../ip/read.js';
import type { BookChanges, StateStore } from '../../state/store.js';
import type { ToolEnv } from '../../tools/env.js';
import type { Books } from '../books.js';
import { firewallState } from '../firewall-state.js';
import type { PortAllocator } from '../port-allocator.js';
import { planReconcile, type Finding, type KernelSnapshot, type ReconcilePlan, type ReconcileReport } from './plan.js';

export interface ReconcileTarget {
  readonly books: Books;
  readonly store: StateStore;
  readonly tools: ToolEnv;
  readonly firewall: FirewallBackend;
  readonly ports: PortAllocator | null;
  readonly log: Logger | null;
  /** our ownership mark (StateStore.ownerGroup) */
  readonly ownerGroup: number;
  /** a running engine's memory of joined and parked endpoints (plan.ts, ABANDONED_AFTER_MS) */
  readonly parked?: { readonly joined: ReadonlySet<string>; readonly since: Map<string, number> };
}

export interface ReconcileOptions {
  /** report only; change nothing */
  readonly dryRun?: boolean;
  /** what started it (for status and metrics; default `demand`) */
  readonly trigger?: 'start' | 'timer' | 'demand';
}

async function readKernel(t: ReconcileTarget): Promise<KernelSnapshot> {
  const r = await t.tools.run(t.tools.tools.ip, ['-j', '-d', 'addr', 'show']);
  if (r.exitCode !== 0) throw new KernelError(`cannot list interfaces: ${r.stderr.trim() || r.spawnError || 'ip failed'}`);
  return { links: new Map(parseIpLinks(r.stdout).map((l) => [l.name, l])) };
}

/** Runs the plan's ip script and sysctls; returns the failures that are not "already done". */
async function applyKernelFixes(t: ReconcileTarget, plan: ReconcilePlan): Promise<Finding[]> {
  const out: Finding[] = [];
  if (plan.ipLines.length > 0) {
    const r = await t.tools.run(t.tools.tools.ip, ['-force', '-batch', '-'], `${plan.ipLines.join('\n')}\n`);
    if (r.spawnError !== null) throw new KernelError(`ip: ${r.spawnError}`);
    const parsed = parseIpErrors(r.stderr);
    for (const f of parsed.failures) {
      // Already-done outcomes are fine: the kernel moved on between the snapshot and now.
      if (classifyIpError(f.message) !== null) continue;
      out.push({ kind: 'error', subject: plan.ipLines[f.line - 1] ?? `line ${f.line}`, detail: f.message });
    }
    if (parsed.unattributed !== '') out.push({ kind: 'error', subject: 'ip -batch', detail: parsed.unattributed });
  }
  for (const s of plan.sysctls) {
    const err = await t.tools.sysctl(s);
    if (err !== null) out.push({ kind: 'error', subject: s.path, detail: err });
  }
  return out;
}

/** Commits the plan's book changes and mirrors them in memory; true when the books changed. */
function applyBookChanges(t: ReconcileTarget, plan: ReconcilePlan): boolean {
  const changes: BookChanges = {
    putNetworks: plan.putNetworks,
    deleteNetworks: plan.deleteNetworks,
    putEndpoints: plan.putEndpoints,
    deleteEndpoints: plan.deleteEndpoints,
    clearIntents: plan.clearIntents,
  };
  const booksChanged = plan.putNetworks.length + plan.deleteNetworks.length + plan.putEndpoints.length + plan.deleteEndpoints.length > 0;
  if (!booksChanged && plan.clearIntents.length === 0) return false;
  t.store.commit(changes);
  for (const id of plan.deleteEndpoints) {
    t.ports?.release(id);
    t.books.deleteEndpoint(id);
  }
  for (const id of plan.deleteNetworks) t.books.deleteNetwork(id);
  for (const n of plan.putNetworks) t.books.putNetwork(n);
  for (const e of plan.putEndpoints) {
    const old = t.books.endpoints.get(e.id);
    if (old !== undefined && old.mappings.length > 0 && e.mappings.length === 0) t.ports?.release(e.id);
    t.books.putEndpoint(e);
  }
  return booksChanged;
}

/** Our rules against the books as they are now; rewritten when they differ or the books changed. */
async function fixFirewall(t: ReconcileTarget, booksChanged: boolean): Promise<Finding[]> {
  const state = firewallState(t.books);
  let out: Finding[];
  try {
    out = (await t.firewall.diff(state, false)).map((d) => ({ kind: 'firewall-drift' as const, ...d }));
  } catch (err) {
    return [{ kind: 'error', subject: 'firewall', detail: err instanceof Error ? err.message : String(err) }];
  }
  if (out.length > 0 || booksChanged) {
    try {
      await t.firewall.sync(state);
    } catch (err) {
      out.push({ kind: 'error', subject: 'firewall', detail: err instanceof Error ? err.message : String(err) });
    }
  }
  return out;
}

/** Compare and fix (or, with dryRun, only report). */
export async function reconcile(t: ReconcileTarget, opts: ReconcileOptions = {}): Promise<ReconcileReport> {
  const t0 = performance.now();
  const intents = t.store.loadIntents();
  const kernel = await readKernel(t);
  const plan = planReconcile({
    networks: [...t.books.networks.values()],
    endpoints: [...t.books.endpoints.values()],
    intents,
    kernel,
    ownerGroup: t.ownerGroup,
    dryRun: opts.dryRun === true,
    ...(t.parked === undefined ? {} : { joined: t.parked.joined, parkedSince: t.parked.since, now: Date.now() }),
  });
  const findings = [...plan.findings];
  const counts = { networks: t.books.networks.size, endpoints: t.books.endpoints.size, intents: intents.length };
  if (opts.dryRun === true) {
    // Firewall drift as the books stand now (the plan's book changes would add to it).
    try {
      findings.push(...(await t.firewall.diff(firewallState(t.books), true)).map((d) => ({ kind: 'firewall-drift' as const, ...d })));
    } catch {
      // the kernel part of a dry run is best effort
    }
    return { findings, applied: false, ...counts, ms: performance.now() - t0 };
  }
  if (t.parked !== undefined) rememberParked(t.parked.since, plan.parked);
  // Kernel first, books after: a crash here leaves the intents in place for the next run.
  findings.push(...(await applyKernelFixes(t, plan)));
  const booksChanged = applyBookChanges(t, plan);
  findings.push(...(await fixFirewall(t, booksChanged)));
  const report: ReconcileReport = { findings, applied: true, ...counts, ms: performance.now() - t0 };
  if (t.log !== null) logFindings(t.log, findings);
  return report;
}

/** One line per finding, with the network and endpoint it concerns: error for a failed fix, warn otherwise. */
function logFindings(log: Logger, findings: readonly Finding[]): void {
  for (const f of findings) {
    const ids = { ...(f.networkId === undefined ? {} : { networkId: f.networkId }), ...(f.endpointId === undefined ? {} : { endpointId: f.endpointId }) };
    const line = { kind: f.kind, subject: f.subject, ...ids };
    if (f.kind === 'error') log.error(line, `reconcile: fix failed: ${f.detail}`);
    else log.warn(line, `reconcile: ${f.detail}`);
  }
}

/** Endpoints parked now keep their first sighting; the others are forgotten. */
function rememberParked(since: Map<string, number>, parked: readonly string[]): void {
  const now = Date.now();
  const keep = new Set(parked);
  for (const id of [...since.keys()]) if (!keep.has(id)) since.delete(id);
  for (const id of parked) if (!since.has(id)) since.set(id, now);
}

/** One line per finding, for the CLI. */
export function formatReport(r: ReconcileReport): string {
  const head = `books: ${r.networks} network(s), ${r.endpoints} endpoint(s), ${r.intents} unfinished intent(s); ${r.findings.length === 0 ? 'kernel and books agree' : `${r.findings.length} finding(s)${r.applied ? ', fixed' : ' (dry run: nothing changed)'}`} (${Math.round(r.ms)} ms)`;
  return [head, ...r.findings.map((f) => `${f.kind} ${f.subject}: ${f.detail}`)].join('\n') + '\n';
}
