// End-to-end smoke tests: a private dockerd (20.10) inside a throw-away network namespace uses the
// batchbridge plugin (bin/batchbridge.js serve) through the real remote-driver protocol.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { DockerResult } from '../helpers/dockerd.js';
import { ipLinks, nsPing } from '../helpers/netns.js';
import { containerIp, kernelLeftovers, startStack, vethLinks, type Stack } from '../helpers/stack.js';

const TEST_TIMEOUT_MS = 300_000;

function fail(s: Stack, what: string, r: DockerResult): never {
  assert.fail(`${what} (exit code ${r.code})\n--- stdout ---\n${r.stdout.trimEnd()}\n--- stderr ---\n${r.stderr.trimEnd()}\n${s.explain()}`);
}

/** `docker exec <ctr> ping -c 1 -W 3 <target>` must succeed (one reply; ARP only delays it). */
async function containerPings(s: Stack, ctr: string, target: string): Promise<void> {
  const r = await s.docker(['exec', ctr, 'ping', '-c', '1', '-W', '3', target]);
  if (r.code !== 0) fail(s, `${ctr} cannot ping ${target}`, r);
}

async function nsPings(s: Stack, addr: string): Promise<void> {
  const r = await nsPing(s.ns, addr, { count: 1 });
  if (r.code !== 0) fail(s, `the dockerd namespace cannot ping ${addr}`, r);
}

async function bridgeNames(s: Stack): Promise<string[]> {
  return (await ipLinks(s.ns)).filter((l) => l.linkinfo?.info_kind === 'bridge').map((l) => l.ifname);
}

async function assertNothingLeft(s: Stack, needles: string[]): Promise<void> {
  const left = await kernelLeftovers(s.ns, needles);
  assert.deepEqual(left.links, [], `veth/bridge links left in ${s.ns.name}\n${s.explain()}`);
  assert.deepEqual(left.rules, [], `iptables rules left that mention ${needles.join(', ')}\n${s.explain()}`);
}

/**
 * dockerd log lines (after `offset`) reporting a failed plugin call (errors from Leave,
 * DeleteEndpoint, DeleteNetwork... never reach the CLI), except lines matching `expected`.
 */
function pluginErrorsInDockerdLog(s: Stack, offset: number, expected: RegExp[] = []): string[] {
  return s.dockerd.logSince(offset).split('\n')
    .filter((l) => /level=(warning|error|fatal)/.test(l) && /remote: |NetworkDriver\.|plugin/i.test(l))
    .filter((l) => !expected.some((re) => re.test(l)));
}

/** t.diagnostic with the time since the previous mark. */
function stopwatch(t: { diagnostic(msg: string): void }): (what: string) => void {
  let last = Date.now();
  return (what) => {
    const now = Date.now();
    t.diagnostic(`${what}: ${now - last} ms`);
    last = now;
  };
}

test('smoke: two networks, containers, options, connect/disconnect, clean removal', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const started = Date.now();
  const s = await startStack(t);
  const driver = s.pluginName;
  t.diagnostic(`setup (netns, plugin, dockerd, image) ${Date.now() - started} ms; driver ${driver}, netns ${s.ns.name}`);
  const logStart = s.dockerd.logSize();

  await s.dockerOk(['network', 'create', '-d', driver, '--subnet', '198.18.20.0/24',
    '-o', 'com.docker.network.driver.mtu=1400', '-o', 'com.docker.network.bridge.name=bbtest0', 'n1']);
  const n1Driver = (await s.dockerOk(['network', 'inspect', '-f', '{{.Driver}}', 'n1'])).trim();
  assert.equal(n1Driver, driver);

  await s.dockerOk(['run', '-d', '--network', 'n1', '--name', 'c1', 'bb:latest', 'sleep', '600']);
  await s.dockerOk(['run', '-d', '--network', 'n1', '--name', 'c2', 'bb:latest', 'sleep', '600']);
  const c1ip = await containerIp(s, 'c1', 'n1');
  const c2ip = await containerIp(s, 'c2', 'n1');
  assert.match(c1ip, /^198\.18\.20\.\d+$/, `c1 address on n1\n${s.explain()}`);
  assert.match(c2ip, /^198\.18\.20\.\d+$/, `c2 address on n1\n${s.explain()}`);

  // Container to container by name (embedded DNS), container to gateway, host to container.
  await containerPings(s, 'c2', 'c1');
  await containerPings(s, 'c2', '198.18.20.1');
  await nsPings(s, c1ip);

  // The bridge: our name, MTU option, up.
  const br = (await ipLinks(s.ns, ['bbtest0']))[0];
  assert.ok(br, `bridge bbtest0 exists\n${s.explain()}`);
  assert.equal(br.linkinfo?.info_kind, 'bridge');
  assert.equal(br.mtu, 1400, 'bridge MTU');
  assert.ok(br.flags.includes('UP'), `bridge flags ${br.flags.join(',')}`);
  // The container side: eth0 with the MTU option.
  const eth0 = await s.dockerOk(['exec', 'c1', 'ip', 'link', 'show', 'eth0']);
  assert.match(eth0, /mtu 1400\b/, `c1 eth0: ${eth0}`);
  assert.equal((await vethLinks(s.ns)).length, 2, 'one host-side veth per endpoint');

  // A bad option is refused, and leaves nothing behind.
  const bridgesBefore = await bridgeNames(s);
  const bad = await s.docker(['network', 'create', '-d', driver, '--subnet', '198.18.22.0/24',
    '-o', 'com.docker.network.driver.mtu=-2', 'nbad']);
  assert.notEqual(bad.code, 0, 'mtu=-2 must be refused');
  assert.match(bad.stderr, /invalid MTU/, `error for mtu=-2: ${bad.stderr}`);
  const nets = (await s.dockerOk(['network', 'ls', '--format', '{{.Name}}'])).split('\n');
  assert.ok(!nets.includes('nbad'), 'refused network is not listed');
  assert.deepEqual(await bridgeNames(s), bridgesBefore, 'a refused network creates no bridge');

  // connect / disconnect a second network on a running container.
  await s.dockerOk(['network', 'create', '-d', driver, '--subnet', '198.18.21.0/24', 'n2']);
  const n2Bridges = (await bridgeNames(s)).filter((b) => !bridgesBefore.includes(b));
  assert.equal(n2Bridges.length, 1, `n2 got its own bridge (${n2Bridges.join(',')})`);
  await s.dockerOk(['network', 'connect', 'n2', 'c1']);
  const c1ip2 = await containerIp(s, 'c1', 'n2');
  assert.match(c1ip2, /^198\.18\.21\.\d+$/, `c1 address on n2\n${s.explain()}`);
  const addrsConnected = await s.dockerOk(['exec', 'c1', 'ip', '-o', 'addr', 'show']);
  assert.ok(addrsConnected.includes(`${c1ip2}/24`), `c1 has ${c1ip2}/24 after connect:\n${addrsConnected}`);
  await containerPings(s, 'c1', '198.18.21.1');
  assert.equal((await vethLinks(s.ns)).length, 3, 'a veth for the new endpoint');

  await s.dockerOk(['network', 'disconnect', 'n2', 'c1']);
  const addrsDisconnected = await s.dockerOk(['exec', 'c1', 'ip', '-o', 'addr', 'show']);
  assert.ok(!addrsDisconnected.includes(`${c1ip2}/`), `c1 lost ${c1ip2} after disconnect:\n${addrsDisconnected}`);
  assert.equal(await containerIp(s, 'c1', 'n2'), '');
  assert.equal((await vethLinks(s.ns)).length, 2, `the disconnected endpoint's veth is deleted\n${s.explain()}`);
  await containerPings(s, 'c2', 'c1');

  // Remove everything; nothing of ours may remain in the namespace.
  await s.dockerOk(['rm', '-f', 'c1', 'c2']);
  await s.dockerOk(['network', 'rm', 'n1', 'n2']);
  assert.deepEqual(await vethLinks(s.ns), [], `no veth after docker rm -f\n${s.explain()}`);
  await assertNothingLeft(s, [c1ip, c2ip, c1ip2, '198.18.20.0/24', '198.18.21.0/24', 'bbtest0', ...n2Bridges]);
  assert.deepEqual(pluginErrorsInDockerdLog(s, logStart, [/invalid MTU number: -2/]), [],
    `dockerd logged failed plugin calls\n${s.explain()}`);
  t.diagnostic(`whole test ${Date.now() - started} ms`);
});

test('plugin killed with SIGKILL and restarted with the same state dir', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const started = Date.now();
  const mark = stopwatch(t);
  const s = await startStack(t);
  const driver = s.pluginName;
  mark(`setup: driver ${driver}, netns ${s.ns.name}, state ${s.stateDir}`);
  const logStart = s.dockerd.logSize();

  await s.dockerOk(['network', 'create', '-d', driver, '--subnet', '198.18.30.0/24',
    '-o', 'com.docker.network.bridge.name=bbtest1', 'n1']);
  await s.dockerOk(['run', '-d', '--network', 'n1', '--name', 'c1', 'bb:latest', 'sleep', '600']);
  await s.dockerOk(['run', '-d', '--network', 'n1', '--name', 'c2', 'bb:latest', 'sleep', '600']);
  const c1ip = await containerIp(s, 'c1', 'n1');
  const c2ip = await containerIp(s, 'c2', 'n1');
  await containerPings(s, 'c2', 'c1');
  mark('network + 2 containers');

  // kill -9 while the containers run.
  const old = s.plugin;
  assert.ok(old.kill('SIGKILL'));
  const exit = await old.waitExit(10_000);
  assert.equal(exit.signal, 'SIGKILL');
  // The data path does not depend on the plugin process.
  await containerPings(s, 'c2', c1ip);

  const p2 = await s.restartPlugin();
  assert.notEqual(p2.pid, old.pid);
  mark(`kill -9 and restart (pid ${old.pid} -> ${p2.pid})`);

  // Restart (and its reconcile) must not disturb the running containers.
  await containerPings(s, 'c2', 'c1');
  await containerPings(s, 'c1', c2ip);
  await containerPings(s, 'c1', '198.18.30.1');
  await nsPings(s, c1ip);
  const br = (await ipLinks(s.ns, ['bbtest1']))[0];
  assert.ok(br && br.flags.includes('UP'), `bridge bbtest1 still up after restart\n${s.explain()}`);
  assert.equal((await vethLinks(s.ns)).length, 2, `both endpoints' veths survive the restart\n${s.explain()}`);
  mark('traffic after restart');

  // A new container joins the old network through the new plugin process.
  await s.dockerOk(['run', '-d', '--network', 'n1', '--name', 'c3', 'bb:latest', 'sleep', '600']);
  const c3ip = await containerIp(s, 'c3', 'n1');
  assert.match(c3ip, /^198\.18\.30\.\d+$/);
  assert.ok(![c1ip, c2ip].includes(c3ip), 'c3 got a fresh address');
  await containerPings(s, 'c3', 'c1');
  await containerPings(s, 'c1', c3ip);
  await nsPings(s, c3ip);
  mark('c3 joins');

  // Endpoints created before the restart are removed cleanly by the new process.
  const beforeRm = s.dockerd.logSize();
  await s.dockerOk(['rm', '-f', 'c1', 'c2']);
  assert.deepEqual(pluginErrorsInDockerdLog(s, beforeRm), [], `removing c1/c2: dockerd logged failed plugin calls\n${s.explain()}`);
  assert.equal((await vethLinks(s.ns)).length, 1, `only c3's veth is left\n${s.explain()}`);
  const rulesAfterRm = await kernelLeftovers(s.ns, [c1ip, c2ip]);
  assert.deepEqual(rulesAfterRm.rules, [], `rules for removed containers\n${s.explain()}`);
  await containerPings(s, 'c3', '198.18.30.1');
  mark('rm -f c1 c2');

  await s.dockerOk(['rm', '-f', 'c3']);
  await s.dockerOk(['network', 'rm', 'n1']);
  await assertNothingLeft(s, [c1ip, c2ip, c3ip, '198.18.30.0/24', 'bbtest1']);
  assert.deepEqual(pluginErrorsInDockerdLog(s, logStart), [], `dockerd logged failed plugin calls\n${s.explain()}`);
  mark('remove all, check leftovers');
  t.diagnostic(`whole test ${Date.now() - started} ms`);
});
