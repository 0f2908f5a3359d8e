// Backpressure: flooding past --max-queue is answered "overloaded" at once (not after a timeout),
// teardown is never shed, and SIGTERM drains in-flight batches, exits 0 and removes the socket.
import assert from 'node:assert/strict';
import { chmodSync, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { sleep } from '../helpers/proc.js';
import { assertPrivateNetns, checkConsistency, cleanUpAfter, Client, readBooks, startPlugin, tempDir, type PluginProc } from './crash-kit.js';

/** An `ip` that takes its time: every batch lasts at least `delay` seconds. */
function slowIp(dir: string, delay: number): string {
  const path = join(dir, 'slow-ip');
  writeFileSync(path, `#!/bin/sh\nsleep ${delay}\nexec ip "$@"\n`);
  chmodSync(path, 0o755);
  return path;
}

const net = (id: string, third: number) => ({ NetworkID: id, Options: {}, IPv4Data: [{ Pool: `198.18.${third}.0/24` }], IPv6Data: [] });
const ep = (n: string, id: string, a: string) => ({ NetworkID: n, EndpointID: id, Interface: { Address: a }, Options: {} });

test('flooding past --max-queue gets a quick "overloaded" answer', { timeout: 90_000 }, async (t) => {
  assertPrivateNetns();
  const dir = await tempDir('bbt-bp-');
  let plugin: PluginProc | null = null;
  cleanUpAfter(t, dir, () => plugin);
  plugin = await startPlugin({
    name: 'bbbp', stateDir: join(dir.path, 'state'), socketDir: join(dir.path, 'sock'), logPath: join(dir.path, 'log'),
    extraArgs: ['--max-queue', '4', '--batch-max', '2', '--workers', '1', '--reconcile-interval-ms', '0'],
    env: { BB_IP_BIN: slowIp(dir.path, 0.4) },
  });
  const client = new Client(plugin.socketPath, 1000);
  t.after(() => client.close());
  assert.equal((await client.call('CreateNetwork', net('bpnet000000001', 100))).status, 200);
  const N = 40;
  const t0 = Date.now();
  const results = await Promise.all(
    Array.from({ length: N }, async (_, i) => {
      const r = await client.call('CreateEndpoint', ep('bpnet000000001', `bpep${i}`, `198.18.100.${10 + i}/24`));
      return { i, r, ms: Date.now() - t0 };
    }),
  );
  const shed = results.filter((x) => x.r.status !== 200);
  const ok = results.filter((x) => x.r.status === 200);
  assert.ok(shed.length > 0, 'some requests were shed');
  assert.ok(ok.length >= 4, `the queue's worth was served (${ok.length})`);
  for (const s of shed) {
    assert.equal(s.r.status, 503, s.r.text);
    assert.match(String(s.r.body.Err), /overloaded/);
    // Answered long before the queue could have drained (N/2 batches of 0.4 s).
    assert.ok(s.ms < 2000, `shed answer took ${s.ms} ms`);
  }
  // Teardown is never shed, even with the queue full.
  const flood = ok.map((x) => client.call('DeleteEndpoint', { NetworkID: 'bpnet000000001', EndpointID: `bpep${x.i}` }));
  const more = Array.from({ length: 10 }, (_, i) => client.call('CreateEndpoint', ep('bpnet000000001', `bpx${i}`, `198.18.100.${200 + i}/24`)));
  for (const d of await Promise.all(flood)) assert.equal(d.status, 200, d.text);
  await Promise.all(more);
  for (let i = 0; i < 10; i++) await client.call('DeleteEndpoint', { NetworkID: 'bpnet000000001', EndpointID: `bpx${i}` });
  assert.deepEqual(await checkConsistency(readBooks(join(dir.path, 'state'))), []);
});

test('SIGTERM drains in-flight batches, exits 0, removes the socket', { timeout: 90_000 }, async (t) => {
  assertPrivateNetns();
  const dir = await tempDir('bbt-drain-');
  let plugin: PluginProc | null = null;
  cleanUpAfter(t, dir, () => plugin);
  const stateDir = join(dir.path, 'state');
  plugin = await startPlugin({
    name: 'bbdrain', stateDir, socketDir: join(dir.path, 'sock'), logPath: join(dir.path, 'log'),
    extraArgs: ['--batch-max', '4', '--workers', '1', '--reconcile-interval-ms', '0'],
    env: { BB_IP_BIN: slowIp(dir.path, 0.5) },
  });
  const client = new Client(plugin.socketPath, 0);
  t.after(() => client.close());
  assert.equal((await client.call('CreateNetwork', net('drainnet000001', 101))).status, 200);
  const calls = Array.from({ length: 12 }, (_, i) => client.call('CreateEndpoint', ep('drainnet000001', `dr${i}`, `198.18.101.${10 + i}/24`)));
  await sleep(300); // all accepted, the first batches running
  const t0 = Date.now();
  const exited = plugin.stop();
  const answers = await Promise.all(calls);
  const status = await exited;
  plugin = null;
  assert.equal(status.code, 0, 'exit 0 after draining');
  assert.ok(Date.now() - t0 < 30_000);
  for (const a of answers) assert.equal(a.status, 200, `in-flight request finished: ${a.text}`);
  assert.equal(existsSync(join(dir.path, 'sock', 'bbdrain.sock')), false, 'socket removed');
  const books = readBooks(stateDir);
  assert.equal(books.endpoints.size, 12, 'every drained request is booked');
  assert.equal(books.intents, 0);
  assert.deepEqual(await checkConsistency(books), []);
});
