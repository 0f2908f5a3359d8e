// The CNI front end over the real engine, with the fake kernel at the tool boundary (pod
// namespaces included): what each verb does to the books and the kernel, what it answers, and
// that every failure leaves nothing. The same behaviour against the real kernel and the real
// executable is in test/netns/cni-exec-batchbridge*.test.ts.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { createCniHandler } from '../../src/cni/adapter.js';
import type { CniAnswer } from '../../src/cni/handler.js';
import { rig, netReq, silent, type Rig } from './driver-rig.js';

const SOCKET = '/run/bbt-unit/cni.sock';

interface Cni {
  rig: Rig;
  call(command: string, env: Record<string, string>, conf: Record<string, unknown>): Promise<CniAnswer & { json: Record<string, unknown> | null }>;
  /** a pod namespace: a file (so the path exists) and the fake's namespace */
  pod(name: string): string;
}

async function setup(t: TestContext, opts: { holderVanishWaitMs?: number } = {}): Promise<Cni> {
  const r = rig(t, { holderVanishWaitMs: opts.holderVanishWaitMs ?? 50 });
  // what serve does at start: our chains and hooks in place
  await r.engine.syncFirewall();
  const handler = createCniHandler({ engine: r.engine, tools: r.kernel.tools, log: silent, socketPath: SOCKET });
  return {
    rig: r,
    async call(command, env, conf) {
      const a = await handler({ env: { CNI_COMMAND: command, CNI_PATH: '/opt/cni/bin', CNI_IFNAME: 'eth0', ...env }, stdin: Buffer.from(JSON.stringify(conf)) });
      const text = a.stdout.toString();
      return { ...a, json: text.trim() === '' ? null : (JSON.parse(text) as Record<string, unknown>) };
    },
    pod(name) {
      const path = join(r.dir, name);
      writeFileSync(path, '');
      r.kernel.addPod(path);
      return path;
    },
  };
}

function conf(extra: Record<string, unknown> = {}, ipam: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    cniVersion: '1.0.0',
    name: 'unitnet',
    type: 'batchbridge-cni',
    socket: SOCKET,
    bridge: 'bbunit0',
    isGateway: true,
    isDefaultGateway: true,
    ipMasq: true,
    ipam: { type: 'batchbridge', ranges: [[{ subnet: '198.18.64.0/24' }]], ...ipam },
    capabilities: { portMappings: true, ips: true, mac: true },
    ...extra,
  };
}

const ports = (...hostPorts: number[]) => ({ runtimeConfig: { portMappings: hostPorts.map((p) => ({ hostPort: p, containerPort: 80, protocol: 'tcp' })) } });

function errorCode(a: { exitCode: number; json: Record<string, unknown> | null }): number {
  assert.equal(a.exitCode, 1, `failed: ${JSON.stringify(a.json)}`);
  return a.json?.code as number;
}

test('ADD: container end in the pod with address, MAC, up and default route; the result names bridge, host veth, container', async (t) => {
  const c = await setup(t);
  const ns = c.pod('pod1');
  const a = await c.call('ADD', { CNI_CONTAINERID: 'c1', CNI_NETNS: ns }, conf({ mtu: 1400 }));
  assert.equal(a.exitCode, 0, JSON.stringify(a.json));
  const res = a.json as { interfaces: Array<Record<string, unknown>>; ips: Array<Record<string, unknown>>; routes: unknown[] };
  assert.equal(res.interfaces.length, 3);
  assert.deepEqual(res.interfaces[0], { name: 'bbunit0', mac: c.rig.kernel.link('bbunit0').mac });
  const host = res.interfaces[1] as { name: string; mac: string };
  assert.equal(c.rig.kernel.link(host.name).mac, host.mac, 'the host veth MAC reported is the kernel one');
  assert.equal(c.rig.kernel.link(host.name).master, 'bbunit0');
  const eth0 = c.rig.kernel.pod(ns).links.get('eth0');
  assert.ok(eth0?.up, 'container end up');
  assert.deepEqual(eth0.addrs, ['198.18.64.2/24']);
  assert.equal(eth0.mtu, 1400);
  assert.deepEqual(res.interfaces[2], { name: 'eth0', mac: eth0.mac, sandbox: ns });
  assert.deepEqual(res.ips, [{ interface: 2, address: '198.18.64.2/24', gateway: '198.18.64.1' }]);
  assert.deepEqual(c.rig.kernel.pod(ns).routes, [{ dst: '0.0.0.0/0', via: '198.18.64.1', dev: 'eth0' }]);
  assert.deepEqual(res.routes, [{ dst: '0.0.0.0/0', gw: '198.18.64.1' }]);
  const ep = [...c.rig.engine.books.endpoints.values()][0];
  assert.deepEqual(ep?.sandbox, { containerId: 'c1', netns: ns });
  assert.equal(c.rig.engine.books.networks.get(ep?.networkId ?? '')?.cniName, 'unitnet');
  // the container end's name is the pod's business, never reserved in our namespace
  assert.equal(c.rig.engine.books.isNameTaken('eth0'), false);
});

test('results come in the version asked for (0.3.1 has ips[].version; 1.1.0 interface mtu)', async (t) => {
  const c = await setup(t);
  const a = await c.call('ADD', { CNI_CONTAINERID: 'c1', CNI_NETNS: c.pod('p1') }, conf({ cniVersion: '0.3.1', mtu: 1400 }));
  assert.equal((a.json as { cniVersion: string }).cniVersion, '0.3.1');
  assert.equal((a.json as { ips: Array<{ version: string }> }).ips[0]?.version, '4');
  const b = await c.call('ADD', { CNI_CONTAINERID: 'c2', CNI_NETNS: c.pod('p2') }, conf({ cniVersion: '1.1.0', mtu: 1400 }));
  assert.equal((b.json as { interfaces: Array<{ mtu?: number }> }).interfaces[2]?.mtu, 1400);
});

test('32 concurrent ADDs: distinct addresses, veths made in shared batches', async (t) => {
  const c = await setup(t);
  const before = c.rig.kernel.batches.length;
  const answers = await Promise.all(Array.from({ length: 32 }, (_, i) => c.call('ADD', { CNI_CONTAINERID: `c${i}`, CNI_NETNS: c.pod(`p${i}`) }, conf())));
  for (const a of answers) assert.equal(a.exitCode, 0, JSON.stringify(a.json));
  const addrs = answers.map((a) => (a.json as { ips: Array<{ address: string }> }).ips[0]?.address);
  assert.equal(new Set(addrs).size, 32, 'every pod its own address');
  const vethBatches = c.rig.kernel.batches.slice(before).filter((b) => b.ops.some((o) => o.ip?.some((op) => op.kind === 'veth-create')));
  assert.ok(vethBatches.length < 8, `32 veth creations in ${vethBatches.length} batches`);
});

test('in-pod setups run in batches of their own, beside the host-side veth scripts: one per pod, none mixed', async (t) => {
  const c = await setup(t);
  const before = c.rig.kernel.batches.length;
  const pods = Array.from({ length: 16 }, (_, i) => c.pod(`p${i}`));
  const answers = await Promise.all(pods.map((ns, i) => c.call('ADD', { CNI_CONTAINERID: `c${i}`, CNI_NETNS: ns }, conf(ports(18100 + i)))));
  for (const a of answers) assert.equal(a.exitCode, 0, JSON.stringify(a.json));
  const kinds = (b: (typeof c.rig.kernel.batches)[number]) => new Set(b.ops.flatMap((o) => (o.ip ?? []).map((op) => op.kind)));
  const batches = c.rig.kernel.batches.slice(before);
  const setups = batches.filter((b) => kinds(b).has('sandbox-setup'));
  assert.ok(setups.length > 0);
  for (const b of setups) assert.deepEqual([...kinds(b)], ['sandbox-setup'], 'an in-pod setup never holds a veth batch');
  assert.equal(setups.reduce((n, b) => n + b.ops.length, 0), 16, 'one setup per pod');
  for (const ns of pods) assert.equal(c.rig.kernel.pod(ns).links.get('eth0')?.up, true);
});

test('an in-pod failure while the ports are programmed beside it: 105, the rules taken back, the port free again', async (t) => {
  const c = await setup(t);
  // the network first (its rules stay), then what a failed ADD must not leave
  const ns0 = c.pod('p0');
  assert.equal((await c.call('ADD', { CNI_CONTAINERID: 'c0', CNI_NETNS: ns0 }, conf())).exitCode, 0);
  assert.equal((await c.call('DEL', { CNI_CONTAINERID: 'c0', CNI_NETNS: ns0 }, conf())).exitCode, 0);
  const base = c.rig.kernel.ruleCount();
  c.rig.kernel.faults = { ipLine: (l) => (l.startsWith('[pod] route add') ? 'RTNETLINK answers: Network is unreachable' : null) };
  const a = await c.call('ADD', { CNI_CONTAINERID: 'c1', CNI_NETNS: c.pod('p1') }, conf(ports(18090)));
  assert.equal(errorCode(a), 105);
  assert.equal(c.rig.kernel.ruleCount(), base, 'no rule of the failed ADD stays');
  assert.equal(c.rig.engine.books.endpoints.size, 0);
  assert.deepEqual([...c.rig.kernel.links.keys()], ['bbunit0']);
  c.rig.kernel.faults = {};
  assert.equal((await c.call('ADD', { CNI_CONTAINERID: 'c2', CNI_NETNS: c.pod('p2') }, conf(ports(18090)))).exitCode, 0, 'the host port is free again');
});

test('DEL is idempotent: twice, with an empty CNI_NETNS, for a gone namespace, for a container never added', async (t) => {
  const c = await setup(t);
  const ns = c.pod('p1');
  assert.equal((await c.call('ADD', { CNI_CONTAINERID: 'c1', CNI_NETNS: ns }, conf(ports(18080)))).exitCode, 0);
  assert.ok(c.rig.kernel.ruleCount() > 0);
  const rulesWithPort = c.rig.kernel.ruleCount();
  assert.equal((await c.call('DEL', { CNI_CONTAINERID: 'c1', CNI_NETNS: ns }, conf(ports(18080)))).exitCode, 0);
  assert.equal(c.rig.engine.books.endpoints.size, 0);
  assert.deepEqual([...c.rig.kernel.links.keys()], ['bbunit0'], 'only the bridge stays');
  assert.ok(c.rig.kernel.ruleCount() < rulesWithPort, 'the port rules went');
  assert.equal(c.rig.kernel.pod(ns).links.size, 0, 'the container end went with the veth');
  assert.equal((await c.call('DEL', { CNI_CONTAINERID: 'c1', CNI_NETNS: '' }, conf())).exitCode, 0);
  assert.equal((await c.call('DEL', { CNI_CONTAINERID: 'never', CNI_NETNS: '/nonexistent/ns' }, conf())).exitCode, 0);
  // a namespace that died first took both veth ends: DEL unbooks and frees the port
  const ns2 = c.pod('p2');
  assert.equal((await c.call('ADD', { CNI_CONTAINERID: 'c2', CNI_NETNS: ns2 }, conf(ports(18080)))).exitCode, 0);
  c.rig.kernel.removePod(ns2);
  assert.equal((await c.call('DEL', { CNI_CONTAINERID: 'c2', CNI_NETNS: ns2 }, conf())).exitCode, 0);
  assert.equal(c.rig.engine.books.endpoints.size, 0);
  assert.equal((await c.call('ADD', { CNI_CONTAINERID: 'c3', CNI_NETNS: c.pod('p3') }, conf(ports(18080)))).exitCode, 0, 'the port is free again');
});

test('a host port taken by another pod fails the ADD with 103 and leaves nothing; the address is free again', async (t) => {
  const c = await setup(t);
  assert.equal((await c.call('ADD', { CNI_CONTAINERID: 'c1', CNI_NETNS: c.pod('p1') }, conf(ports(18081)))).exitCode, 0);
  const links = [...c.rig.kernel.links.keys()].sort();
  const rules = c.rig.kernel.ruleCount();
  const ns2 = c.pod('p2');
  const a = await c.call('ADD', { CNI_CONTAINERID: 'c2', CNI_NETNS: ns2 }, conf(ports(18081)));
  assert.equal(errorCode(a), 103);
  assert.match(a.json?.msg as string, /18081.*already allocated/);
  assert.deepEqual([...c.rig.kernel.links.keys()].sort(), links, 'no veth left');
  assert.equal(c.rig.kernel.pod(ns2).links.size, 0, 'nothing in the pod');
  assert.equal(c.rig.kernel.ruleCount(), rules, 'no rule left');
  assert.equal(c.rig.engine.books.endpoints.size, 1);
  // The failed ADD had taken .3; it is free again (a new pod may ask for it).
  const b = await c.call('ADD', { CNI_CONTAINERID: 'c3', CNI_NETNS: c.pod('p3') }, conf({ runtimeConfig: { ips: ['198.18.64.3'] } }));
  assert.equal(b.exitCode, 0, JSON.stringify(b.json));
  assert.equal((b.json as { ips: Array<{ address: string }> }).ips[0]?.address, '198.18.64.3/24');
});

test('a failure inside the pod namespace deletes the veth again (105) and books nothing', async (t) => {
  const c = await setup(t);
  c.rig.kernel.faults = { ipLine: (l) => (l.startsWith('[pod] route add') ? 'RTNETLINK answers: Network is unreachable' : null) };
  const ns = c.pod('p1');
  const a = await c.call('ADD', { CNI_CONTAINERID: 'c1', CNI_NETNS: ns }, conf());
  assert.equal(errorCode(a), 105);
  assert.match(a.json?.msg as string, /failed to configure eth0: in .*p1: RTNETLINK answers: Network is unreachable \(route add 0\.0\.0\.0\/0 via 198\.18\.64\.1 dev eth0\)/);
  assert.deepEqual([...c.rig.kernel.links.keys()], ['bbunit0']);
  assert.equal(c.rig.kernel.pod(ns).links.size, 0);
  assert.equal(c.rig.engine.books.endpoints.size, 0);
});

test('an interface of that name already in the namespace: 102, nothing made; a duplicate ADD: 102', async (t) => {
  const c = await setup(t);
  const ns = c.pod('p1');
  c.rig.kernel.pod(ns).links.set('eth0', { name: 'eth0', kind: 'other', master: null, up: true, mtu: 1500, txqlen: 0, peer: null, addrs: [], group: 0, mac: null });
  const a = await c.call('ADD', { CNI_CONTAINERID: 'c1', CNI_NETNS: ns }, conf());
  assert.equal(errorCode(a), 102);
  assert.match(a.json?.msg as string, /interface eth0 already exists in .*p1/);
  assert.deepEqual([...c.rig.kernel.links.keys()], ['bbunit0']);
  const ns2 = c.pod('p2');
  assert.equal((await c.call('ADD', { CNI_CONTAINERID: 'c2', CNI_NETNS: ns2 }, conf())).exitCode, 0);
  const again = await c.call('ADD', { CNI_CONTAINERID: 'c2', CNI_NETNS: ns2 }, conf());
  assert.equal(errorCode(again), 102);
  assert.match(again.json?.msg as string, /container c2 already has interface eth0 on network "unitnet": DEL it first/);
});

test('a missing namespace or the daemon\'s own: code 4, nothing made', async (t) => {
  const c = await setup(t);
  const a = await c.call('ADD', { CNI_CONTAINERID: 'c1', CNI_NETNS: '/nonexistent/netns' }, conf());
  assert.equal(errorCode(a), 4);
  assert.match(a.json?.msg as string, /CNI_NETNS \/nonexistent\/netns cannot be opened: ENOENT/);
  const b = await c.call('ADD', { CNI_CONTAINERID: 'c1', CNI_NETNS: '/proc/self/ns/net' }, conf());
  assert.equal(errorCode(b), 4);
  assert.match(b.json?.msg as string, /daemon's own network namespace/);
  assert.equal(c.rig.engine.books.networks.size, 0, 'refused before the network was made');
});

test('the range runs out: 109 naming it; rangeStart/rangeEnd bound the choice', async (t) => {
  const c = await setup(t);
  const small = conf({}, { ranges: [[{ subnet: '198.18.64.0/24', rangeStart: '198.18.64.10', rangeEnd: '198.18.64.11' }]] });
  const got: string[] = [];
  for (const i of [1, 2]) {
    const a = await c.call('ADD', { CNI_CONTAINERID: `c${i}`, CNI_NETNS: c.pod(`p${i}`) }, small);
    got.push((a.json as { ips: Array<{ address: string }> }).ips[0]?.address ?? '');
  }
  assert.deepEqual(got, ['198.18.64.10/24', '198.18.64.11/24']);
  const a = await c.call('ADD', { CNI_CONTAINERID: 'c3', CNI_NETNS: c.pod('p3') }, small);
  assert.equal(errorCode(a), 109);
  assert.match(a.json?.msg as string, /no free IPv4 address in range 198\.18\.64\.10-198\.18\.64\.11/);
});

test('requested addresses and MAC (runtimeConfig, CNI_ARGS); an address a live pod holds: 108', async (t) => {
  const c = await setup(t);
  const a = await c.call('ADD', { CNI_CONTAINERID: 'c1', CNI_NETNS: c.pod('p1') }, conf({ runtimeConfig: { ips: ['198.18.64.77'], mac: '02:00:00:00:00:77' } }));
  assert.equal((a.json as { ips: Array<{ address: string }> }).ips[0]?.address, '198.18.64.77/24');
  assert.equal((a.json as { interfaces: Array<{ mac: string }> }).interfaces[2]?.mac, '02:00:00:00:00:77');
  const b = await c.call('ADD', { CNI_CONTAINERID: 'c2', CNI_NETNS: c.pod('p2'), CNI_ARGS: 'IgnoreUnknown=1;IP=198.18.64.77;K8S_POD_NAME=x' }, conf());
  assert.equal(errorCode(b), 108);
  assert.match(b.json?.msg as string, /Address 198\.18\.64\.77 is in use/);
  const d = await c.call('ADD', { CNI_CONTAINERID: 'c3', CNI_NETNS: c.pod('p3'), CNI_ARGS: 'IgnoreUnknown=1;IP=198.18.64.78;MAC=02:00:00:00:00:78' }, conf());
  assert.equal((d.json as { ips: Array<{ address: string }> }).ips[0]?.address, '198.18.64.78/24');
  assert.equal((d.json as { interfaces: Array<{ mac: string }> }).interfaces[2]?.mac, '02:00:00:00:00:78');
});

test('Docker and CNI networks share the books: a subnet or bridge used by one is refused for the other', async (t) => {
  const c = await setup(t);
  await c.rig.driver.createNetwork(netReq('dockernet0000000000001', '198.18.64.0/24'));
  const a = await c.call('ADD', { CNI_CONTAINERID: 'c1', CNI_NETNS: c.pod('p1') }, conf());
  assert.equal(errorCode(a), 101);
  assert.match(a.json?.msg as string, /conflicts with network dockernet0000000000001/);
  assert.equal((await c.call('ADD', { CNI_CONTAINERID: 'c1', CNI_NETNS: c.pod('p2') }, conf({}, { ranges: [[{ subnet: '198.18.65.0/24' }]] }))).exitCode, 0);
  await assert.rejects(c.rig.driver.createNetwork(netReq('dockernet0000000000002', '198.18.65.0/24')), /conflicts with network/);
});

test('a changed config: refused (101) while attachments remain, made again once they are gone', async (t) => {
  const c = await setup(t);
  const ns = c.pod('p1');
  assert.equal((await c.call('ADD', { CNI_CONTAINERID: 'c1', CNI_NETNS: ns }, conf())).exitCode, 0);
  const a = await c.call('ADD', { CNI_CONTAINERID: 'c2', CNI_NETNS: c.pod('p2') }, conf({ mtu: 1400 }));
  assert.equal(errorCode(a), 101);
  assert.match(a.json?.msg as string, /network "unitnet" exists with a different configuration \(mtu\) and still has 1 attachment/);
  assert.equal((await c.call('DEL', { CNI_CONTAINERID: 'c1', CNI_NETNS: ns }, conf())).exitCode, 0);
  assert.equal((await c.call('ADD', { CNI_CONTAINERID: 'c2', CNI_NETNS: c.pod('p3') }, conf({ mtu: 1400 }))).exitCode, 0);
  assert.equal(c.rig.kernel.link('bbunit0').mtu, 1400);
});

test('CHECK passes after ADD and names what is missing after damage (106)', async (t) => {
  const c = await setup(t);
  const ns = c.pod('p1');
  const cfg = conf(ports(18082));
  const add = await c.call('ADD', { CNI_CONTAINERID: 'c1', CNI_NETNS: ns }, cfg);
  const withPrev = { ...cfg, prevResult: add.json };
  const good = await c.call('CHECK', { CNI_CONTAINERID: 'c1', CNI_NETNS: ns }, withPrev);
  assert.equal(good.exitCode, 0, JSON.stringify(good.json));
  const pod = c.rig.kernel.pod(ns);
  pod.routes = [];
  const eth0 = pod.links.get('eth0');
  assert.ok(eth0);
  eth0.addrs = [];
  const bad = await c.call('CHECK', { CNI_CONTAINERID: 'c1', CNI_NETNS: ns }, withPrev);
  assert.equal(errorCode(bad), 106);
  assert.match(bad.json?.msg as string, /lacks address 198\.18\.64\.2\/24/);
  assert.match(bad.json?.msg as string, /route 0\.0\.0\.0\/0 via 198\.18\.64\.1 is missing/);
  const wrongPrev = { ...cfg, prevResult: { ...(add.json as object), ips: [{ address: '198.18.64.9/24', interface: 2 }] } };
  const bad2 = await c.call('CHECK', { CNI_CONTAINERID: 'c1', CNI_NETNS: ns }, wrongPrev);
  assert.match(bad2.json?.msg as string, /prevResult lists address 198\.18\.64\.9\/24, which is not reserved/);
  const none = await c.call('CHECK', { CNI_CONTAINERID: 'nope', CNI_NETNS: ns }, withPrev);
  assert.equal(errorCode(none), 106);
  assert.match(none.json?.msg as string, /no such attachment/);
});

test('GC removes the attachments the runtime no longer lists, of this network only', async (t) => {
  const c = await setup(t);
  for (const i of [1, 2, 3]) assert.equal((await c.call('ADD', { CNI_CONTAINERID: `c${i}`, CNI_NETNS: c.pod(`p${i}`) }, conf({ cniVersion: '1.1.0' }))).exitCode, 0);
  const gc = await c.call('GC', {}, { ...conf({ cniVersion: '1.1.0' }), 'cni.dev/valid-attachments': [{ containerID: 'c2', ifname: 'eth0' }] });
  assert.equal(gc.exitCode, 0, JSON.stringify(gc.json));
  assert.deepEqual([...c.rig.engine.books.endpoints.values()].map((e) => e.sandbox?.containerId), ['c2']);
  assert.equal([...c.rig.kernel.links.values()].filter((l) => l.kind === 'veth').length, 1);
});

test('STATUS: ready while serving, 50 while shutting down; a DEL then is handed to the spool', async (t) => {
  const c = await setup(t);
  assert.equal((await c.call('STATUS', {}, conf({ cniVersion: '1.1.0' }))).exitCode, 0);
  const ns = c.pod('p1');
  assert.equal((await c.call('ADD', { CNI_CONTAINERID: 'c1', CNI_NETNS: ns }, conf({ cniVersion: '1.1.0' }))).exitCode, 0);
  await c.rig.engine.drain();
  assert.equal(errorCode(await c.call('STATUS', {}, conf({ cniVersion: '1.1.0' }))), 50);
  const del = await c.call('DEL', { CNI_CONTAINERID: 'c1', CNI_NETNS: ns }, conf({ cniVersion: '1.1.0' }));
  assert.equal(del.spool, true, 'DEL recorded for replay, not failed');
  assert.equal(errorCode(await c.call('ADD', { CNI_CONTAINERID: 'c2', CNI_NETNS: c.pod('p2') }, conf({ cniVersion: '1.1.0' }))), 11);
});

test('a config meant for another daemon socket is refused (7) before anything happens', async (t) => {
  const c = await setup(t);
  const a = await c.call('ADD', { CNI_CONTAINERID: 'c1', CNI_NETNS: c.pod('p1') }, conf({ socket: '/run/other/cni.sock' }));
  assert.equal(errorCode(a), 7);
  assert.match(a.json?.msg as string, /names socket \/run\/other\/cni\.sock but this batchbridge daemon serves/);
  assert.equal(c.rig.engine.books.networks.size, 0);
});
