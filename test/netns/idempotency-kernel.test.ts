// Issue 10 A and B at the protocol level, against a real plugin over its socket in this private
// namespace: repeated creates are answered like the first; the same id with another request is
// refused; a new endpoint whose IPv4 address another endpoint of the network holds replaces a
// holder that is dead (veth gone, or never joined and older than --stale-endpoint-grace-ms) and
// is refused while the holder is alive (joined, its container end in another namespace);
// Plugin.Activate, and a refused port, first settle endpoints whose veth vanished.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { after, before, test, type TestContext } from 'node:test';
import { run, runOk, sleep } from '../helpers/proc.js';
import {
  assertPrivateNetns, checkConsistency, Client, kernelLinks, readBooks, startPlugin, tempDir, wipeNamespace, type CallResult, type PluginProc, type TempDir,
} from './crash-kit.js';

const GRACE_MS = 300;

interface Rig {
  readonly client: Client;
  readonly stateDir: string;
}

// One plugin for the file; each test works on a network of its own (ids differ in their first
// 12 characters, which name the default bridge).
let r: Rig;
let plugin: PluginProc | null = null;
let dir: TempDir;
before(async () => {
  assertPrivateNetns();
  dir = await tempDir('bbt-idem-');
  const stateDir = join(dir.path, 'state');
  plugin = await startPlugin({
    name: 'bbidem', stateDir, socketDir: join(dir.path, 'sock'), logPath: join(dir.path, 'log'),
    // Nothing but the calls under test may settle endpoints: no timer, no watchdog repairs.
    extraArgs: ['--reconcile-interval-ms', '0', '--firewall-check-ms', '3600000', '--stale-endpoint-grace-ms', String(GRACE_MS)],
  });
  r = { client: new Client(plugin.socketPath, 2000), stateDir };
});
after(async () => {
  await r?.client.close();
  await plugin?.kill9();
  await wipeNamespace();
  await dir?.remove();
});

const netBody = (id: string, third: number, bridge?: string): Record<string, unknown> => ({
  NetworkID: id,
  Options: { 'com.docker.network.generic': bridge === undefined ? {} : { 'com.docker.network.bridge.name': bridge } },
  IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: `198.18.${third}.0/24`, Gateway: `198.18.${third}.1/24` }],
  IPv6Data: [],
});
/** One network per test: its id and the first three bytes of its /24. */
interface Net {
  readonly id: string;
  readonly prefix: string;
}
const epBody = (n: Net, id: string, host: number): Record<string, unknown> => ({
  NetworkID: n.id, EndpointID: id, Interface: { Address: `${n.prefix}.${host}/24` }, Options: {},
});
const ids = (n: Net, id: string) => ({ NetworkID: n.id, EndpointID: id });
const portmap = (n: Net, id: string, port: number) => ({
  ...ids(n, id), Options: { 'com.docker.network.portmap': [{ Proto: 6, Port: 80, HostPort: port, HostPortEnd: port }] },
});

function ok200(r: CallResult, what: string): void {
  assert.equal(r.status, 200, `${what}: ${r.status} ${r.text}`);
}

function refused(r: CallResult, what: string, status: number): void {
  assert.equal(r.status, status, `${what}: want ${status}, got ${r.status} ${r.text}`);
  assert.ok(typeof r.body.Err === 'string' && r.body.Err.length > 0, `${what}: no Err in ${r.text}`);
}

/** iptables rules tagged with this endpoint's owner tag. */
async function rulesOf(endpointId: string): Promise<string[]> {
  return (await runOk(['iptables-save'])).split('\n').filter((l) => l.startsWith('-A ') && l.includes(`bb:ep=${endpointId.slice(0, 12)}`));
}

async function consistent(what: string): Promise<void> {
  assert.deepEqual(await checkConsistency(readBooks(r.stateDir)), [], `${what}: kernel and books disagree`);
}

/** A process in a namespace of its own, standing in for a container's sandbox. */
function sandbox(t: TestContext): ChildProcess {
  const c = spawn('unshare', ['--net', 'sleep', '600'], { stdio: 'ignore' });
  t.after(() => { c.kill('SIGKILL'); });
  return c;
}

test('repeated creates answer like the first; the same id with another request is refused', { timeout: 60_000 }, async () => {
  const c = r.client;
  const n: Net = { id: 'idem1net000001', prefix: '198.18.140' };
  const body = netBody(n.id, 140);
  const first = await c.call('CreateNetwork', body);
  ok200(first, 'CreateNetwork');
  const again = await c.call('CreateNetwork', body);
  ok200(again, 'CreateNetwork repeated');
  assert.equal(again.text, first.text, 'same reply');
  const [a, b] = await Promise.all([c.call('CreateNetwork', body), c.call('CreateNetwork', body)]);
  ok200(a as CallResult, 'CreateNetwork repeated concurrently (1)');
  ok200(b as CallResult, 'CreateNetwork repeated concurrently (2)');
  const other = await c.call('CreateNetwork', netBody(n.id, 141));
  refused(other, 'CreateNetwork, same id, another subnet', 409);
  const bridges = [...(await kernelLinks()).values()].filter((l) => l.linkinfo?.info_kind === 'bridge');
  assert.equal(bridges.length, 1, `one bridge: ${bridges.map((l) => l.ifname).join(', ')}`);
  assert.deepEqual([...readBooks(r.stateDir).networks.keys()], [n.id]);

  const ep = epBody(n, 'idemepa000001', 10);
  const e1 = await c.call('CreateEndpoint', ep);
  ok200(e1, 'CreateEndpoint');
  assert.match(e1.text, /MacAddress/, 'the first reply carries the MAC');
  const e2 = await c.call('CreateEndpoint', ep);
  ok200(e2, 'CreateEndpoint repeated');
  assert.deepEqual(e2.body, e1.body, 'same reply');
  const both = await Promise.all([c.call('CreateEndpoint', ep), c.call('CreateEndpoint', ep)]);
  for (const x of both) {
    ok200(x, 'CreateEndpoint repeated concurrently');
    assert.deepEqual(x.body, e1.body, 'same reply');
  }
  // Concurrent identical creates of an endpoint that does not exist yet: one creation, two 200s.
  const fresh = epBody(n, 'idemepb000001', 11);
  const pair = await Promise.all([c.call('CreateEndpoint', fresh), c.call('CreateEndpoint', fresh)]);
  for (const x of pair) ok200(x, 'new CreateEndpoint sent twice at once');
  assert.deepEqual(pair[0]?.body, pair[1]?.body, 'same reply to both');
  refused(await c.call('CreateEndpoint', epBody(n, 'idemepa000001', 12)), 'CreateEndpoint, same id, another address', 409);
  const books = readBooks(r.stateDir);
  assert.deepEqual([...books.endpoints.keys()].sort(), ['idemepa000001', 'idemepb000001']);
  assert.equal(books.endpoints.get('idemepa000001')?.ipv4, `${n.prefix}.10/24`, 'the refused request changed nothing');
  const veths = [...(await kernelLinks()).values()].filter((l) => /^veth[0-9a-f]{7}$/.test(l.ifname) && l.master !== undefined);
  assert.equal(veths.length, 2, `one veth per endpoint: ${veths.map((l) => l.ifname).join(', ')}`);
  // Joined, then created again (a late retry): still the same answer, nothing new.
  ok200(await c.call('Join', { ...ids(n, 'idemepa000001'), SandboxKey: '/var/run/docker/netns/x', Options: {} }), 'Join');
  const late = await c.call('CreateEndpoint', ep);
  ok200(late, 'CreateEndpoint repeated after Join');
  assert.deepEqual(late.body, e1.body);
  await consistent('after the repeats');
});

test('a new endpoint on a booked address replaces a dead holder and is refused by a live one', { timeout: 60_000 }, async (t) => {
  const c = r.client;
  const n: Net = { id: 'idem2net000001', prefix: '198.18.141' };
  ok200(await c.call('CreateNetwork', netBody(n.id, 141)), 'CreateNetwork');
  const join = async (id: string): Promise<string> => {
    const j = await c.call('Join', { ...ids(n, id), SandboxKey: `/var/run/docker/netns/${id}`, Options: {} });
    ok200(j, `Join ${id}`);
    return String((j.body.InterfaceName as { SrcName?: unknown } | undefined)?.SrcName);
  };

  await t.test('holder whose veth was deleted (its container died): replaced, its DNAT rules gone, its port free', async () => {
    ok200(await c.call('CreateEndpoint', epBody(n, 'holdera000001', 20)), 'holder');
    await join('holdera000001');
    ok200(await c.call('ProgramExternalConnectivity', portmap(n, 'holdera000001', 18200)), 'holder programs 18200');
    assert.ok((await rulesOf('holdera000001')).length > 0, 'holder has DNAT rules');
    const host = readBooks(r.stateDir).endpoints.get('holdera000001')?.host ?? '';
    await runOk(['ip', 'link', 'del', 'dev', host]);
    ok200(await c.call('CreateEndpoint', epBody(n, 'newera0000001', 20)), 'new endpoint on the dead holder\'s address');
    const books = readBooks(r.stateDir);
    assert.equal(books.endpoints.has('holdera000001'), false, 'the dead holder is unbooked');
    assert.equal(books.endpoints.get('newera0000001')?.ipv4, `${n.prefix}.20/24`);
    assert.deepEqual(await rulesOf('holdera000001'), [], 'the dead holder\'s DNAT rules are gone');
    await join('newera0000001');
    ok200(await c.call('ProgramExternalConnectivity', portmap(n, 'newera0000001', 18200)), 'its port is free again');
    await consistent('after replacing a holder whose veth vanished');
  });

  await t.test(`never-joined holder older than the grace period (${GRACE_MS} ms): replaced`, async () => {
    ok200(await c.call('CreateEndpoint', epBody(n, 'holderb000001', 21)), 'holder');
    const host = readBooks(r.stateDir).endpoints.get('holderb000001')?.host ?? '';
    await sleep(GRACE_MS + 200);
    ok200(await c.call('CreateEndpoint', epBody(n, 'newerb0000001', 21)), 'new endpoint on the orphan\'s address');
    const books = readBooks(r.stateDir);
    assert.equal(books.endpoints.has('holderb000001'), false, 'the orphan is unbooked');
    assert.equal((await kernelLinks()).has(host), false, `the orphan's veth ${host} is deleted`);
    await consistent('after replacing a never-joined holder');
  });

  await t.test('joined holder whose container end is in another namespace: the new endpoint is refused', async () => {
    ok200(await c.call('CreateEndpoint', epBody(n, 'holderc000001', 22)), 'holder');
    const peer = await join('holderc000001');
    const box = sandbox(t);
    await sleep(50);
    await runOk(['ip', 'link', 'set', 'dev', peer, 'netns', String(box.pid)]);
    await sleep(GRACE_MS + 200);
    const t0 = Date.now();
    const res = await c.call('CreateEndpoint', epBody(n, 'newerc0000001', 22));
    refused(res, 'new endpoint on a live holder\'s address', 409);
    assert.match(String(res.body.Err), new RegExp(`${n.prefix.replace(/\./g, '\\.')}\\.22`), 'the refusal names the address');
    assert.ok(Date.now() - t0 < 10_000, `refused within 10 s (${Date.now() - t0} ms)`);
    const books = readBooks(r.stateDir);
    assert.ok(books.endpoints.has('holderc000001'), 'the live holder stays booked');
    assert.equal(books.endpoints.has('newerc0000001'), false, 'the refused endpoint is not booked');
    await consistent('after refusing');
  });
});

test('Plugin.Activate and a refused port settle endpoints whose veth vanished', { timeout: 60_000 }, async () => {
  const c = r.client;
  const n: Net = { id: 'idem3net000001', prefix: '198.18.142' };
  ok200(await c.call('CreateNetwork', netBody(n.id, 142)), 'CreateNetwork');
  const up = async (id: string, host: number, port: number): Promise<string> => {
    ok200(await c.call('CreateEndpoint', epBody(n, id, host)), `CreateEndpoint ${id}`);
    ok200(await c.call('Join', { ...ids(n, id), SandboxKey: `/var/run/docker/netns/${id}`, Options: {} }), `Join ${id}`);
    ok200(await c.call('ProgramExternalConnectivity', portmap(n, id, port)), `Program ${id} :${port}`);
    return readBooks(r.stateDir).endpoints.get(id)?.host ?? '';
  };
  // dockerd restarts: the containers' namespaces are gone with their veths, dockerd forgot them
  // without telling the plugin, and activates the plugin before it starts anything again.
  const gone1 = await up('deadepa000001', 30, 18210);
  const gone2 = await up('deadepb000001', 31, 18211);
  await run(['ip', 'link', 'del', 'dev', gone1]);
  await run(['ip', 'link', 'del', 'dev', gone2]);
  ok200(await c.call('Plugin.Activate', undefined), 'Plugin.Activate');
  const books = readBooks(r.stateDir);
  assert.deepEqual([...books.endpoints.keys()].filter((k) => k.startsWith('deadep')), [], 'Activate unbooked the vanished endpoints');
  assert.deepEqual([...await rulesOf('deadepa000001'), ...await rulesOf('deadepb000001')], [], 'and removed their rules');
  await up('liveepa000001', 40, 18210);
  await consistent('after Activate');

  // Without Activate: the port refusal itself settles the vanished holder first.
  const gone3 = await up('deadepc000001', 32, 18212);
  await run(['ip', 'link', 'del', 'dev', gone3]);
  await up('liveepb000001', 41, 18212);
  assert.equal(readBooks(r.stateDir).endpoints.has('deadepc000001'), false, 'the vanished port holder is unbooked');
  assert.deepEqual(await rulesOf('deadepc000001'), []);
  await consistent('after a port refusal settled');
});
