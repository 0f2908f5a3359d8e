// Faults: an `ip` that dies mid-batch, an iptables-restore that fails, and a worker thread that
// crashes. Only the affected requests fail, nobody is left hanging, books and kernel agree.
import assert from 'node:assert/strict';
import { chmodSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { pino } from 'pino';
import type { BatchRequest, BatchResponse } from '../../src/batching/work.js';
import { parseEndpointId, parseNetworkId } from '../../src/domain/names.js';
import { SqliteStateStore } from '../../src/state/sqlite-store.js';
import { PiscinaExecutor } from '../../src/workers/pool.js';
import { kernelDriver, WORKER_CONFIG } from './engine-kit.js';
import { processTree } from '../../scripts/load/run.js';
import { cmdlineOf, runOk } from '../helpers/proc.js';
import { assertPrivateNetns, checkConsistency, cleanUpAfter, Client, readBooks, startPlugin, tempDir, wipeNamespace, type PluginProc } from './crash-kit.js';

const ep = (n: string, id: string, a: string) => ({ NetworkID: n, EndpointID: id, Interface: { Address: a }, Options: {} });

test('ip dying mid-batch and iptables-restore failing: only affected requests fail', { timeout: 90_000 }, async (t) => {
  assertPrivateNetns();
  const dir = await tempDir('bbt-faults-');
  const flagIp = join(dir.path, 'break-ip');
  const flagFw = join(dir.path, 'break-fw');
  // ip: with the flag, run only the first line of the script, then die as if killed.
  const ipBin = join(dir.path, 'ip');
  writeFileSync(ipBin, `#!/bin/sh\nif [ -e ${flagIp} ] && [ "$1" = "-force" ]; then head -n 1 | ip "$@"; echo "ip: simulated crash mid-batch" >&2; exit 137; fi\nexec ip "$@"\n`);
  const fwBin = join(dir.path, 'iptables-restore');
  // (Fails without reading its input: a long-lived session never closes stdin.)
  writeFileSync(fwBin, `#!/bin/sh\nif [ -e ${flagFw} ] && [ "$1" != "--version" ]; then echo "iptables-restore: simulated failure" >&2; exit 4; fi\nexec iptables-restore "$@"\n`);
  chmodSync(ipBin, 0o755);
  chmodSync(fwBin, 0o755);
  const stateDir = join(dir.path, 'state');
  let plugin: PluginProc | null = null;
  cleanUpAfter(t, dir, () => plugin);
  plugin = await startPlugin({
    name: 'bbfault', stateDir, socketDir: join(dir.path, 'sock'), logPath: join(dir.path, 'log'),
    extraArgs: ['--workers', '1', '--batch-window-ms', '50', '--reconcile-interval-ms', '0', '--firewall-check-ms', '3600000'],
    env: { BB_IP_BIN: ipBin, BB_IPTABLES_RESTORE_BIN: fwBin },
  });
  const client = new Client(plugin.socketPath, 1000);
  t.after(() => client.close());
  const N = 'faultnet000001';
  assert.equal((await client.call('CreateNetwork', { NetworkID: N, Options: {}, IPv4Data: [{ Pool: '198.18.110.0/24' }], IPv6Data: [] })).status, 200);

  // 1. ip dies after the first line of each batch.
  writeFileSync(flagIp, '');
  const res = await Promise.all(Array.from({ length: 8 }, (_, i) => client.call('CreateEndpoint', ep(N, `f${i}`, `198.18.110.${10 + i}/24`))));
  rmSync(flagIp);
  const ok = res.flatMap((r, i) => (r.status === 200 ? [`f${i}`] : []));
  const failed = res.flatMap((r, i) => (r.status !== 200 ? [`f${i}`] : []));
  assert.ok(ok.length >= 1, 'the line that ran counts as done');
  assert.ok(failed.length >= 1, 'the lines that never ran fail their requests');
  for (const r of res) if (r.status !== 200) assert.match(String(r.body.Err), /simulated crash|failed/);
  let books = readBooks(stateDir);
  assert.deepEqual([...books.endpoints.keys()].sort(), ok.sort(), 'exactly the answered endpoints are booked');
  assert.deepEqual(await checkConsistency(books), []);

  // 2. iptables-restore fails: Program fails, nothing half-installed, then works again.
  writeFileSync(flagFw, '');
  // The thread's iptables-restore session (src/firewall/iptables/session.ts) was started before
  // the flag: kill it, as a crash would, so the next transaction starts the failing wrapper.
  const sessions = processTree(plugin.pid).filter((pid) => cmdlineOf(pid).some((a) => a.endsWith('iptables-restore')));
  assert.ok(sessions.length >= 1, 'the plugin keeps an iptables-restore session');
  for (const pid of sessions) process.kill(pid, 'SIGKILL');
  const target = ok[0] ?? 'f0';
  const prog = { NetworkID: N, EndpointID: target, Options: { 'com.docker.network.portmap': [{ Proto: 6, Port: 80, HostPort: 18090 }] } };
  const p1 = await client.call('ProgramExternalConnectivity', prog);
  assert.notEqual(p1.status, 200);
  assert.match(String(p1.body.Err), /simulated failure/);
  books = readBooks(stateDir);
  assert.equal(books.endpoints.get(target)?.mappings, 0);
  assert.deepEqual(await checkConsistency(books), []);
  rmSync(flagFw);
  const p2 = await client.call('ProgramExternalConnectivity', prog);
  assert.equal(p2.status, 200, `port 18090 was released after the failure: ${p2.text}`);
  assert.equal(readBooks(stateDir).endpoints.get(target)?.mappings, 1);
  assert.deepEqual(await checkConsistency(readBooks(stateDir)), []);

  // Everything else still works.
  assert.equal((await client.call('CreateEndpoint', ep(N, 'after', '198.18.110.99/24'))).status, 200);
  for (const id of [...readBooks(stateDir).endpoints.keys()]) assert.equal((await client.call('DeleteEndpoint', { NetworkID: N, EndpointID: id })).status, 200);
  assert.equal((await client.call('DeleteNetwork', { NetworkID: N })).status, 200);
  assert.deepEqual(await checkConsistency(readBooks(stateDir)), []);
});

/** A pool whose next batch runs on a thread that dies (PiscinaExecutor.crashOne). */
class CrashingExecutor extends PiscinaExecutor {
  crashNext = false;
  override async runBatch(req: BatchRequest): Promise<BatchResponse> {
    if (this.crashNext) {
      this.crashNext = false;
      await this.crashOne();
    }
    return super.runBatch(req);
  }
}

test('a crashed worker thread is replaced; its batch is answered with errors', { timeout: 60_000 }, async (t) => {
  assertPrivateNetns();
  const dir = await tempDir('bbt-crashw-');
  const store = new SqliteStateStore(join(dir.path, 'state'));
  const exec = new CrashingExecutor(WORKER_CONFIG, 1);
  const { driver, engine } = kernelDriver(store, exec, pino({ level: 'silent' }), { batchMax: 8 });
  t.after(async () => {
    await driver.close();
    await exec.close();
    store.close();
    await wipeNamespace();
    await dir.remove();
  });
  await engine.syncFirewall();
  const N = parseNetworkId('crashwnet00001');
  await driver.createNetwork({ NetworkID: N, Options: {}, IPv4Data: [{ Pool: '198.18.120.0/24' }], IPv6Data: [] });
  const mk = (i: number) => driver.createEndpoint({ NetworkID: N, EndpointID: parseEndpointId(`w${i}`), Interface: { Address: `198.18.120.${10 + i}/24` }, Options: {} });
  exec.crashNext = true;
  const t0 = Date.now();
  const res = await Promise.allSettled([0, 1, 2, 3].map(mk));
  assert.ok(Date.now() - t0 < 20_000, 'nobody left hanging');
  const rejected = res.filter((r) => r.status === 'rejected');
  assert.ok(rejected.length >= 1, 'the crashed batch failed its requests');
  for (const r of rejected) assert.match(String((r as PromiseRejectedResult).reason), /batch \d+ failed|worker|exit/i);
  // The pool has a thread again: new work goes through.
  await mk(10);
  const books = { ...readBooks(join(dir.path, 'state')) };
  assert.equal(books.intents, 0, 'the crashed batch left no intent behind');
  assert.deepEqual(await checkConsistency(books), []);
  await runOk(['ip', '-br', 'link']);
});
