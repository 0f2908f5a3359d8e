// Metrics and status over a real engine (fake kernel at the tool boundary): requests counted per
// call and outcome, batches per pipeline, state gauges, and /BatchBridge.Status with its health
// verdict. The real Prometheus scrape is test/e2e/prometheus.test.ts.
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { buildApp, DOCKER_CALLS } from '../../src/api/app.js';
import { DockerProtocol } from '../../src/api/protocol.js';
import { formatStatus } from '../../src/cli/status.js';
import { healthProblems, pluginStatus, type PluginStatus } from '../../src/engine/status.js';
import { createMetrics } from '../../src/metrics/registry.js';
import { epReq, netReq, rig, silent } from './driver-rig.js';

const NET = '1'.repeat(64);
const ep = (i: number) => i.toString(16).padStart(64, 'e');

async function setup(t: TestContext) {
  const r = rig(t);
  const metrics = createMetrics(r.engine, { version: '9.9.9' });
  metrics.knownCalls('docker', DOCKER_CALLS);
  t.after(() => metrics.close());
  const app = await buildApp({
    protocol: new DockerProtocol(r.engine),
    logger: silent,
    maxQueue: 1000,
    maxEventLoopDelayMs: 10_000,
    maxHeapUsedBytes: 8 * 1024 ** 3,
    bodyLimit: 1 << 20,
    requests: metrics.requests,
    status: () => pluginStatus(r.engine, { version: '9.9.9', settings: { 'batch-max': '64' } }),
  });
  t.after(() => app.close());
  const call = (name: string, body: unknown) => app.inject({ method: 'POST', url: `/${name}`, payload: JSON.stringify(body) });
  return { ...r, metrics, app, call };
}

/** The value of one series in the exposition text (NaN when absent). */
function sample(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? NaN : Number(line.slice(series.length + 1));
}

test('requests per call and outcome, batches per pipeline, and the books as gauges', async (t) => {
  const { metrics, call } = await setup(t);
  assert.equal((await call('NetworkDriver.CreateNetwork', netReq(NET))).statusCode, 200);
  const creates = await Promise.all([1, 2, 3].map((i) => call('NetworkDriver.CreateEndpoint', epReq(NET, ep(i), `198.18.20.${i + 1}/24`))));
  assert.deepEqual(creates.map((c) => c.statusCode), [200, 200, 200]);
  assert.equal((await call('NetworkDriver.CreateEndpoint', { NetworkID: 'nope' })).statusCode, 400);
  assert.equal((await call('NetworkDriver.Bogus', {})).statusCode, 404);
  const text = await metrics.registry.metrics();
  const req = (c: string, outcome: string) => sample(text, `batchbridge_request_duration_seconds_count{front_end="docker",call="${c}",outcome="${outcome}"}`);
  assert.equal(req('NetworkDriver.CreateEndpoint', 'ok'), 3);
  assert.equal(req('NetworkDriver.CreateEndpoint', 'BB_ERR_INVALID_REQUEST'), 1, 'a refusal counts under its error code');
  assert.equal(req('other', 'BB_ERR_NOT_IMPLEMENTED'), 1, 'unknown calls share one label');
  assert.equal(req('NetworkDriver.Leave', 'ok'), 0, 'known calls show as zero from the start');
  assert.equal(sample(text, 'batchbridge_requests_in_flight{front_end="docker"}'), 0);
  // The network's two steps and the three endpoints went through the veth pipeline.
  assert.equal(sample(text, 'batchbridge_batch_operations_sum{pipeline="veth"}'), 5);
  assert.ok(sample(text, 'batchbridge_batch_operations_count{pipeline="veth"}') >= 3);
  assert.equal(sample(text, 'batchbridge_batch_operations_count{pipeline="delete"}'), 0);
  assert.equal(sample(text, 'batchbridge_networks'), 1);
  assert.equal(sample(text, 'batchbridge_endpoints'), 3);
  assert.equal(sample(text, 'batchbridge_operation_failures_total{pipeline="veth",kind="ip"}'), 0);
  assert.equal(sample(text, 'batchbridge_healthy'), 1);
  assert.equal(sample(text, 'batchbridge_build_info{version="9.9.9",node="' + process.version + '"}'), 1);
  assert.ok(text.includes('process_cpu_user_seconds_total'), 'process metrics');
});

test('a kernel failure is counted by pipeline and kind; reconciliations and repairs are counted', async (t) => {
  const { metrics, call, kernel, engine } = await setup(t);
  assert.equal((await call('NetworkDriver.CreateNetwork', netReq(NET))).statusCode, 200);
  kernel.faults.ipLine = (line) => (line.startsWith('link add name veth') ? 'RTNETLINK answers: Operation not permitted' : null);
  assert.equal((await call('NetworkDriver.CreateEndpoint', epReq(NET, ep(1), '198.18.20.2/24'))).statusCode, 500);
  kernel.faults = {};
  await engine.reconcile({ trigger: 'timer' });
  await engine.reconcile({ dryRun: true });
  const text = await metrics.registry.metrics();
  assert.ok(sample(text, 'batchbridge_operation_failures_total{pipeline="veth",kind="ip"}') >= 1);
  assert.equal(sample(text, 'batchbridge_reconciliations_total{outcome="ok"}'), 1);
  assert.equal(sample(text, 'batchbridge_reconciliations_total{outcome="dry_run"}'), 1);
  assert.ok(sample(text, 'batchbridge_last_reconcile_timestamp_seconds') > Date.now() / 1000 - 60);
});

test('/BatchBridge.Status: counts, pipelines, last reconciliation, health', async (t) => {
  const { call, engine } = await setup(t);
  assert.equal((await call('NetworkDriver.CreateNetwork', netReq(NET))).statusCode, 200);
  assert.equal((await call('NetworkDriver.CreateEndpoint', epReq(NET, ep(1), '198.18.20.2/24'))).statusCode, 200);
  await engine.reconcile({ trigger: 'start' });
  const res = await call('BatchBridge.Status', {});
  assert.equal(res.statusCode, 200);
  const s = (JSON.parse(res.body) as { Status: PluginStatus }).Status;
  assert.equal(s.version, '9.9.9');
  assert.equal(s.healthy, true);
  assert.deepEqual(s.counts, { networks: 1, endpoints: 1, publishedPorts: 0 });
  assert.equal(s.pipelines.veth?.operations, 3);
  assert.equal(s.reconcile.last?.trigger, 'start');
  assert.equal(s.reconcile.last?.ok, true);
  assert.equal(s.settings['batch-max'], '64');
  assert.match(formatStatus(s), /health: healthy\nnetworks 1, endpoints 1, published ports 0;[^\n]*\npipelines:\n  veth +\d+ batch\(es\), mean size /);
});

test('unhealthy: unwritten books, a failed reconciliation, a failing watchdog', () => {
  const base = { counts: { networks: 0, endpoints: 0, publishedPorts: 0 }, inFlight: 0, pipelines: {}, unsavedBookChanges: 0, reconcile: { runs: { ok: 1, failed: 0, dry_run: 0 }, repairs: {}, last: null }, watchdog: null, toolSessionRestarts: { ip: 0, iptablesRestore: 0 }, shuttingDown: false };
  assert.deepEqual(healthProblems(base), []);
  assert.match(healthProblems({ ...base, unsavedBookChanges: 2 })[0] ?? '', /2 book change\(s\) not written/);
  const failed = { at: 'T', trigger: 'timer' as const, ms: 1, ok: false, error: 'cannot list interfaces', repairs: {}, findings: [] };
  assert.match(healthProblems({ ...base, reconcile: { ...base.reconcile, last: failed } })[0] ?? '', /last reconciliation \(T\) failed: cannot list interfaces/);
  const w = { intervalMs: 2000, checks: 3, checkFailures: 0, lastCheckAt: null, lastCheckFailed: false, restores: 1, restoreFailures: 1, lastRestoreAt: null, lastRestoreFailed: true, lastError: 'iptables-restore: line 3 failed' };
  assert.match(healthProblems({ ...base, watchdog: w })[0] ?? '', /watchdog's last restore failed: iptables-restore: line 3 failed/);
});
