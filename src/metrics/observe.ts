// Everything a running plugin offers its operator besides the protocol, started and stopped as
// one: the Prometheus metrics and their listener (with --metrics-listen), the debug line per
// batch, and the answer of /BatchBridge.Status.
import type { Logger } from 'pino';
import { logBatches } from '../engine/batch-log.js';
import type { Engine } from '../engine/engine.js';
import { pluginStatus, type PluginStatus } from '../engine/status.js';
import { startMetricsListener, type MetricsListener } from './listener.js';
import { createMetrics, type Metrics } from './registry.js';
import { NO_REQUEST_METRICS, type FrontEnd, type RequestMetrics } from './requests.js';

export interface ObserveOptions {
  readonly version: string;
  /** effective settings, by flag name (status shows them) */
  readonly settings: Readonly<Record<string, string>>;
  /** null: no metrics */
  readonly metricsListen: { readonly host: string; readonly port: number } | null;
  /** calls of each front end, shown as zero from the start */
  readonly calls: Partial<Record<FrontEnd, readonly string[]>>;
}

export interface Observability {
  readonly requests: RequestMetrics;
  /** http://HOST:PORT/metrics, or null without metrics */
  readonly metricsUrl: string | null;
  status(): PluginStatus;
  close(): Promise<void>;
}

export async function startObservability(engine: Engine, o: ObserveOptions, log: Logger): Promise<Observability> {
  const stopBatchLog = logBatches(log);
  let metrics: Metrics | null = null;
  let listener: MetricsListener | null = null;
  try {
    if (o.metricsListen !== null) {
      metrics = createMetrics(engine, { version: o.version });
      for (const [frontEnd, calls] of Object.entries(o.calls)) metrics.knownCalls(frontEnd as FrontEnd, calls);
      listener = await startMetricsListener(metrics, o.metricsListen, log);
    }
  } catch (err) {
    stopBatchLog();
    metrics?.close();
    throw err;
  }
  return {
    requests: metrics?.requests ?? NO_REQUEST_METRICS,
    metricsUrl: listener?.url ?? null,
    status: () => pluginStatus(engine, { version: o.version, settings: { ...o.settings, ...(listener === null ? {} : { 'metrics-url': listener.url }) } }),
    close: async () => {
      stopBatchLog();
      await listener?.close();
      metrics?.close();
    },
  };
}
