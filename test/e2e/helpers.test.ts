// Self-test of the e2e helpers against Docker's built-in bridge driver (the reference) and a fake
// plugin, independent of batchbridge: namespaces, the external peer, a private dockerd, the busybox
// image, the plugin process/socket handling, and that closing everything leaves nothing behind.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { Scope, liveResources } from '../helpers/cleanup.js';
import { BUSYBOX_INDEX_HTML, buildBusyboxImage, startDockerd } from '../helpers/dockerd.js';
import { createExternalPeer, createNetns, ipLinks, listNetns, nsPing } from '../helpers/netns.js';
import { PLUGIN_SOCKET_DIR, randomPluginName, startPlugin } from '../helpers/plugin.js';
import { isAlive, mountsUnder, pidsMentioning } from '../helpers/proc.js';

const FAKE_PLUGIN = fileURLToPath(new URL('../helpers/fake-plugin.js', import.meta.url));

test('helpers: netns, external peer, dockerd + built-in bridge, plugin process; nothing left behind', { timeout: 180_000 }, async (t) => {
  const scope = new Scope();
  t.after(() => scope.close());

  const ns = scope.add(await createNetns());
  const ext = scope.add(await createExternalPeer(ns));
  assert.ok((await listNetns()).includes(ns.name));
  assert.equal((await nsPing(ns, ext.peerAddr)).code, 0, 'test namespace reaches the external peer');

  // Plugin process handling, with a fake plugin: ready check, call(), kill -9, restart on a stale socket.
  const name = randomPluginName();
  const p1 = scope.add(await startPlugin({ ns, name, bin: FAKE_PLUGIN }));
  const caps = await p1.call('GetCapabilities');
  assert.deepEqual(caps, { status: 200, json: { Scope: 'local', ConnectivityScope: 'local' }, text: '{"Scope":"local","ConnectivityScope":"local"}' });
  assert.ok(p1.kill('SIGKILL'));
  assert.deepEqual(await p1.waitExit(5_000), { code: null, signal: 'SIGKILL' });
  assert.ok(existsSync(p1.socketPath), 'kill -9 leaves a stale socket');
  const p2 = scope.add(await startPlugin({ ns, name, bin: FAKE_PLUGIN, stateDir: p1.stateDir }));
  await p1.stop(); // must not remove the socket now owned by p2
  assert.ok(existsSync(p2.socketPath));
  assert.equal((await p2.activate()).status, 200);

  const d = scope.add(await startDockerd(ns));
  await buildBusyboxImage(d);
  await d.dockerOk(['network', 'create', '-d', 'bridge', '--subnet', '198.18.40.0/24',
    '-o', 'com.docker.network.bridge.name=bbref0', '-o', 'com.docker.network.driver.mtu=1400', 'r1']);
  await d.dockerOk(['run', '-d', '--network', 'r1', '--name', 'web', 'bb:latest', 'httpd', '-f', '-p', '80', '-h', '/www']);
  await d.dockerOk(['run', '-d', '--network', 'r1', '--name', 'c2', 'bb:latest', 'sleep', '600']);
  await d.dockerOk(['exec', 'c2', 'ping', '-c', '2', '-W', '3', 'web']);
  const http = await d.dockerOk(['exec', 'c2', 'sh', '-c', "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 web 80"]);
  assert.match(http, new RegExp(BUSYBOX_INDEX_HTML));
  // Masquerade by the reference driver: the peer has no route back to 198.18.40.0/24.
  await d.dockerOk(['exec', 'c2', 'ping', '-c', '2', '-W', '3', ext.peerAddr]);
  const webIp = (await d.dockerOk(['inspect', '-f', '{{(index .NetworkSettings.Networks "r1").IPAddress}}', 'web'])).trim();
  assert.equal((await nsPing(ns, webIp)).code, 0, 'namespace reaches the container');
  assert.match(await d.dockerOk(['exec', 'web', 'ip', 'link', 'show', 'eth0']), /mtu 1400/);
  const br = (await ipLinks(ns, ['bbref0']))[0];
  assert.equal(br?.linkinfo?.info_kind, 'bridge');
  assert.ok(br?.flags.includes('UP'));
  assert.equal((await d.docker(['run', '--rm', '--network', 'r1', 'bb:latest', 'true'])).code, 0);

  // Tear down with containers still running and the network still present: the helpers must cope.
  const { dir, pid, containerdPid } = d;
  assert.ok(containerdPid !== undefined && isAlive(containerdPid), 'containerd pid identified');
  const started = Date.now();
  await scope.close();
  t.diagnostic(`teardown took ${Date.now() - started} ms`);

  assert.ok(!isAlive(pid), 'dockerd is gone');
  assert.ok(!isAlive(containerdPid), 'containerd is gone');
  assert.deepEqual(pidsMentioning(dir), [], 'no shim or other process refers to the dockerd dir');
  assert.deepEqual(mountsUnder(dir), [], 'nothing mounted under the dockerd dir');
  assert.ok(!existsSync(dir), 'dockerd dir removed');
  assert.ok(!existsSync(p2.socketPath), 'plugin socket removed');
  assert.ok(!existsSync(p2.stateDir), 'plugin-owned state dir removed');
  assert.ok(!isAlive(p2.pid), 'plugin process gone');
  const left = await listNetns();
  assert.ok(!left.includes(ns.name) && !left.includes(ext.peer.name), `namespaces deleted (left: ${left.join(' ')})`);
  assert.deepEqual(liveResources(), [], 'registry empty');
  assert.ok(existsSync(PLUGIN_SOCKET_DIR));
});
