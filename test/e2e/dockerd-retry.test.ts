// Issue 10 B: dockerd's plugin client retries a call whose answer it did not get, after the
// plugin already did the work. A proxy on the socket path dockerd discovers
// (/run/docker/plugins/<name>.sock) forwards every call to the real plugin (which listens in
// another --socket-dir), lets it do the work, and closes the connection without an answer the
// first time it sees CreateNetwork and CreateEndpoint — what a plugin crash or a broken
// connection after the work looks like to dockerd.
//
// How dockerd 20.10 retries (moby pkg/plugins/client.go, callWithRetry; seen here through the
// proxy, with dockerd 20.10.24):
// - Any error from the HTTP round trip is retried: connection refused (plugin down), and also
//   a connection closed after the request went out with no answer (Go reports EOF; dockerd logs
//   `Unable to connect to plugin: …: EOF, retrying in 1s`). A non-200 answer is never retried.
// - Backoff 1, 2, 4, 8, 16 s; it gives up when the time spent plus the next wait reaches 30 s,
//   so at most 5 tries within about 15 s. No timeout on a call for a legacy (v1) plugin.
// - The retry goes out on a new connection about 1 s later WITH AN EMPTY BODY (Content-Length 0):
//   the request body is a bytes.Buffer that the first attempt consumed, and each attempt builds
//   a new request from it. So the plugin does not see the same call twice: it sees the original
//   call (which it carried out) and then the same method without arguments. Go's http.Transport
//   itself replays a POST (with the full body) only when nothing of it was written on a reused
//   connection, in which case the plugin never saw the first one.
// So answering dockerd's retry takes more than idempotency on ids: the plugin has to recognise
// the argument-less retry of a create whose answer was lost. If it refuses the retry instead
// (today: 400 "request body is empty"), dockerd reports the create as failed and forgets the
// network or endpoint, while the plugin keeps it: a network with an explicit --subnet or bridge
// name then cannot be created again, and the forgotten endpoint's address goes to a new one.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { makeTempDir } from '../helpers/cleanup.js';
import { ipLinks, iptablesSave } from '../helpers/netns.js';
import { startPluginProxy } from '../helpers/plugin-proxy.js';
import { PLUGIN_SOCKET_DIR, randomPluginName } from '../helpers/plugin.js';
import { startStack } from '../helpers/stack.js';
import { readBooks } from '../netns/crash-kit.js';

const CREATE_NETWORK = '/NetworkDriver.CreateNetwork';
const CREATE_ENDPOINT = '/NetworkDriver.CreateEndpoint';
const BRIDGE = 'bbretry0';
const SUBNET = '198.18.60.0/24';
/** The CreateEndpoint case runs on a network of its own, whatever happened to n1. */
const BRIDGE2 = 'bbretry1';

test('dockerd retries a create whose answer was lost: the user sees success, nothing is doubled or leaked', { timeout: 180_000 }, async (t) => {
  const name = randomPluginName();
  const sockDir = await makeTempDir('bbt-sock-');
  const s = await startStack(t, { pluginName: name, pluginSocketDir: sockDir.path });
  s.scope.add(sockDir);
  const proxy = s.scope.add(await startPluginProxy(join(PLUGIN_SOCKET_DIR, `${name}.sock`), s.plugin.socketPath));
  const ok = (args: string[]) => s.dockerOk(args);
  const netArgs = ['network', 'create', '-d', name, '--subnet', SUBNET, '-o', `com.docker.network.bridge.name=${BRIDGE}`, 'n1'];
  const explain = () => `--- calls through the proxy ---\n${proxy.describe()}\n${s.explain()}`;
  const hasNetwork = async (n = 'n1') => (await ok(['network', 'ls', '--format', '{{.Name}}'])).split('\n').includes(n);

  await t.test('CreateNetwork answer lost: dockerd retries and `docker network create` succeeds', async () => {
    proxy.dropNext(CREATE_NETWORK);
    const r = await s.docker(netArgs);
    const calls = proxy.callsOf(CREATE_NETWORK);
    t.diagnostic(`CreateNetwork calls: ${calls.map((c) => `+${c.at}ms ${c.body.length} B -> ${c.status}${c.dropped ? ' (dropped)' : ''}`).join(', ')}`);
    assert.ok(calls.length >= 2 && calls[0]?.dropped === true && calls[0].status === 200, `dockerd retried after the dropped answer\n${explain()}`);
    assert.equal(r.code, 0, `docker network create failed after a lost answer: ${r.stderr.trim()}\n${explain()}`);
    assert.ok(await hasNetwork());
  });

  await t.test('the network can be created (again if the first try failed), works, is removed and created again', async () => {
    // A user whose `docker network create` failed runs it again.
    if (!(await hasNetwork())) await ok(netArgs);
    await ok(['run', '-d', '--name', 'c0', '--network', 'n1', 'bb:latest', 'sleep', '600']);
    assert.equal((await s.docker(['exec', 'c0', 'ping', '-c', '1', '-W', '3', '198.18.60.1'])).code, 0, `c0 reaches its gateway\n${explain()}`);
    await ok(['rm', '-f', 'c0']);
    await ok(['network', 'rm', 'n1']);
    assert.equal(readBooks(s.stateDir).networks.size, 0, `no network booked after docker network rm\n${explain()}`);
    assert.deepEqual(await ipLinks(s.ns).then((ls) => ls.filter((l) => l.ifname === BRIDGE)), [], 'bridge removed');
    await ok(netArgs);
  });

  await t.test('CreateEndpoint answer lost: dockerd retries and `docker run` succeeds; no two endpoints share an address or MAC', async () => {
    await ok(['network', 'create', '-d', name, '--subnet', '198.18.61.0/24', '-o', `com.docker.network.bridge.name=${BRIDGE2}`, 'n2']);
    const earlier = proxy.callsOf(CREATE_ENDPOINT).length;
    proxy.dropNext(CREATE_ENDPOINT);
    const first = await s.docker(['run', '-d', '--name', 'c1', '--network', 'n2', 'bb:latest', 'sleep', '600']);
    const calls = proxy.callsOf(CREATE_ENDPOINT).slice(earlier);
    t.diagnostic(`CreateEndpoint calls: ${calls.map((c) => `+${c.at}ms ${c.body.length} B -> ${c.status}${c.dropped ? ' (dropped)' : ''}`).join(', ')}`);
    assert.ok(calls.length >= 2 && calls[0]?.dropped === true, `dockerd retried after the dropped answer\n${explain()}`);
    // dockerd gives the next containers the lowest free addresses: if it forgot c1's endpoint,
    // c2 gets the address that endpoint still holds in the plugin.
    await ok(['run', '-d', '--name', 'c2', '--network', 'n2', 'bb:latest', 'sleep', '600']);
    await ok(['run', '-d', '--name', 'c3', '--network', 'n2', 'bb:latest', 'sleep', '600']);

    const net = [...readBooks(s.stateDir).networks.values()].find((n) => n.bridge === BRIDGE2);
    assert.ok(net, 'n2 booked');
    const eps = [...readBooks(s.stateDir).endpoints.values()].filter((e) => e.networkId === net.id);
    const dup = (key: 'ipv4' | 'mac') => eps.map((e) => e[key]).filter((v, i, all) => all.indexOf(v) !== i);
    assert.deepEqual(dup('ipv4'), [], `two endpoints booked with one address: ${eps.map((e) => `${e.id.slice(0, 12)} ${e.ipv4} ${e.mac}`).join('; ')}\n${explain()}`);
    assert.deepEqual(dup('mac'), [], 'two endpoints booked with one MAC');
    const running = (await ok(['ps', '-q', '--filter', 'network=n2'])).split('\n').filter((l) => l !== '');
    assert.equal(eps.length, running.length, `one booked endpoint per running container (${running.length}), no orphan\n${explain()}`);
    const ports = (await ipLinks(s.ns)).filter((l) => l.master === BRIDGE2);
    assert.equal(ports.length, running.length, `one veth on ${BRIDGE2} per running container: ${ports.map((l) => l.ifname).join(', ')}`);
    assert.equal((await s.docker(['exec', 'c2', 'ping', '-c', '1', '-W', '3', 'c3'])).code, 0, `c2 reaches c3\n${explain()}`);
    assert.equal(first.code, 0, `docker run failed after a lost CreateEndpoint answer: ${first.stderr.trim()}\n${explain()}`);
    assert.equal((await s.docker(['exec', 'c2', 'ping', '-c', '1', '-W', '3', 'c1'])).code, 0, `c2 reaches c1\n${explain()}`);
  });

  await t.test('after removal nothing is left', async () => {
    // Whatever the steps above left (a step that failed may have left less).
    await s.docker(['rm', '-f', 'c1', 'c2', 'c3']);
    for (const n of ['n1', 'n2']) if (await hasNetwork(n)) await ok(['network', 'rm', n]);
    const books = readBooks(s.stateDir);
    assert.deepEqual([books.networks.size, books.endpoints.size, books.intents], [0, 0, 0], `books empty\n${explain()}`);
    const links = (await ipLinks(s.ns)).filter((l) => l.linkinfo?.info_kind === 'veth' || l.linkinfo?.info_kind === 'bridge');
    assert.deepEqual(links.map((l) => l.ifname), [], 'no veth or bridge left');
    const rules = (await iptablesSave(s.ns)).filter((l) => l.startsWith('-A ') && (l.includes('bb:') || /198\.18\.6[01]\./.test(l)));
    assert.deepEqual(rules, [], 'no rule of ours left');
  });
});
