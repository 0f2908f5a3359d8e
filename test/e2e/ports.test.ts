// End-to-end: published ports, NAT, ICC, internal networks, isolation and IPv6 through a real
// dockerd (20.10) using the plugin, checked with real traffic. One stack for the whole file (it
// takes a few seconds to start); each step cleans up what it made.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createExternalPeer, type Netns } from '../helpers/netns.js';
import { PLUGIN_BIN } from '../helpers/plugin.js';
import { eventually, run } from '../helpers/proc.js';
import { containerIp, kernelLeftovers, startStack, type Stack } from '../helpers/stack.js';

const HOST = '198.19.255.1';
const PEER = '198.19.255.2';
const HTTPD = ['httpd', '-f', '-p', '80', '-h', '/www'];

function curl(ns: Netns, url: string): Promise<{ code: number; stdout: string }> {
  return ns.exec(['curl', '-s', '-g', '--max-time', '3', url], { timeoutMs: 15_000 });
}

/** HTTP GET from inside a container with busybox nc (its wget crashes here). */
function ncGet(s: Stack, ctr: string, host: string, port: number): Promise<{ code: number; stdout: string }> {
  return s.docker(['exec', ctr, 'sh', '-c', `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 ${host} ${port}`]);
}

async function ports(s: Stack): Promise<string[]> {
  const r = await run(['node', PLUGIN_BIN, 'ports', '--name', s.pluginName, '--socket-dir', '/run/docker/plugins']);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.split('\n').filter((l) => l !== '');
}

test('published ports, NAT, ICC, internal, isolation, IPv6', { timeout: 240_000 }, async (t) => {
  const s = await startStack(t);
  const peer = s.scope.add(await createExternalPeer(s.ns));
  const d = s.pluginName;
  const ok = (args: string[]) => s.dockerOk(args);

  await ok(['network', 'create', '-d', d, '--subnet', '198.18.20.0/24', 'n1']);
  await ok(['network', 'create', '-d', d, '--subnet', '198.18.21.0/24', 'n2']);
  await ok(['run', '-d', '--name', 'web', '--network', 'n1', '-p', '18080:80', 'bb:latest', ...HTTPD]);
  await ok(['run', '-d', '--name', 'c1', '--network', 'n1', 'bb:latest', 'sleep', '600']);
  await ok(['run', '-d', '--name', 'c2', '--network', 'n2', 'bb:latest', 'sleep', '600']);
  const webIp = await containerIp(s, 'web', 'n1');
  const c1Ip = await containerIp(s, 'c1', 'n1');

  await t.test('published port: from the external peer, the host (127.0.0.1 and its address), other containers', async () => {
    await eventually(async () => assert.match((await curl(peer.peer, `http://${HOST}:18080/`)).stdout, /hello from batchbridge/));
    assert.match((await curl(s.ns, 'http://127.0.0.1:18080/')).stdout, /hello from batchbridge/);
    assert.match((await curl(s.ns, `http://${HOST}:18080/`)).stdout, /hello from batchbridge/);
    assert.match((await ncGet(s, 'c1', HOST, 18080)).stdout, /hello from batchbridge/, 'hairpin from the same network');
    assert.match((await ncGet(s, 'c2', HOST, 18080)).stdout, /hello from batchbridge/, 'from another network through the host address');
    assert.ok((await ports(s)).includes(`tcp 0.0.0.0:18080 -> ${webIp}:80`), (await ports(s)).join('\n'));
  });

  await t.test('a second -p 18080:80 fails: port is already allocated', async () => {
    const r = await s.docker(['run', '-d', '--name', 'web2', '--network', 'n1', '-p', '18080:80', 'bb:latest', ...HTTPD]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /port is already allocated/);
    await s.docker(['rm', '-f', 'web2']);
  });

  await t.test('-p 80 gets an ephemeral port that `batchbridge ports` shows and that answers', async () => {
    await ok(['run', '-d', '--name', 'eph', '--network', 'n1', '-p', '80', 'bb:latest', ...HTTPD]);
    const ephIp = await containerIp(s, 'eph', 'n1');
    const line = (await ports(s)).find((l) => l.endsWith(`-> ${ephIp}:80`));
    assert.ok(line, 'binding listed');
    const port = Number(/^tcp 0\.0\.0\.0:(\d+) ->/.exec(line)?.[1]);
    assert.ok(port >= 1024, line);
    await eventually(async () => assert.match((await curl(peer.peer, `http://${HOST}:${port}/`)).stdout, /hello from batchbridge/));
    const json = await run(['node', PLUGIN_BIN, 'ports', '--name', d, '--json']);
    assert.ok((JSON.parse(json.stdout) as Array<{ hostPort: number }>).some((b) => b.hostPort === port));
    await ok(['rm', '-f', 'eph']);
    assert.notEqual((await curl(peer.peer, `http://${HOST}:${port}/`)).code, 0, 'gone after docker rm');
  });

  await t.test('containers reach the external peer through masquerade; networks are isolated', async () => {
    assert.equal((await s.docker(['exec', 'c1', 'ping', '-c', '1', '-W', '3', PEER])).code, 0);
    assert.notEqual((await s.docker(['exec', 'c2', 'ping', '-c', '1', '-W', '2', c1Ip])).code, 0, 'n2 reaches n1');
    assert.notEqual((await s.docker(['exec', 'c2', 'sh', '-c', `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 ${webIp} 80`])).stdout.includes('hello'), true, 'n2 reaches n1 directly');
  });

  await t.test('after docker rm the published port no longer answers', async () => {
    await ok(['rm', '-f', 'web']);
    assert.notEqual((await curl(peer.peer, `http://${HOST}:18080/`)).code, 0);
    assert.notEqual((await curl(s.ns, 'http://127.0.0.1:18080/')).stdout.includes('hello'), true);
  });

  await t.test('enable_icc=false blocks container to container, not container to gateway', async () => {
    await ok(['network', 'create', '-d', d, '--subnet', '198.18.22.0/24', '-o', 'com.docker.network.bridge.enable_icc=false', 'noicc']);
    await ok(['run', '-d', '--name', 'i1', '--network', 'noicc', 'bb:latest', ...HTTPD]);
    await ok(['run', '-d', '--name', 'i2', '--network', 'noicc', 'bb:latest', 'sleep', '600']);
    const i1 = await containerIp(s, 'i1', 'noicc');
    assert.equal((await s.docker(['exec', 'i2', 'ping', '-c', '1', '-W', '3', '198.18.22.1'])).code, 0, 'gateway');
    assert.notEqual((await s.docker(['exec', 'i2', 'ping', '-c', '1', '-W', '2', i1])).code, 0, 'icc');
    await ok(['rm', '-f', 'i1', 'i2']);
    await ok(['network', 'rm', 'noicc']);
  });

  await t.test('an internal network reaches nothing outside, its containers reach each other', async () => {
    await ok(['network', 'create', '-d', d, '--internal', '--subnet', '198.18.23.0/24', 'int']);
    await ok(['run', '-d', '--name', 'x1', '--network', 'int', 'bb:latest', 'sleep', '600']);
    await ok(['run', '-d', '--name', 'x2', '--network', 'int', 'bb:latest', 'sleep', '600']);
    const x2 = await containerIp(s, 'x2', 'int');
    assert.equal((await s.docker(['exec', 'x1', 'ping', '-c', '1', '-W', '3', x2])).code, 0);
    assert.notEqual((await s.docker(['exec', 'x1', 'ping', '-c', '1', '-W', '2', PEER])).code, 0, 'internal reached the peer');
    assert.notEqual((await s.docker(['exec', 'x1', 'ping', '-c', '1', '-W', '2', c1Ip])).code, 0, 'internal reached n1');
    await ok(['rm', '-f', 'x1', 'x2']);
    await ok(['network', 'rm', 'int']);
  });

  await t.test('IPv6 network: containers get addresses that reach each other', async () => {
    await ok(['network', 'create', '-d', d, '--ipv6', '--subnet', '198.18.24.0/24', '--subnet', 'fd00:20::/64', 'v6']);
    await ok(['run', '-d', '--name', 'y1', '--network', 'v6', 'bb:latest', 'sleep', '600']);
    await ok(['run', '-d', '--name', 'y2', '--network', 'v6', 'bb:latest', 'sleep', '600']);
    const out = await ok(['inspect', '-f', '{{(index .NetworkSettings.Networks "v6").GlobalIPv6Address}}', 'y2']);
    const y2 = out.trim();
    assert.match(y2, /^fd00:20::/);
    await eventually(async () => assert.equal((await s.docker(['exec', 'y1', 'ping', '-6', '-c', '1', '-W', '3', y2])).code, 0), { timeoutMs: 10_000 });
    await ok(['rm', '-f', 'y1', 'y2']);
    await ok(['network', 'rm', 'v6']);
  });

  await t.test('after all is removed no rule of ours mentions a container address', async () => {
    await ok(['rm', '-f', 'c1', 'c2']);
    await ok(['network', 'rm', 'n1', 'n2']);
    const left = await kernelLeftovers(s.ns, ['198.18.2', 'fd00:20', 'bb:ep=', 'bb:net=']);
    assert.deepEqual(left.rules, []);
    const v6 = (await s.ns.execOk(['ip6tables-save'])).split('\n').filter((l) => l.includes('bb:ep=') || l.includes('bb:net=') || l.includes('fd00:20'));
    assert.deepEqual(v6, []);
  });
});
