// The Prometheus metrics (prom-client), all of them; docs/operations.md lists each with its labels.
// Requests are measured as they are answered (requests.ts), batches as they finish (the
// batcher's diagnostics channel); everything else is read at scrape time from the same sources
// `batchbridge status` reads (src/engine/status.ts), so the two never disagree. Names follow
// Prometheus's conventions: a batchbridge_ prefix, base units (_seconds), _total on counters.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { batchChannel, type BatchEvent } from '../batching/batcher.js';
import { FAILURE_KINDS } from '../batching/work.js';
import type { Engine } from '../engine/engine.js';
import { engineStatus, healthProblems, publishedPorts } from '../engine/status.js';
import type { FrontEnd, RequestMetrics } from './requests.js';

const REQUEST_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const BATCH_SECONDS_BUCKETS = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5];
const BATCH_SIZE_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096];

export interface Metrics {
  readonly registry: Registry;
  readonly requests: RequestMetrics;
  /** label sets to show as zero from the start, so rates exist before the first request */
  knownCalls(frontEnd: FrontEnd, calls: readonly string[]): void;
  close(): void;
}

export interface MetricsInfo {
  readonly version: string;
}

function requestMetrics(reg: Registry): { requests: RequestMetrics; durations: Histogram<string> } {
  const durations = new Histogram({ name: 'batchbridge_request_duration_seconds', help: 'Time from a request arriving to its answer, per front end, call and outcome (ok or the error code).', labelNames: ['front_end', 'call', 'outcome'], buckets: REQUEST_BUCKETS, registers: [reg] });
  const inFlight = new Gauge({ name: 'batchbridge_requests_in_flight', help: 'Requests received and not yet answered, per front end.', labelNames: ['front_end'], registers: [reg] });
  inFlight.set({ front_end: 'docker' }, 0);
  inFlight.set({ front_end: 'cni' }, 0);
  const requests: RequestMetrics = {
    start: (frontEnd, call) => {
      const t0 = performance.now();
      inFlight.inc({ front_end: frontEnd });
      let done = false;
      return (outcome) => {
        if (done) return;
        done = true;
        inFlight.dec({ front_end: frontEnd });
        durations.observe({ front_end: frontEnd, call, outcome }, (performance.now() - t0) / 1000);
      };
    },
  };
  return { requests, durations };
}

/** Batch sizes and durations, per pipeline, from the batcher's channel; returns the unsubscriber. */
function batchMetrics(reg: Registry, engine: Engine): () => void {
  const size = new Histogram({ name: 'batchbridge_batch_operations', help: 'Operations in one kernel batch, per pipeline (veth, firewall, delete).', labelNames: ['pipeline'], buckets: BATCH_SIZE_BUCKETS, registers: [reg] });
  const seconds = new Histogram({ name: 'batchbridge_batch_duration_seconds', help: 'Time one batch took, from writing its intent to answering its operations, per pipeline.', labelNames: ['pipeline'], buckets: BATCH_SECONDS_BUCKETS, registers: [reg] });
  for (const b of engine.core.pipelines.all) {
    size.zero({ pipeline: b.label });
    seconds.zero({ pipeline: b.label });
  }
  const onBatch = (msg: unknown): void => {
    const ev = msg as BatchEvent;
    size.observe({ pipeline: ev.label }, ev.size);
    seconds.observe({ pipeline: ev.label }, ev.queueMs / 1000);
  };
  batchChannel.subscribe(onBatch);
  return () => batchChannel.unsubscribe(onBatch);
}

/** Gauges read at scrape time. */
function stateGauges(reg: Registry, engine: Engine): void {
  const gauge = (name: string, help: string, read: () => number): void => {
    new Gauge({ name, help, registers: [reg], collect() { this.set(read()); } });
  };
  gauge('batchbridge_networks', 'Networks in the books.', () => engine.books.networks.size);
  gauge('batchbridge_endpoints', 'Endpoints in the books.', () => engine.books.endpoints.size);
  gauge('batchbridge_published_ports', 'Published port bindings (one per protocol, host address and port).', () => publishedPorts(engine));
  gauge('batchbridge_endpoint_operations_in_flight', 'Endpoint operations accepted and not yet finished (the batch gather window opens at 8).', () => engine.core.pipelines.activeOps);
  gauge('batchbridge_books_unsaved_changes', 'Book changes kept in memory because the books could not be written (a full disk).', () => engine.unsavedBookChanges);
  gauge('batchbridge_healthy', '1 when batchbridge status would say healthy, else 0.', () => (healthProblems(engineStatus(engine)).length === 0 ? 1 : 0));
  const perPipeline = (name: string, help: string, read: (b: Engine['core']['pipelines']['veth']) => number): void => {
    new Gauge({ name, help, labelNames: ['pipeline'], registers: [reg], collect() { for (const b of engine.core.pipelines.all) this.set({ pipeline: b.label }, read(b)); } });
  };
  perPipeline('batchbridge_pipeline_queued_operations', 'Operations waiting for a batch, per pipeline.', (b) => b.queued);
  perPipeline('batchbridge_pipeline_running_batches', 'Batches running, per pipeline.', (b) => b.running);
}

/** Counters kept by the engine, read at scrape time. */
function engineCounters(reg: Registry, engine: Engine): void {
  new Counter({
    name: 'batchbridge_operation_failures_total', help: 'Operations that failed, per pipeline and kind (ip, firewall, sysctl, worker, books, internal).', labelNames: ['pipeline', 'kind'], registers: [reg],
    collect() {
      this.reset();
      for (const b of engine.core.pipelines.all) for (const k of FAILURE_KINDS) this.inc({ pipeline: b.label, kind: k }, b.failures.get(k) ?? 0);
    },
  });
  const s = engine.stats;
  new Counter({
    name: 'batchbridge_tool_session_restarts_total', help: 'Long-lived tool processes started again after their first start (after a failure, a death, their line budget or a bridge change), per tool.', labelNames: ['tool'], registers: [reg],
    collect() {
      this.reset();
      this.inc({ tool: 'ip' }, s.toolRestarts.ip);
      this.inc({ tool: 'iptables-restore' }, s.toolRestarts.iptablesRestore);
    },
  });
  new Counter({
    name: 'batchbridge_reconciliations_total', help: 'Reconciliations (kernel against books), per outcome: ok, failed (threw or a fix failed), dry_run.', labelNames: ['outcome'], registers: [reg],
    collect() {
      this.reset();
      for (const [outcome, n] of Object.entries(s.reconciliations)) this.inc({ outcome }, n);
    },
  });
  new Counter({
    name: 'batchbridge_reconcile_repairs_total', help: 'Findings of reconciliations that were acted on, per finding kind (kind error: a fix that failed).', labelNames: ['kind'], registers: [reg],
    collect() {
      this.reset();
      for (const [kind, n] of s.repairs) this.inc({ kind }, n);
    },
  });
  new Gauge({
    name: 'batchbridge_last_reconcile_timestamp_seconds', help: 'When the last reconciliation finished (Unix time; 0 before the first).', registers: [reg],
    collect() { this.set(s.lastReconcile === null ? 0 : Date.parse(s.lastReconcile.at) / 1000); },
  });
}

function watchdogCounters(reg: Registry, engine: Engine): void {
  const counter = (name: string, help: string, read: (w: NonNullable<ReturnType<NonNullable<Engine['firewallWatchdog']>['state']>>) => number): void => {
    new Counter({ name, help, registers: [reg], collect() { this.reset(); const w = engine.firewallWatchdog?.state(); this.inc(w === undefined ? 0 : read(w)); } });
  };
  counter('batchbridge_firewall_checks_total', 'Checks of our firewall rules against the books by the watchdog.', (w) => w.checks);
  counter('batchbridge_firewall_check_failures_total', 'Watchdog checks that could not read or count the rules.', (w) => w.checkFailures);
  counter('batchbridge_firewall_restores_total', 'Times the watchdog rewrote our chains because rules were missing or extra.', (w) => w.restores);
  counter('batchbridge_firewall_restore_failures_total', 'Watchdog rewrites of our chains that failed.', (w) => w.restoreFailures);
}

export function createMetrics(engine: Engine, info: MetricsInfo): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  // Gauges that prom-client names with _total, which Prometheus keeps for counters (promtool
  // check metrics flags them); the per-type gauges beside them (nodejs_active_handles, …) stay.
  for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) registry.removeSingleMetric(name);
  new Gauge({ name: 'batchbridge_build_info', help: 'Always 1; the labels say which batchbridge and Node.js run.', labelNames: ['version', 'node'], registers: [registry] }).set({ version: info.version, node: process.version }, 1);
  const { requests, durations } = requestMetrics(registry);
  const unsubscribe = batchMetrics(registry, engine);
  stateGauges(registry, engine);
  engineCounters(registry, engine);
  watchdogCounters(registry, engine);
  return {
    registry,
    requests,
    knownCalls: (frontEnd, calls) => {
      for (const call of calls) durations.zero({ front_end: frontEnd, call, outcome: 'ok' });
    },
    close: () => {
      unsubscribe();
      registry.clear();
    },
  };
}
