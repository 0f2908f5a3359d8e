// The metrics as an operator's Prometheus sees them: a plugin with --metrics-listen and a real
// Prometheus server (Debian's), both in a throwaway namespace, Prometheus scraping every second
// while 100 endpoints go through CreateEndpoint, Join, Leave and DeleteEndpoint (402 protocol
// calls). Asserted through Prometheus's HTTP API: the batch-size series per pipeline, the request
// rate per call, and that every request was counted; `promtool check metrics` on a scrape
// reports nothing.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { makeTempDir, testScope } from '../helpers/cleanup.js';
import { createNetns } from '../helpers/netns.js';
import { startPlugin, type Plugin } from '../helpers/plugin.js';
import { sleep } from '../helpers/proc.js';
import { startPrometheus, type Prometheus } from '../helpers/prometheus.js';

const TARGET = '127.0.0.1:9477';
const NET = `a${'0'.repeat(62)}1`;
const ENDPOINTS = 100;
const epId = (i: number) => `e${i.toString(16).padStart(63, '0')}`;

async function ok(p: Plugin, method: string, body: unknown): Promise<void> {
  const r = await p.call(method, body);
  assert.equal(r.status, 200, `${method}: ${r.text}`);
}

/** Every endpoint's whole life, 25 at a time. */
async function churn(p: Plugin): Promise<void> {
  await ok(p, 'CreateNetwork', { NetworkID: NET, Options: {}, IPv4Data: [{ AddressSpace: '', Pool: '198.18.80.0/22', Gateway: '198.18.80.1/22' }], IPv6Data: [] });
  const life = async (i: number): Promise<void> => {
    const id = epId(i);
    await ok(p, 'CreateEndpoint', { NetworkID: NET, EndpointID: id, Interface: { Address: `198.18.${80 + Math.floor((i + 2) / 256)}.${(i + 2) % 256}/22` }, Options: {} });
    await ok(p, 'Join', { NetworkID: NET, EndpointID: id, SandboxKey: '', Options: {} });
    await ok(p, 'Leave', { NetworkID: NET, EndpointID: id });
    await ok(p, 'DeleteEndpoint', { NetworkID: NET, EndpointID: id });
  };
  for (let i = 0; i < ENDPOINTS; i += 25) await Promise.all(Array.from({ length: 25 }, (_, k) => life(i + k)));
  await ok(p, 'DeleteNetwork', { NetworkID: NET });
}

/** Polls a query until `done` holds for its result. */
async function until(prom: Prometheus, expr: string, done: (r: Awaited<ReturnType<Prometheus['query']>>) => boolean, ms = 20_000): Promise<Awaited<ReturnType<Prometheus['query']>>> {
  const deadline = Date.now() + ms;
  for (;;) {
    const r = await prom.query(expr);
    if (done(r)) return r;
    if (Date.now() > deadline) throw new Error(`${expr}: still ${JSON.stringify(r)} after ${ms} ms\n${prom.logTail()}`);
    await sleep(250);
  }
}

test('Prometheus scrapes batch sizes and request rates of a plugin under churn', async (t) => {
  const scope = testScope(t);
  const ns = scope.add(await createNetns({ prefix: 'bbt-prom' }));
  const dir = scope.add(await makeTempDir('bbt-prom-'));
  const plugin = scope.add(await startPlugin({ ns, socketDir: dir.path, extraArgs: ['--metrics-listen', TARGET, '--log-level', 'info'], readyProbe: 'capabilities' }));
  const prom = scope.add(await startPrometheus(ns, dir.path, TARGET));
  // A first scrape before the churn: the rates start from the zeros the plugin shows at start.
  await until(prom, 'up{job="batchbridge"}', (r) => r[0]?.value === 1);
  await churn(plugin);
  const deletes = 'batchbridge_request_duration_seconds_count{front_end="docker",call="NetworkDriver.DeleteEndpoint",outcome="ok"}';
  await until(prom, deletes, (r) => r[0]?.value === ENDPOINTS);

  // Request rate per call: every call of the churn has a positive rate, none failed.
  const rates = await prom.query('sum by (call) (rate(batchbridge_request_duration_seconds_count{front_end="docker",outcome="ok"}[1m]))');
  const rate = new Map(rates.map((s) => [s.metric.call, s.value]));
  for (const call of ['NetworkDriver.CreateEndpoint', 'NetworkDriver.Join', 'NetworkDriver.Leave', 'NetworkDriver.DeleteEndpoint']) assert.ok((rate.get(call) ?? 0) > 0, `rate of ${call}: ${rate.get(call)}`);
  const failed = await prom.query('sum(batchbridge_request_duration_seconds_count{outcome!="ok"})');
  assert.equal(failed[0]?.value ?? 0, 0, 'no request failed');
  const counts = new Map((await prom.query('sum by (call) (batchbridge_request_duration_seconds_count{front_end="docker"})')).map((s) => [s.metric.call, s.value]));
  assert.equal(counts.get('NetworkDriver.CreateEndpoint'), ENDPOINTS);
  assert.equal(counts.get('NetworkDriver.Join'), ENDPOINTS);

  // Batch size per pipeline: creations in the veth pipeline, deletions in the delete pipeline.
  const ops = new Map((await prom.query('batchbridge_batch_operations_sum')).map((s) => [s.metric.pipeline, s.value]));
  assert.equal(ops.get('delete'), ENDPOINTS, 'every deletion went through the delete pipeline');
  assert.ok((ops.get('veth') ?? 0) >= ENDPOINTS + 3, `creations and the network's work in the veth pipeline: ${ops.get('veth')}`);
  const median = await prom.query('histogram_quantile(0.5, sum by (le, pipeline) (rate(batchbridge_batch_operations_bucket{pipeline=~"veth|delete"}[1m])))');
  assert.deepEqual(median.map((s) => s.metric.pipeline).sort(), ['delete', 'veth']);
  for (const s of median) assert.ok(s.value > 0 && s.value <= 256, `median batch size of ${s.metric.pipeline}: ${s.value}`);
  const mean = await prom.query('sum(rate(batchbridge_batch_operations_sum[1m])) / sum(rate(batchbridge_batch_operations_count[1m]))');
  assert.ok((mean[0]?.value ?? 0) >= 1, 'a mean batch size');
  assert.equal((await prom.query('batchbridge_endpoints'))[0]?.value, 0);
  assert.equal((await prom.query('batchbridge_healthy'))[0]?.value, 1);

  // promtool's lint on a scrape of the plugin: nothing to report.
  const scrape = await prom.get('metrics', '/metrics');
  assert.equal(scrape.status, 200);
  const lint = spawnSync('promtool', ['check', 'metrics'], { input: scrape.text, encoding: 'utf8' });
  assert.equal(lint.status, 0, lint.stdout + lint.stderr);
  assert.equal(lint.stdout + lint.stderr, '');
  assert.equal((await prom.get('metrics', '/other')).status, 404);
});
