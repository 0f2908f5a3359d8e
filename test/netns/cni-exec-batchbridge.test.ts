// batchbridge's CNI front end as a runtime meets it: the real daemon (`batchbridge serve
// --cni-socket`) and the executable `batchbridge cni-install` put in a plugin dir, called exactly
// as libcni calls plugins (test/helpers/cni-exec.ts, result cache included). The checks the
// reference bridge plugin's own tests make (result interfaces, sandbox, bridge MAC, routes, MTU,
// CHECK after damage, DEL variants, no leaked address), traffic, every verb and every version.
// Error paths: cni-exec-batchbridge-errors.test.ts; daemon down: cni-exec-batchbridge-down.test.ts.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Scope, testScope } from '../helpers/cleanup.js';
import type { JsonObject, RuntimeConf } from '../helpers/cni-exec.js';
import { createExternalPeer, nsPing } from '../helpers/netns.js';
import { httpGet, podListeners } from '../helpers/pod-net.js';
import { eventually, run, runOk, signalPid, waitPidExit } from '../helpers/proc.js';
import {
  bbConflist, booksOf, cniDaemon, cniFailure, dnatRules, execRaw, hostVeths, linkIn, newPod, selfNetns, stdinOf,
  withVersion, type CniDaemon,
} from './cni-exec-kit.js';

interface Iface { name: string; mac?: string; mtu?: number; sandbox?: string }
interface Ip { address: string; gateway?: string; interface?: number; version?: string }

const scope = new Scope();
let d: CniDaemon;
after(() => scope.close());
before(async () => {
  d = await cniDaemon(scope, 'bbcxa');
});

const main = () => bbConflist({ name: 'cxnet', socket: d.cniSocket, bridge: 'bbcx0', subnet: '198.18.64.0/24', subnet6: 'fd00:64::/64', mtu: 1400 });
const ifacesOf = (r: JsonObject) => r['interfaces'] as unknown as Iface[];
const ipsOf = (r: JsonObject) => r['ips'] as unknown as Ip[];

async function podAddrs(ns: { execOk(a: readonly string[]): Promise<string> }, dev = 'eth0'): Promise<string[]> {
  const [l] = JSON.parse(await ns.execOk(['ip', '-j', 'addr', 'show', 'dev', dev])) as Array<{ addr_info: Array<{ local: string; prefixlen: number; scope: string }> }>;
  return (l?.addr_info ?? []).filter((a) => a.scope === 'global').map((a) => `${a.local}/${a.prefixlen}`);
}

async function defaultVia(ns: { execOk(a: readonly string[]): Promise<string> }, v6 = false): Promise<Array<{ gateway?: string; dev?: string }>> {
  return JSON.parse(await ns.execOk(['ip', ...(v6 ? ['-6'] : []), '-j', 'route', 'show', 'default'])) as Array<{ gateway?: string; dev?: string }>;
}

test('ADD: the reference bridge plugin\'s result and pod checks, stable bridge MAC, MTU, IPv4+IPv6, traffic', { timeout: 60_000 }, async (t) => {
  const s = testScope(t);
  const list = main();
  const a = await newPod(s, { args: [['IgnoreUnknown', '1'], ['K8S_POD_NAME', 'web']], capabilityArgs: { portMappings: [{ HostPort: 18080, ContainerPort: 80, Protocol: 'tcp', HostIP: '' }] } });
  const r = await d.cni.addList(list, a.rt);
  assert.equal(r['cniVersion'], '1.0.0');

  // Three interfaces: the bridge, the host veth, the container interface with its sandbox.
  const ifs = ifacesOf(r);
  assert.equal(ifs.length, 3, JSON.stringify(ifs));
  const [br, hv, ct] = ifs as [Iface, Iface, Iface];
  const bridge = await linkIn(null, 'bbcx0');
  assert.equal(br.name, 'bbcx0');
  assert.equal(br.mac, bridge?.address, 'the result gives the bridge its kernel MAC');
  assert.equal(br.sandbox, undefined);
  const host = await linkIn(null, hv.name);
  assert.ok(host !== undefined, `host veth ${hv.name} exists here`);
  assert.equal(host.master, 'bbcx0', 'host veth on the bridge');
  assert.equal(hv.mac, host.address);
  assert.equal(hv.sandbox, undefined);
  assert.equal(ct.name, 'eth0');
  assert.equal(ct.sandbox, a.ns.path, 'sandbox = CNI_NETNS');
  const eth0 = await linkIn(a.ns, 'eth0');
  assert.equal(ct.mac, eth0?.address, 'the result gives the container interface its MAC');
  // MTU on all three.
  assert.equal(eth0?.mtu, 1400);
  assert.equal(host.mtu, 1400);
  assert.equal(bridge?.mtu, 1400);

  // Addresses (interface 2, with the gateway) and routes, in the result and in the pod.
  assert.deepEqual(ipsOf(r), [
    { interface: 2, address: '198.18.64.2/24', gateway: '198.18.64.1' },
    { interface: 2, address: 'fd00:64::2/64', gateway: 'fd00:64::1' },
  ]);
  assert.deepEqual(r['routes'], [{ dst: '0.0.0.0/0', gw: '198.18.64.1' }, { dst: '::/0', gw: 'fd00:64::1' }]);
  assert.deepEqual((await podAddrs(a.ns)).sort(), ['198.18.64.2/24', 'fd00:64::2/64']);
  assert.deepEqual((await defaultVia(a.ns)).map((x) => [x.gateway, x.dev]), [['198.18.64.1', 'eth0']], 'isDefaultGateway: default route via the gateway');
  assert.deepEqual((await defaultVia(a.ns, true)).map((x) => [x.gateway, x.dev]), [['fd00:64::1', 'eth0']]);
  // The result the runtime cached is the one CHECK and DEL will send back.
  assert.deepEqual(await d.cni.cachedResult(list, a.rt), r);

  // A second pod: same bridge MAC, next address.
  const b = await newPod(s);
  const r2 = await d.cni.addList(list, b.rt);
  assert.equal(ifacesOf(r2)[0]?.mac, br.mac, 'stable bridge MAC across ADDs');
  assert.equal(ipsOf(r2)[0]?.address, '198.18.64.3/24');
  assert.notEqual(ifacesOf(r2)[1]?.name, hv.name);

  // Traffic: pod <-> pod, pod -> gateway (both families), a host port from an external peer.
  for (const [from, to] of [[a.ns, '198.18.64.3'], [b.ns, '198.18.64.2'], [a.ns, '198.18.64.1']] as const) {
    const p = await nsPing(from, to, { count: 1 });
    assert.equal(p.code, 0, `ping ${to} from ${from.name}: ${p.stdout}${p.stderr}`);
  }
  for (const [from, to] of [[a.ns, 'fd00:64::3'], [b.ns, 'fd00:64::1']] as const) {
    const p = await from.exec(['busybox', 'ping6', '-c', '1', '-W', '3', to], { timeoutMs: 15_000 });
    assert.equal(p.code, 0, `ping6 ${to} from ${from.name}: ${p.stdout}${p.stderr}`);
  }
  const ext = s.add(await createExternalPeer(selfNetns()));
  s.add(await podListeners([{ netns: a.ns.path, body: 'hello from pod a' }], join(d.dir.path, 'www')));
  assert.match(await httpGet(b.ns, '198.18.64.2', 80), /hello from pod a/, 'pod -> pod over TCP');
  const body = await eventually(async () => {
    const got = await httpGet(ext.peer, ext.hostAddr, 18080);
    if (!got.includes('hello from pod a')) throw new Error(`no answer on ${ext.hostAddr}:18080: ${JSON.stringify(got)}`);
    return got;
  }, { timeoutMs: 10_000 });
  assert.match(body, /^HTTP\/1\.[01] 200/);

  await d.cni.delList(list, a.rt);
  await d.cni.delList(list, b.rt);
  assert.deepEqual(await hostVeths(), []);
  assert.deepEqual(await dnatRules(), [], 'the host port is gone with the pod');
  assert.match(await httpGet(ext.peer, ext.hostAddr, 18080), /^$/, 'nothing answers on the host port any more');
});

test('CHECK passes after ADD and fails with 106 naming what is wrong: address, route, host veth, DNAT rule', { timeout: 60_000 }, async (t) => {
  const s = testScope(t);
  const list = main();
  const a = await newPod(s, { capabilityArgs: { portMappings: [{ hostPort: 18081, containerPort: 80, protocol: 'tcp' }] } });
  const r = await d.cni.addList(list, a.rt);
  const veth = ifacesOf(r)[1]?.name ?? '';
  const addr = ipsOf(r)[0]?.address ?? '';
  await d.cni.checkList(list, a.rt);

  const damaged = async (what: RegExp): Promise<void> => {
    const e = await cniFailure(d.cni.checkList(list, a.rt));
    assert.equal(e.code, 106, e.message);
    assert.match(e.msg, /^CHECK of container ctr-\S+ interface eth0 on network "cxnet" failed: /);
    assert.match(e.msg, what);
  };

  // The pod's address (the kernel drops the default route with it).
  await a.ns.execOk(['ip', 'addr', 'del', addr, 'dev', 'eth0']);
  await damaged(new RegExp(`interface eth0 in ${a.ns.path} lacks address 198\\.18\\.64\\.\\d+/24`));
  await a.ns.execOk(['ip', 'addr', 'add', addr, 'dev', 'eth0']);
  await a.ns.execOk(['ip', 'route', 'add', 'default', 'via', '198.18.64.1', 'dev', 'eth0']);
  await d.cni.checkList(list, a.rt);

  // The default route.
  await a.ns.execOk(['ip', 'route', 'del', 'default']);
  await damaged(new RegExp(`route 0\\.0\\.0\\.0/0 via 198\\.18\\.64\\.1 is missing in ${a.ns.path}`));
  await a.ns.execOk(['ip', 'route', 'add', 'default', 'via', '198.18.64.1', 'dev', 'eth0']);
  await d.cni.checkList(list, a.rt);

  // The host veth taken off the bridge.
  await runOk(['ip', 'link', 'set', 'dev', veth, 'nomaster']);
  await damaged(new RegExp(`host interface ${veth} is on no bridge, not on bbcx0`));
  await runOk(['ip', 'link', 'set', 'dev', veth, 'master', 'bbcx0']);
  await d.cni.checkList(list, a.rt);

  // The pod's DNAT rule deleted behind our back.
  const nat = await runOk(['iptables-save', '-t', 'nat']);
  const rule = nat.split('\n').filter((l) => / --dport 18081 /.test(l) && / -j DNAT /.test(l));
  assert.equal(rule.length, 1, nat);
  await runOk(['iptables-restore', '-T', 'nat'], { input: nat.split('\n').filter((l) => l !== rule[0]).join('\n') });
  await damaged(/firewall: 1 rule\(s\) missing/);

  await d.cni.delList(list, a.rt);
  assert.deepEqual(await dnatRules(), []);
});

test('DEL: twice, with an empty CNI_NETNS, for a namespace already deleted, for a container never added', { timeout: 60_000 }, async (t) => {
  const s = testScope(t);
  const list = main();
  const ports = (p: number) => ({ capabilityArgs: { portMappings: [{ hostPort: p, containerPort: 80, protocol: 'tcp' }] } });
  const a = await newPod(s, ports(18082));
  const b = await newPod(s, ports(18083));
  const c = await newPod(s, ports(18084));
  const va = ifacesOf(await d.cni.addList(list, a.rt))[1]?.name ?? '';
  const vb = ifacesOf(await d.cni.addList(list, b.rt))[1]?.name ?? '';
  const vc = ifacesOf(await d.cni.addList(list, c.rt))[1]?.name ?? '';
  assert.equal(booksOf(d.stateDir).endpoints.length, 3);
  assert.equal((await dnatRules()).length, 3);

  // Twice (containerd: on Stop and on Remove); the second finds nothing and succeeds.
  await d.cni.delList(list, a.rt);
  assert.equal(await linkIn(null, va), undefined, 'the first DEL removed the veth');
  assert.equal(await linkIn(a.ns, 'eth0'), undefined, 'and its container end');
  await d.cni.delList(list, a.rt);

  // With an empty CNI_NETNS and no cached result (containerd's second DEL after a restart).
  await run(['rm', '-f', join(d.cni.cacheDir, 'results', `cxnet-${b.rt.containerId}-eth0`)]);
  await d.cni.delList(list, { ...b.rt, netns: '' });
  assert.equal(await linkIn(null, vb), undefined, 'DEL without CNI_NETNS removed the veth');

  // The namespace is gone first (the kernel took the veth with it); DEL names its old path.
  await c.ns.delete();
  await eventually(async () => assert.equal(await linkIn(null, vc), undefined));
  await d.cni.delList(list, c.rt);

  // Never added.
  await d.cni.delList(list, { containerId: 'never-added', netns: '', ifName: 'eth0' });
  await d.cni.delList(list, { containerId: 'never-added-either', netns: a.ns.path, ifName: 'eth1' });

  const books = booksOf(d.stateDir);
  assert.deepEqual(books.endpoints, [], 'no attachment left in the books');
  assert.equal(books.intents, 0);
  assert.deepEqual(await hostVeths(), []);
  assert.deepEqual(await dnatRules(), [], 'ports released');
});

test('a failed ADD leaks no address: on a /30 with room for one pod, the next ADD gets it', { timeout: 30_000 }, async (t) => {
  const s = testScope(t);
  const list = bbConflist({ name: 'cxtiny', socket: d.cniSocket, bridge: 'bbcx1', subnet: '198.18.66.0/30' });
  const a = await newPod(s);
  await a.ns.execOk(['ip', 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0peer']);
  const e = await cniFailure(d.cni.addList(list, a.rt));
  assert.equal(e.code, 102, e.message);
  assert.match(e.message, /^plugin type="batchbridge-cni" failed \(add\): interface eth0 already exists in \/run\/netns\/bbt-cxpod-/);
  assert.equal(await d.cni.cachedResult(list, a.rt), undefined, 'nothing cached for the failed ADD');
  assert.equal(booksOf(d.stateDir).endpoints.length, 0);

  const b = await newPod(s);
  const r = await d.cni.addList(list, b.rt);
  assert.deepEqual(ipsOf(r), [{ interface: 2, address: '198.18.66.2/30', gateway: '198.18.66.1' }], 'the only address is still free');
  await d.cni.delList(list, b.rt);
  await d.cni.delList(list, a.rt); // the runtime's DEL after its failed ADD: nothing to do
});

test('versions: results in the shape of 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0; CHECK from 0.4.0; STATUS and GC at 1.1.0', { timeout: 60_000 }, async (t) => {
  const s = testScope(t);
  const base = main();
  for (const v of ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0']) {
    const list = withVersion(base, v);
    const p = await newPod(s);
    const r = await d.cni.addList(list, p.rt);
    assert.equal(r['cniVersion'], v);
    const ips = ipsOf(r);
    const old = v.startsWith('0.');
    assert.deepEqual(ips.map((i) => i.version), old ? ['4', '6'] : [undefined, undefined], `${v}: ips[].version`);
    assert.ok(ips.every((i) => i.interface === 2 && i.gateway !== undefined), JSON.stringify(ips));
    const ct = ifacesOf(r)[2];
    assert.equal(ct?.sandbox, p.ns.path);
    assert.equal(ct?.mtu, v === '1.1.0' ? 1400 : undefined, `${v}: interfaces[].mtu only from 1.1.0`);
    if (v === '0.4.0' || !old) {
      await d.cni.checkList(list, p.rt);
    } else {
      // libcni refuses CHECK below 0.4.0 itself; the plugin refuses it too when asked anyway.
      await assert.rejects(d.cni.checkList(list, p.rt), /does not support the CHECK command/);
      const e = await cniFailure(execRaw(d.cni, 'CHECK', stdinOf(list, { prevResult: r }), p.rt));
      assert.equal(e.code, 1, e.message);
      assert.match(e.msg, new RegExp(`config version "${v.replace(/\./g, '\\.')}" does not allow CHECK \\(it needs 0\\.4\\.0 or later\\)`));
    }
    await d.cni.delList(list, p.rt);
  }
  // STATUS: ready (exit 0, nothing on stdout); libcni sends it only at 1.1.0, the plugin refuses older.
  await d.cni.statusList(withVersion(base, '1.1.0'));
  assert.equal(await execRaw(d.cni, 'STATUS', stdinOf(withVersion(base, '1.1.0'))), '');
  for (const cmd of ['STATUS', 'GC'] as const) {
    const e = await cniFailure(execRaw(d.cni, cmd, stdinOf(base), { path: d.cni.path }));
    assert.equal(e.code, 1, e.message);
    assert.match(e.msg, new RegExp(`config version "1\\.0\\.0" does not allow ${cmd} \\(it needs 1\\.1\\.0 or later\\)`));
  }
  assert.deepEqual(booksOf(d.stateDir).endpoints, []);
});

test('GC removes every attachment not in cni.dev/valid-attachments, the runtime\'s cache or not', { timeout: 60_000 }, async (t) => {
  const s = testScope(t);
  const list = withVersion(main(), '1.1.0');
  const pods = [await newPod(s), await newPod(s), await newPod(s)];
  const veths: string[] = [];
  for (const p of pods) veths.push(ifacesOf(await d.cni.addList(list, p.rt))[1]?.name ?? '');
  const [keep, lost, cached] = pods as [typeof pods[0], typeof pods[0], typeof pods[0]];
  // The runtime lost track of `lost` (no cache entry): only the plugin's GC can remove it.
  await run(['rm', '-f', join(d.cni.cacheDir, 'results', `cxnet-${lost.rt.containerId}-eth0`)]);
  await d.cni.gcList(list, [{ containerID: keep.rt.containerId, ifname: 'eth0' }]);
  const left = booksOf(d.stateDir).endpoints;
  assert.equal(left.length, 1, JSON.stringify(left));
  assert.equal(left[0]?.host, veths[0]);
  assert.deepEqual(await hostVeths(), [veths[0]]);
  assert.equal(await linkIn(lost.ns, 'eth0'), undefined, 'GC removed the uncached attachment');
  assert.equal(await linkIn(cached.ns, 'eth0'), undefined);
  assert.ok((await linkIn(keep.ns, 'eth0')) !== undefined, 'the valid attachment stays');
  await d.cni.checkList(list, keep.rt);
  // GC with no valid attachments at all: everything of this network goes.
  await d.cni.gcList(list, []);
  assert.deepEqual(booksOf(d.stateDir).endpoints, []);
  assert.deepEqual(await hostVeths(), []);
});

async function waitOtherNetns(pid: number): Promise<string> {
  const path = `/proc/${pid}/ns/net`;
  const own = readlinkSync('/proc/self/ns/net');
  await eventually(async () => assert.notEqual(readlinkSync(path), own), { timeoutMs: 5_000, intervalMs: 10 });
  return path;
}

test('capabilities: portMappings (Podman and containerd keys, tcp/udp/sctp, hostIP), ips, mac, CNI_ARGS IP=/MAC=, every netns path', { timeout: 60_000 }, async (t) => {
  const s = testScope(t);
  const list = main();
  // Podman: lowercase keys; all three protocols; one bound to a host address; ips and mac.
  const podman = await newPod(s, {
    capabilityArgs: {
      portMappings: [
        { hostPort: 18085, containerPort: 80, protocol: 'tcp', hostIP: '' },
        { hostPort: 18086, containerPort: 53, protocol: 'udp', hostIP: '' },
        { hostPort: 18087, containerPort: 9, protocol: 'sctp', hostIP: '198.19.255.1' },
      ],
      ips: ['198.18.64.50/24', 'fd00:64::50/64'],
      mac: '02:42:c6:12:40:32',
    },
  });
  const r1 = await d.cni.addList(list, podman.rt);
  assert.deepEqual(ipsOf(r1).map((i) => i.address), ['198.18.64.50/24', 'fd00:64::50/64']);
  assert.equal(ifacesOf(r1)[2]?.mac, '02:42:c6:12:40:32');
  assert.deepEqual((await podAddrs(podman.ns)).sort(), ['198.18.64.50/24', 'fd00:64::50/64']);
  assert.equal((await linkIn(podman.ns, 'eth0'))?.address, '02:42:c6:12:40:32');
  const dnat = await dnatRules();
  const has = (re: RegExp) => assert.equal(dnat.filter((l) => re.test(l)).length, 1, `${re} in\n${dnat.join('\n')}`);
  has(/-p tcp .*--dport 18085 .*-j DNAT --to-destination 198\.18\.64\.50:80$/);
  has(/-p udp .*--dport 18086 .*-j DNAT --to-destination 198\.18\.64\.50:53$/);
  has(/-d 198\.19\.255\.1\/32 .*-p sctp .*--dport 18087 .*-j DNAT --to-destination 198\.18\.64\.50:9$/);

  // containerd: capitalised keys (and an upper-case protocol); CNI_ARGS IP= and MAC= with
  // IgnoreUnknown and containerd's K8S_* pairs and an unknown one.
  const ctrd = await newPod(s, {
    args: [['IgnoreUnknown', '1'], ['K8S_POD_NAMESPACE', 'default'], ['K8S_POD_NAME', 'q'], ['IP', '198.18.64.60'], ['MAC', '02:42:c6:12:40:3c'], ['FOO', 'bar']],
    capabilityArgs: { portMappings: [{ HostPort: 18088, ContainerPort: 8080, Protocol: 'TCP', HostIP: '' }] },
  });
  const r2 = await d.cni.addList(list, ctrd.rt);
  assert.equal(ipsOf(r2)[0]?.address, '198.18.64.60/24');
  assert.equal((await linkIn(ctrd.ns, 'eth0'))?.address, '02:42:c6:12:40:3c');
  assert.ok((await podAddrs(ctrd.ns)).includes('198.18.64.60/24'));
  assert.equal((await dnatRules()).filter((l) => /-p tcp .*--dport 18088 .*--to-destination 198\.18\.64\.60:8080$/.test(l)).length, 1);

  // Paths: /var/run/netns/NAME and /proc/PID/ns/net (a process in a namespace of its own).
  const viaVar = await newPod(s);
  const varPath = `/var/run/netns/${viaVar.ns.name}`;
  const r3 = await d.cni.addList(list, { ...viaVar.rt, netns: varPath });
  assert.equal(ifacesOf(r3)[2]?.sandbox, varPath);
  assert.ok((await podAddrs(viaVar.ns)).includes(ipsOf(r3)[0]?.address ?? '?'));
  const sleeper = spawn('unshare', ['--net', 'sleep', '60'], { stdio: 'ignore' });
  const pid = sleeper.pid ?? -1;
  s.defer('the sleeping pod process', async () => { signalPid(pid, 'SIGKILL'); await waitPidExit(pid, 5_000); });
  const procPath = await waitOtherNetns(pid);
  const procRt: RuntimeConf = { containerId: `ctr-proc-${pid}`, netns: procPath, ifName: 'net1' };
  const r4 = await d.cni.addList(list, procRt);
  assert.equal(ifacesOf(r4)[2]?.sandbox, procPath);
  const inProc = await runOk(['nsenter', `--net=${procPath}`, 'ip', '-j', 'addr', 'show', 'dev', 'net1']);
  assert.match(inProc, new RegExp(`"local":"${(ipsOf(r4)[0]?.address ?? '?').split('/')[0]?.replace(/\./g, '\\.')}"`));
  await d.cni.checkList(list, procRt);
  const p = await run(['nsenter', `--net=${procPath}`, 'busybox', 'ping', '-c', '1', '-W', '3', '198.18.64.1'], { timeoutMs: 15_000 });
  assert.equal(p.code, 0, p.stdout + p.stderr);

  for (const rt of [podman.rt, ctrd.rt, { ...viaVar.rt, netns: varPath }, procRt]) await d.cni.delList(list, rt);
  assert.deepEqual(booksOf(d.stateDir).endpoints, []);
  assert.deepEqual(await dnatRules(), []);
  assert.deepEqual(await hostVeths(), []);
});
