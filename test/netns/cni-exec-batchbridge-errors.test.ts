// Every way a CNI call to batchbridge can be refused, through the installed executable and the
// real daemon, called as libcni calls it: the spec's error JSON with its code and a message that
// names the problem, and nothing changed — links, addresses and rules of the host namespace, the
// pods' namespaces, the books, the spool (cni-exec-kit.ts snapshot).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { networkIdFor } from '../../src/cni/net-config.js';
import { Scope, testScope } from '../helpers/cleanup.js';
import type { CniError, Json, NetConfList, RuntimeConf } from '../helpers/cni-exec.js';
import type { Netns } from '../helpers/netns.js';
import {
  bbConflist, booksOf, cniDaemon, cniFailure, execRaw, newPod, snapshot, stdinOf, withVersion, type CniDaemon,
} from './cni-exec-kit.js';

const scope = new Scope();
let d: CniDaemon;
let list: NetConfList;
/** a live pod on cxerr: 198.18.68.10, host port 18090 */
let live: { ns: Netns; rt: RuntimeConf };
after(() => scope.close());
before(async () => {
  d = await cniDaemon(scope, 'bbcxb');
  list = bbConflist({ name: 'cxerr', socket: d.cniSocket, bridge: 'bbcx3', subnet: '198.18.68.0/24' });
  live = await newPod(scope, { capabilityArgs: { portMappings: [{ hostPort: 18090, containerPort: 80, protocol: 'tcp' }], ips: ['198.18.68.10/24'] } });
  await d.cni.addList(list, live.rt);
});

/** `call` fails with `code` and a message that is `msg` or matches it. */
async function refused(call: () => Promise<unknown>, code: number, msg: RegExp | string): Promise<CniError> {
  const e = await cniFailure(call());
  assert.equal(e.code, code, `code of: ${e.message}`);
  assert.notEqual(e.exitCode, 0);
  if (typeof msg === 'string') assert.equal(e.msg, msg);
  else assert.match(e.msg, msg);
  return e;
}

/** The refusals in `body` change nothing anywhere: this namespace, the pods, the books, the spool. */
async function unchanged(pods: readonly Netns[], body: () => Promise<void>): Promise<void> {
  const before = await snapshot(d, [live.ns, ...pods]);
  await body();
  assert.deepEqual(await snapshot(d, [live.ns, ...pods]), before, 'a refused call changed something');
}

/** The list with `extra` merged into its plugin entry (and another network name). */
function variant(name: string, extra: Record<string, Json>, base: NetConfList = list): NetConfList {
  const [plugin] = base.plugins;
  assert.ok(plugin !== undefined);
  return { ...base, name, plugins: [{ ...plugin, raw: { ...plugin.raw, ...extra } }] };
}

test('missing or invalid CNI_* variables: code 4, naming the variable', { timeout: 30_000 }, async (t) => {
  const s = testScope(t);
  const p = await newPod(s);
  const add = stdinOf(list);
  const rt = { containerId: 'ctr-env', netns: p.ns.path, ifName: 'eth0' };
  await unchanged([p.ns], async () => {
    await refused(() => execRaw(d.cni, 'ADD', add, { ...rt, containerId: '' }), 4, 'required env variables [CNI_CONTAINERID] missing');
    await refused(() => execRaw(d.cni, 'ADD', add, { ...rt, netns: '' }), 4, 'required env variables [CNI_NETNS] missing');
    await refused(() => execRaw(d.cni, 'ADD', add, { ...rt, ifName: '' }), 4, 'required env variables [CNI_IFNAME] missing');
    await refused(() => execRaw(d.cni, 'ADD', add, { ifName: 'eth0' }), 4, 'required env variables [CNI_CONTAINERID,CNI_NETNS] missing');
    await refused(() => execRaw(d.cni, 'DEL', add, { ...rt, containerId: '' }), 4, 'required env variables [CNI_CONTAINERID] missing');
    await refused(() => execRaw(d.cni, 'CHECK', add, { ...rt, netns: '' }), 4, 'required env variables [CNI_NETNS] missing');
    await refused(() => execRaw(d.cni, 'GC', stdinOf(withVersion(list, '1.1.0')), { path: [] }), 4, 'required env variables [CNI_PATH] missing');
    await refused(() => execRaw(d.cni, 'ADD', add, { ...rt, ifName: 'this-is-too-long0' }), 4, /CNI_IFNAME/);
    await refused(() => execRaw(d.cni, 'ADD', add, { ...rt, netns: 'relative/path' }), 4, /^invalid CNI_NETNS "relative\/path": must be an absolute path/);
    await refused(() => execRaw(d.cni, 'ADD', add, { ...rt, containerId: '-bad id' }), 4, /^invalid CNI_CONTAINERID "-bad id"/);
    // CNI_ARGS: unknown keys only with IgnoreUnknown; pairs must be KEY=VALUE.
    await refused(() => d.cni.addList(list, { ...rt, args: [['FOO', 'bar']] }), 4, /^unknown CNI_ARGS "FOO=bar": .*add IgnoreUnknown=1 to ignore the others$/);
    await refused(() => d.cni.addList(list, { ...rt, args: [['IgnoreUnknown', 'maybe']] }), 4, /^invalid CNI_ARGS pair "IgnoreUnknown=maybe": expected 1, true, 0 or false$/);
    await refused(() => d.cni.addList(list, { ...rt, args: [['IP', 'not-an-ip']] }), 4, /CNI_ARGS IP/);
    // The forwarder refuses an unknown command itself (it forwards only the verbs it knows).
    const frob = await refused(() => execRaw(d.cni, 'FROB' as 'ADD', add, rt), 4, 'unknown CNI_COMMAND (ADD, DEL, CHECK, GC, STATUS, VERSION)');
    assert.equal(frob.details, 'FROB');
  });
});

test('CNI_NETNS of the daemon\'s own namespace (4), one that does not exist (4), CNI_IFNAME already in the pod (102)', { timeout: 30_000 }, async (t) => {
  const s = testScope(t);
  const p = await newPod(s);
  const pid = d.proc()?.pid ?? -1;
  await p.ns.execOk(['ip', 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0peer']);
  await unchanged([p.ns], async () => {
    for (const own of [`/proc/${pid}/ns/net`, `/proc/${process.pid}/ns/net`]) {
      await refused(() => d.cni.addList(list, { ...p.rt, netns: own }), 4, `CNI_NETNS ${own} is the batchbridge daemon's own network namespace, not a container's`);
    }
    await refused(() => d.cni.addList(list, { ...p.rt, netns: '/run/netns/bbt-cx-never-made' }), 4, 'CNI_NETNS /run/netns/bbt-cx-never-made cannot be opened: ENOENT');
    await refused(() => d.cni.addList(list, p.rt), 102, `interface eth0 already exists in ${p.ns.path}`);
  });
});

test('stdin: not JSON (6), not an object (6), prevResult on ADD (2)', { timeout: 30_000 }, async (t) => {
  const s = testScope(t);
  const p = await newPod(s);
  const rt = { containerId: 'ctr-json', netns: p.ns.path, ifName: 'eth0' };
  await unchanged([p.ns], async () => {
    await refused(() => execRaw(d.cni, 'ADD', '{"cniVersion":"1.0.0",', rt), 6, /^error unmarshalling the network config from stdin: /);
    await refused(() => execRaw(d.cni, 'ADD', '["cniVersion"]', rt), 6, 'the network config on stdin must be a JSON object');
    await refused(() => execRaw(d.cni, 'DEL', '', rt), 6, /^error unmarshalling the network config from stdin: /);
    await refused(() => execRaw(d.cni, 'ADD', stdinOf(list, { cniVersion: 1 }), rt), 6, /^cniVersion must be a string/);
    await refused(() => execRaw(d.cni, 'ADD', stdinOf(list, { prevResult: { cniVersion: '1.0.0', interfaces: [] } }), rt), 2, /^unsupported field prevResult on ADD: .*must be the first plugin of its list\)$/);
  });
});

test('versions: an unsupported cniVersion (1), CHECK below 0.4.0 (1)', { timeout: 30_000 }, async (t) => {
  const s = testScope(t);
  const p = await newPod(s);
  await unchanged([p.ns], async () => {
    for (const v of ['0.2.0', '0.1.0', '2.0.0', '1.0']) {
      await refused(() => d.cni.addList(withVersion(list, v), p.rt), 1, `incompatible CNI versions: config is "${v}", batchbridge-cni supports 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0`);
    }
    await refused(() => execRaw(d.cni, 'ADD', stdinOf(list, { cniVersion: 'one' }), p.rt), 6, /^invalid cniVersion "one"/);
    const prev = await d.cni.cachedResult(list, live.rt);
    for (const v of ['0.3.0', '0.3.1']) {
      await refused(() => execRaw(d.cni, 'CHECK', stdinOf(withVersion(list, v), { prevResult: prev ?? null }), live.rt), 1, `config version "${v}" does not allow CHECK (it needs 0.4.0 or later)`);
    }
  });
});

test('bad config values: code 7 with the Docker front end\'s words for the rules they share', { timeout: 30_000 }, async (t) => {
  const s = testScope(t);
  const p = await newPod(s);
  const docker = async (id: string, subnet: string, gateway: string | null, opts: Record<string, string>): Promise<string> => {
    const r = await d.docker.call('CreateNetwork', {
      NetworkID: id, Options: { 'com.docker.network.generic': opts }, IPv4Data: [{ Pool: subnet, ...(gateway ? { Gateway: `${gateway}/24` } : {}) }], IPv6Data: [],
    });
    assert.equal(r.status, 400, r.text);
    return String(r.body['Err']);
  };
  const id = (c: string) => c.repeat(64);
  await unchanged([p.ns], async () => {
    // MTU out of range
    const mtu = (await refused(() => d.cni.addList(variant('cxbad1', { mtu: 20, bridge: 'bbcxb1', ipam: { ranges: [[{ subnet: '198.18.71.0/24' }]] } }), p.rt), 7, 'invalid MTU number: 20 (must be between 68 and 65535)')).msg;
    assert.equal(await docker(id('a'), '198.18.71.0/24', null, { 'com.docker.network.driver.mtu': '20' }), mtu);
    // bridge name
    const bridge = (await refused(() => d.cni.addList(variant('cxbad2', { bridge: 'waytoolongbridgename', ipam: { ranges: [[{ subnet: '198.18.71.0/24' }]] } }), p.rt), 7, /^invalid bridge name "waytoolongbridgename"/)).msg;
    assert.equal(await docker(id('b'), '198.18.71.0/24', null, { 'com.docker.network.bridge.name': 'waytoolongbridgename' }), bridge);
    // gateway outside the subnet: the same sentence, naming the network as each front end knows it
    const gw = (await refused(() => d.cni.addList(variant('cxbad3', { bridge: 'bbcxb3', ipam: { ranges: [[{ subnet: '198.18.71.0/24', gateway: '198.18.72.1' }]] } }), p.rt), 7, 'invalid IPv4 gateway 198.18.72.1: not in subnet 198.18.71.0/24 of network "cxbad3"')).msg;
    assert.equal(await docker(id('c'), '198.18.71.0/24', '198.18.72.1', {}), gw.replace('"cxbad3"', id('c')));
    // bad subnet, range, route, booleans (CNI-only shapes)
    await refused(() => d.cni.addList(variant('cxbad4', { ipam: { ranges: [[{ subnet: '198.18.71.0/33' }]] } }), p.rt), 7, /198\.18\.71\.0\/33/);
    await refused(() => d.cni.addList(variant('cxbad5', { ipam: { ranges: [[{ subnet: '198.18.71.0/24', rangeStart: '198.18.71.50', rangeEnd: '198.18.71.10' }]] } }), p.rt), 7, /rangeStart 198\.18\.71\.50 is after rangeEnd 198\.18\.71\.10/);
    await refused(() => d.cni.addList(variant('cxbad6', { ipam: { ranges: [[{ subnet: '198.18.71.0/24' }]], routes: [{ dst: 'nowhere' }] } }), p.rt), 7, /ipam\.routes\[0\]\.dst/);
    await refused(() => d.cni.addList(variant('cxbad7', { ipMasq: 'yes' }), p.rt), 7, 'ipMasq must be true or false, got "yes"');
    await refused(() => d.cni.addList(variant('cxbad8', { ipam: {} }), p.rt), 7, /^ipam must give an IPv4 subnet/);
    await refused(() => d.cni.addList(variant('cxbad9', { socket: '/run/other/cni.sock' }), p.rt), 7, `the config names socket /run/other/cni.sock but this batchbridge daemon serves ${d.cniSocket}: the forwarder and the config disagree (see cni-install --socket)`);
    // (libcni checks the name itself before it runs a plugin; the plugin checks it too)
    await refused(() => execRaw(d.cni, 'ADD', stdinOf(list, { name: 'bad name!' }), p.rt), 7, /^invalid network name "bad name!"/);
    // runtime arguments: port mappings, addresses, MAC
    const withCaps = (caps: Record<string, Json>) => () => d.cni.addList(list, { ...p.rt, capabilityArgs: caps });
    await refused(withCaps({ portMappings: [{ hostPort: 0, containerPort: 80, protocol: 'tcp' }] }), 7, 'runtimeConfig.portMappings[0].hostPort: invalid port 0 (1-65535)');
    await refused(withCaps({ portMappings: [{ hostPort: 18091, containerPort: 80, protocol: 'icmp' }] }), 7, 'runtimeConfig.portMappings[0]: unknown protocol "icmp" (tcp, udp, sctp)');
    await refused(withCaps({ portMappings: [{ hostPort: 18091, containerPort: 80 }, { HostPort: 18091, ContainerPort: 81 }] }), 7, 'runtimeConfig.portMappings[1]: host port tcp *:18091 is mapped twice');
    await refused(withCaps({ ips: ['198.18.69.5/24'] }), 7, 'invalid runtimeConfig.ips 198.18.69.5: not in subnet 198.18.68.0/24');
    await refused(withCaps({ ips: ['198.18.68.1/24'] }), 7, "invalid runtimeConfig.ips 198.18.68.1: it is the network's gateway");
    await refused(withCaps({ ips: ['198.18.68.255/24'] }), 7, "invalid runtimeConfig.ips 198.18.68.255: it is the subnet's broadcast address");
    await refused(withCaps({ mac: '01:00:5e:00:00:01' }), 7, /^runtimeConfig\.mac: /);
  });
});

test('unsupported fields, capabilities and runtime arguments: code 2, naming key and value', { timeout: 30_000 }, async (t) => {
  const s = testScope(t);
  const p = await newPod(s);
  await unchanged([p.ns], async () => {
    await refused(() => d.cni.addList(variant('cxuns1', { vlan: 5 }), p.rt), 2, 'unsupported field vlan: 5 (batchbridge-cni does not implement it)');
    await refused(() => d.cni.addList(variant('cxuns2', { frobnicate: { a: 1 } }), p.rt), 2, 'unsupported field frobnicate: {"a":1} (batchbridge-cni does not implement it)');
    await refused(() => d.cni.addList(variant('cxuns3', { capabilities: { portMappings: true, bandwidth: true } }), p.rt), 2, /^unsupported capability bandwidth: true/);
    await refused(() => d.cni.addList(variant('cxuns4', { ipam: { type: 'batchbridge', ranges: [[{ subnet: '198.18.68.0/24' }]], dataDir: '/tmp/x' } }), p.rt), 2, /^unsupported field ipam\.dataDir: "\/tmp\/x"/);
    await refused(() => d.cni.addList(variant('cxuns5', { ipam: { ranges: [[{ subnet: '198.18.71.0/24' }], [{ subnet: 'fd00:71::/64' }]] }, isGateway: false, isDefaultGateway: false }), p.rt), 2, /^unsupported field isGateway: false with an IPv6 range/);
    await refused(() => execRaw(d.cni, 'ADD', stdinOf(list, { runtimeConfig: { bandwidth: { ingressRate: 1 } } }), p.rt), 2, /^unsupported field runtimeConfig\.bandwidth: /);
    await refused(() => d.cni.addList(list, { ...p.rt, capabilityArgs: { portMappings: [{ hostPort: 18091, containerPort: 80, hostNetwork: true }] } }), 2, /^unsupported field runtimeConfig\.portMappings\[0\]\.hostNetwork: true/);
  });
});

test('conflicts: duplicate ADD (102), a taken host port (103), a held address (108), exhaustion (109), a config change under attachments (101)', { timeout: 30_000 }, async (t) => {
  const s = testScope(t);
  const p = await newPod(s);
  // Another pod asking for the live pod's host port (after one that is free): its veth was made
  // and its first port bound before the clash; none of it, nor its address, stays.
  await unchanged([p.ns], () => refused(() => d.cni.addList(list, { ...p.rt, capabilityArgs: { portMappings: [{ hostPort: 18091, containerPort: 81, protocol: 'tcp' }, { hostPort: 18090, containerPort: 80, protocol: 'tcp' }] } }), 103,
    'Bind for 0.0.0.0:18090 failed: port is already allocated').then(() => undefined));
  await unchanged([p.ns], async () => {
    await refused(() => d.cni.addList(list, live.rt), 102, `container ${live.rt.containerId} already has interface eth0 on network "cxerr": DEL it first`);
    // The live pod's address (asked for by CNI_ARGS here; by runtimeConfig.ips it is the same path).
    await refused(() => d.cni.addList(list, { ...p.rt, args: [['IP', '198.18.68.10']] }), 108,
      `Address 198.18.68.10 is in use by container ${live.rt.containerId} (interface eth0) on CNI network "cxerr": it is joined to a container`);
    // Another MTU for a network that has an attachment.
    await refused(() => d.cni.addList(bbConflist({ name: 'cxerr', socket: d.cniSocket, bridge: 'bbcx3', subnet: '198.18.68.0/24', mtu: 1400 }), p.rt), 101,
      'network "cxerr" exists with a different configuration (mtu) and still has 1 attachment(s): delete them (their pods) before changing its config');
  });
  // A /30 holds one pod.
  const tiny = bbConflist({ name: 'cxtiny', socket: d.cniSocket, bridge: 'bbcx4', subnet: '198.18.66.4/30' });
  const first = await newPod(s);
  await d.cni.addList(tiny, first.rt);
  await unchanged([p.ns, first.ns], () => refused(() => d.cni.addList(tiny, p.rt), 109, 'no free IPv4 address in range 198.18.66.5-198.18.66.6 of network "cxtiny"').then(() => undefined));
  await d.cni.delList(tiny, first.rt);
  // After all that, the pod can still join (nothing was half-made for it).
  await d.cni.addList(list, p.rt);
  await d.cni.checkList(list, p.rt);
  await d.cni.delList(list, p.rt);
});

test('a Docker network and a CNI network with the same subnet or bridge are refused, both ways', { timeout: 30_000 }, async (t) => {
  const s = testScope(t);
  const p = await newPod(s);
  const networks = booksOf(d.stateDir).networks;
  const cxerrId = networkIdFor('cxerr');
  assert.ok(networks.includes(cxerrId));
  const create = async (id: string, pool: string, bridge?: string) => d.docker.call('CreateNetwork', {
    NetworkID: id, Options: { 'com.docker.network.generic': bridge === undefined ? {} : { 'com.docker.network.bridge.name': bridge } }, IPv4Data: [{ Pool: pool }], IPv6Data: [],
  });
  // Docker after CNI: cxerr holds 198.18.68.0/24 and bbcx3.
  const before = await snapshot(d, [live.ns, p.ns]);
  const overlap = await create('d'.repeat(64), '198.18.68.0/25');
  assert.equal(overlap.status, 409, overlap.text);
  assert.equal(overlap.body['Err'], `cannot create network ${'d'.repeat(64)} (bb-dddddddddddd): conflicts with CNI network "cxerr" (bbcx3): networks have overlapping IPv4`);
  const sameBridge = await create('e'.repeat(64), '198.18.73.0/24', 'bbcx3');
  assert.equal(sameBridge.status, 409, sameBridge.text);
  assert.equal(sameBridge.body['Err'], `cannot create network ${'e'.repeat(64)} (bbcx3): conflicts with CNI network "cxerr" (bbcx3): networks have same bridge name`);
  assert.deepEqual(await snapshot(d, [live.ns, p.ns]), before);

  // CNI after Docker.
  const dockerId = 'f'.repeat(64);
  const made = await create(dockerId, '198.18.74.0/24', 'bbdock0');
  assert.equal(made.status, 200, made.text);
  s.defer('docker network', async () => { await d.docker.call('DeleteNetwork', { NetworkID: dockerId }); });
  await unchanged([p.ns], async () => {
    await refused(() => d.cni.addList(bbConflist({ name: 'cxclash1', socket: d.cniSocket, bridge: 'bbcx5', subnet: '198.18.74.128/25' }), p.rt), 101,
      `cannot create CNI network "cxclash1" (bbcx5): conflicts with network ${dockerId} (bbdock0): networks have overlapping IPv4`);
    await refused(() => d.cni.addList(bbConflist({ name: 'cxclash2', socket: d.cniSocket, bridge: 'bbdock0', subnet: '198.18.75.0/24' }), p.rt), 101,
      `cannot create CNI network "cxclash2" (bbdock0): conflicts with network ${dockerId} (bbdock0): networks have same bridge name`);
  });
  assert.equal((await d.docker.call('DeleteNetwork', { NetworkID: dockerId })).status, 200);
  assert.deepEqual(booksOf(d.stateDir).networks, networks);
});

test('a second default route in the same pod is named as such, not as an existing interface', { timeout: 30_000 }, async (t) => {
  const s = testScope(t);
  const other = bbConflist({ name: 'cxsecond', socket: d.cniSocket, bridge: 'bbcx6', subnet: '198.18.76.0/24' });
  // The network exists already (its first ADD makes it, and a failed one would leave it).
  const q = await newPod(s);
  await d.cni.addList(other, q.rt);
  await d.cni.delList(other, q.rt);
  await unchanged([], () => refused(() => d.cni.addList(other, { containerId: live.rt.containerId, netns: live.rt.netns, ifName: 'eth1' }), 105,
    `failed to add the host <=> container pair interfaces: failed to configure eth1: in ${live.ns.path}: RTNETLINK answers: File exists (route add 0.0.0.0/0 via 198.18.76.1 dev eth1)`).then(() => undefined));
});
