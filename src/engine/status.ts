// What `batchbridge status` shows (asked over the plugin socket, /BatchBridge.Status), and when the
// plugin counts as unhealthy. Plain data: it goes out as JSON. The metrics read the same sources.
import type { FailureKind } from '../batching/work.js';
import type { Engine } from './engine.js';
import type { LastReconcile } from './stats.js';
import type { WatchdogState } from './watchdog.js';

export interface PipelineStatus {
  readonly batches: number;
  readonly operations: number;
  /** operations per batch, over the batches finished so far */
  readonly meanSize: number;
  readonly queued: number;
  readonly running: number;
  readonly failures: Partial<Record<FailureKind, number>>;
}

export interface EngineStatus {
  readonly counts: { readonly networks: number; readonly endpoints: number; readonly publishedPorts: number };
  /** endpoint requests being handled right now */
  readonly inFlight: number;
  readonly pipelines: Readonly<Record<string, PipelineStatus>>;
  /** book changes kept in memory because the books could not be written (a full disk) */
  readonly unsavedBookChanges: number;
  readonly reconcile: {
    readonly runs: { readonly ok: number; readonly failed: number; readonly dry_run: number };
    /** findings repaired since start, by kind */
    readonly repairs: Readonly<Record<string, number>>;
    readonly last: LastReconcile | null;
  };
  readonly watchdog: WatchdogState | null;
  readonly toolSessionRestarts: { readonly ip: number; readonly iptablesRestore: number };
  readonly shuttingDown: boolean;
}

export interface PluginStatus extends EngineStatus {
  readonly version: string;
  readonly pid: number;
  readonly startedAt: string;
  readonly uptimeSeconds: number;
  /** effective settings, by flag name */
  readonly settings: Readonly<Record<string, string>>;
  readonly healthy: boolean;
  /** why it is not healthy (empty when healthy) */
  readonly problems: readonly string[];
}

export function publishedPorts(engine: Engine): number {
  let n = 0;
  for (const e of engine.books.endpoints.values()) n += e.mappings.length;
  return n;
}

export function engineStatus(engine: Engine): EngineStatus {
  const pipelines: Record<string, PipelineStatus> = {};
  for (const b of engine.core.pipelines.all) {
    pipelines[b.label] = {
      batches: b.finished,
      operations: b.operations,
      meanSize: b.finished === 0 ? 0 : Math.round((b.operations / b.finished) * 100) / 100,
      queued: b.queued,
      running: b.running,
      failures: Object.fromEntries(b.failures),
    };
  }
  const s = engine.stats;
  return {
    counts: { networks: engine.books.networks.size, endpoints: engine.books.endpoints.size, publishedPorts: publishedPorts(engine) },
    inFlight: engine.core.pipelines.activeOps,
    pipelines,
    unsavedBookChanges: engine.unsavedBookChanges,
    reconcile: { runs: { ...s.reconciliations }, repairs: Object.fromEntries(s.repairs), last: s.lastReconcile },
    watchdog: engine.firewallWatchdog?.state() ?? null,
    toolSessionRestarts: { ...s.toolRestarts },
    shuttingDown: engine.core.closing,
  };
}

/**
 * Why the plugin is unhealthy; empty when it is healthy. Unhealthy means something an operator
 * has to look at: book changes that cannot be written (the disk is full: a crash now would lose
 * them), a last reconciliation that failed or could not fix something, a firewall watchdog
 * whose last restore failed or whose last check could not read the rules.
 */
export function healthProblems(s: EngineStatus): string[] {
  const out: string[] = [];
  if (s.unsavedBookChanges > 0) out.push(`${s.unsavedBookChanges} book change(s) not written: the books cannot be written (disk full?)`);
  const last = s.reconcile.last;
  if (last !== null && !last.ok) out.push(last.error !== null ? `the last reconciliation (${last.at}) failed: ${last.error}` : `the last reconciliation (${last.at}) could not fix ${last.repairs.error ?? 0} thing(s)`);
  const w = s.watchdog;
  if (w?.lastRestoreFailed === true) out.push(`the firewall watchdog's last restore failed: ${w.lastError ?? 'unknown error'}`);
  if (w?.lastCheckFailed === true) out.push(`the firewall watchdog's last check failed: ${w.lastError ?? 'unknown error'}`);
  if (s.shuttingDown) out.push('shutting down');
  return out;
}

export interface PluginInfo {
  readonly version: string;
  readonly settings: Readonly<Record<string, string>>;
}

export function pluginStatus(engine: Engine, info: PluginInfo): PluginStatus {
  const s = engineStatus(engine);
  const problems = healthProblems(s);
  const startedAt = engine.stats.startedAt;
  return {
    version: info.version,
    pid: process.pid,
    startedAt: new Date(startedAt).toISOString(),
    uptimeSeconds: Math.round((Date.now() - startedAt) / 1000),
    settings: info.settings,
    healthy: problems.length === 0,
    problems,
    ...s,
  };
}
