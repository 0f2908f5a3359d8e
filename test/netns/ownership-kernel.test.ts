// What is ours and what is not (issue 10 C, D, H, I), against the real kernel through a real
// plugin process: reconciliation removes only interfaces carrying our ownership mark, never by
// name; a user's bridge keeps its state; a partial flush of any chain of ours is repaired by the
// watchdog within 5 s at the default check interval; internal networks show no drift.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { eventually, runOk } from '../helpers/proc.js';
import { assertPrivateNetns, checkConsistency, cleanUpAfter, Client, kernelLinks, readBooks, startPlugin, tempDir, type PluginProc } from './crash-kit.js';

interface Report {
  findings: Array<{ kind: string; subject: string; detail: string }>;
}

async function setUp(t: import('node:test').TestContext, name: string, extraArgs: readonly string[] = ['--reconcile-interval-ms', '0']) {
  assertPrivateNetns();
  const dir = await tempDir('bbt-own-');
  const opts = { name, stateDir: join(dir.path, 'state'), socketDir: join(dir.path, 'sock'), logPath: join(dir.path, 'plugin.log'), extraArgs };
  const state: { plugin: PluginProc | null } = { plugin: null };
  const client = new Client(join(opts.socketDir, `${name}.sock`), 10_000);
  cleanUpAfter(t, dir, () => state.plugin, () => client.close());
  state.plugin = await startPlugin(opts);
  const ok = async (method: string, body: unknown): Promise<Record<string, unknown>> => {
    const r = await client.call(method, body);
    assert.equal(r.status, 200, `${method}: ${r.text}`);
    return r.body;
  };
  const reconcile = async (): Promise<Report> => (await ok('BatchBridge.Reconcile', {})).Report as Report;
  return { dir, opts, state, client, ok, reconcile };
}

const net = (id: string, pool: string, generic: Record<string, unknown> = {}, top: Record<string, unknown> = {}) => ({
  NetworkID: id,
  Options: { 'com.docker.network.generic': generic, ...top },
  IPv4Data: [{ Pool: pool, Gateway: pool.replace(/0\/24$/, '1/24') }],
  IPv6Data: [],
});

test("a network on an existing bridge never touches the veths on it that are not ours (docker0's containers)", { timeout: 60_000 }, async (t) => {
  const s = await setUp(t, 'bbown1');
  // An existing bridge with a container of someone else's on it (as dockerd's docker0 has).
  await runOk(['ip', 'link', 'add', 'bbtdock0', 'type', 'bridge']);
  await runOk(['ip', 'link', 'set', 'bbtdock0', 'up']);
  await runOk(['ip', 'link', 'add', 'vethf00f001', 'master', 'bbtdock0', 'type', 'veth', 'peer', 'name', 'vethf00f0ff']);
  await s.ok('CreateNetwork', net('owna000000000001', '198.18.90.0/24', { 'com.docker.network.bridge.name': 'bbtdock0' }));
  await s.ok('CreateEndpoint', { NetworkID: 'owna000000000001', EndpointID: 'ep1', Interface: { Address: '198.18.90.2/24' }, Options: {} });
  const report = await s.reconcile();
  assert.deepEqual(report.findings, [], JSON.stringify(report.findings));
  // And at start, after a restart.
  await s.state.plugin?.stop();
  s.state.plugin = await startPlugin(s.opts);
  const links = await kernelLinks();
  assert.equal(links.get('vethf00f001')?.master, 'bbtdock0', "someone else's veth is still on the bridge");
  assert.ok(links.has(readBooks(s.opts.stateDir).endpoints.get('ep1')?.host ?? '-'), 'ours too');
  await s.ok('DeleteNetwork', { NetworkID: 'owna000000000001' });
  assert.equal((await kernelLinks()).get('vethf00f001')?.master, 'bbtdock0');
  await runOk(['ip', 'link', 'del', 'vethf00f001']);
  await runOk(['ip', 'link', 'del', 'bbtdock0']);
});

test("a user's bridge named bb-* survives our network with its address and its down state; our own bridges carry our mark", { timeout: 60_000 }, async (t) => {
  const s = await setUp(t, 'bbown2');
  await runOk(['ip', 'link', 'add', 'bb-user', 'type', 'bridge']);
  await runOk(['ip', 'addr', 'add', '198.18.91.254/24', 'dev', 'bb-user']); // down, with an address of its own
  await s.ok('CreateNetwork', net('ownb000000000001', '198.18.91.0/24', { 'com.docker.network.bridge.name': 'bb-user' }));
  assert.ok(((await kernelLinks()).get('bb-user')?.flags ?? []).includes('UP'), 'up while our network uses it');
  await s.ok('CreateNetwork', net('ownb000000000002', '198.18.92.0/24', { 'com.docker.network.bridge.name': 'bbtown2' }));
  const mark = readBooks(s.opts.stateDir).ownerGroup;
  const made = (await kernelLinks()).get('bbtown2') as { group?: unknown } | undefined;
  assert.equal(String(made?.group), String(mark), 'a bridge we create carries our mark');
  await s.ok('DeleteNetwork', { NetworkID: 'ownb000000000001' });
  assert.deepEqual((await s.reconcile()).findings, []);
  const l = (await kernelLinks()).get('bb-user');
  assert.ok(l, "the user's bridge is still there");
  assert.deepEqual((l.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`), ['198.18.91.254/24'], 'its own address kept, ours gone');
  assert.ok(!(l.flags ?? []).includes('UP'), 'down again, as we found it');
  // Still there after a restart (start-up reconciliation) too.
  await s.state.plugin?.stop();
  s.state.plugin = await startPlugin(s.opts);
  assert.ok((await kernelLinks()).has('bb-user'));
  await s.ok('DeleteNetwork', { NetworkID: 'ownb000000000002' });
  await runOk(['ip', 'link', 'del', 'bb-user']);
});

test('internal networks show no drift', { timeout: 60_000 }, async (t) => {
  const s = await setUp(t, 'bbown3');
  await s.ok('CreateNetwork', net('ownc100000000001', '198.18.93.0/24', {}, { 'com.docker.network.internal': true }));
  await s.ok('CreateNetwork', net('ownc200000000002', '198.18.94.0/24'));
  assert.deepEqual((await s.reconcile()).findings, []);
  assert.deepEqual(await checkConsistency(readBooks(s.opts.stateDir)), []);
});

test('the watchdog repairs a partial flush of any chain of ours within 5 s (default interval)', { timeout: 60_000 }, async (t) => {
  const s = await setUp(t, 'bbown4', ['--reconcile-interval-ms', '0']);
  await s.ok('CreateNetwork', net('ownd000000000001', '198.18.95.0/24'));
  await s.ok('CreateEndpoint', { NetworkID: 'ownd000000000001', EndpointID: 'ep1', Interface: { Address: '198.18.95.2/24' }, Options: {} });
  await s.ok('ProgramExternalConnectivity', { NetworkID: 'ownd000000000001', EndpointID: 'ep1', Options: { 'com.docker.network.portmap': [{ Proto: 6, Port: 80, HostPort: 18190 }] } });
  const bucket = `BB-DNAT-${Math.floor(18190 / 512)}`;
  const rules = async (table: string, chain: string): Promise<number> => (await runOk(['iptables', '-t', table, '-S', chain])).split('\n').filter((l) => l.startsWith('-A ')).length;
  const want = { post: await rules('nat', 'BB-POSTROUTING'), bucket: await rules('nat', bucket), iso: await rules('filter', 'BB-ISOLATION-2') };
  assert.ok(want.post > 0 && want.bucket === 1 && want.iso > 0, JSON.stringify(want));
  for (const [table, chain, key] of [['nat', 'BB-POSTROUTING', 'post'], ['nat', bucket, 'bucket'], ['filter', 'BB-ISOLATION-2', 'iso']] as const) {
    const t0 = Date.now();
    await runOk(['iptables', '-t', table, '-F', chain]);
    await eventually(async () => assert.equal(await rules(table, chain), want[key], `${chain} restored`), { timeoutMs: 5000, intervalMs: 50 });
    t.diagnostic(`${chain} flushed: restored after ${Date.now() - t0} ms`);
  }
});
