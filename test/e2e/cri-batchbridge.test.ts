// containerd's CRI plugin (Debian's containerd 1.6) on batchbridge's CNI front end, as a kubelet
// would drive it: `batchbridge serve --cni-socket` in the namespace containerd runs in, and
// `batchbridge cni-install` for the plugin dir (with the reference `loopback`) and the conflist.
// The scenario (test/helpers/cri-scenario.ts) runs 8 pods at once with a host port each, checks
// that they reach each other, the gateway and an external peer, that each host port answers the
// peer, that Stop + Remove leave no pod, netns, veth or rule naming a pod, and that every CNI call
// containerd made (ADD, the DEL on Stop, the DEL on Remove with an empty CNI_NETNS) exited 0.
// Here, on top: while the pods run, the network, the attachments and the port bindings are
// batchbridge's (its books, `batchbridge ports`, its bridge and BB-* chains, no CNI-* chain), and
// afterwards the books, the port list, the rules and libcni's cache hold nothing of the pods.
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { test } from 'node:test';
import { bbAndCniRules, bbPorts, readBooks, startBbCni } from '../helpers/bb-cni.js';
import { testScope } from '../helpers/cleanup.js';
import { criScenario, type RunningPod } from '../helpers/cri-scenario.js';
import { createNetns, ipAddrs, ipLinks, type Netns } from '../helpers/netns.js';
import type { Plugin } from '../helpers/plugin.js';
import { randomHex } from '../helpers/proc.js';

const SUBNET = '198.18.72.0/24';
const GATEWAY = '198.18.72.1';
const BRIDGE = 'bbcri9';

/** What batchbridge holds for `network` while the pods run: exactly the pods, as containerd sees them. */
async function checkRunning(host: Netns, plugin: Plugin, network: string, pods: readonly RunningPod[]): Promise<void> {
  const books = readBooks(plugin.stateDir);
  const net = books.networks.find((n) => n.cniName === network);
  assert.ok(net, `network ${network} in the books`);
  assert.deepEqual([net.spec.bridge, `${net.spec.ipv4.ip}/${net.spec.ipv4.prefix}`, net.spec.masquerade], [BRIDGE, `${GATEWAY}/24`, true]);
  const eps = books.endpoints.filter((e) => e.networkId === net.spec.id);
  const byPod = (x: { containerId: string }) => x.containerId;
  assert.deepEqual(
    eps.map((e) => ({ containerId: e.sandbox?.containerId ?? '', netns: e.sandbox?.netns, peer: e.peer, ipv4: e.ipv4 })).sort((a, b) => byPod(a).localeCompare(byPod(b))),
    pods.map((p) => ({ containerId: p.id, netns: p.netns, peer: 'eth0', ipv4: `${p.ip}/24` })).sort((a, b) => byPod(a).localeCompare(byPod(b))),
    'one booked attachment per pod, in its namespace, with its address');

  const ports = await bbPorts(plugin);
  assert.deepEqual(ports.map((b) => [b.proto, b.hostPort, b.containerIp, b.containerPort]),
    [...pods].sort((a, b) => a.hostPort - b.hostPort).map((p) => ['tcp', p.hostPort, p.ip, 80]), 'batchbridge ports lists each pod\'s binding');

  // The kernel: the booked veths on the booked bridge, which holds the gateway.
  const onBridge = (await ipLinks(host, ['master', BRIDGE])).map((l) => l.ifname).sort();
  assert.deepEqual(onBridge, eps.map((e) => e.host).sort(), 'the pods\' host veths are the bridge\'s ports');
  const addrs = (await ipAddrs(host, ['dev', BRIDGE]))[0]?.addr_info.filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`);
  assert.deepEqual(addrs, [`${GATEWAY}/24`]);

  // The rules: batchbridge's chains with its owner tags, no CNI-* chain of the reference plugins.
  const rules = await bbAndCniRules(host);
  assert.deepEqual(rules.filter((l) => l.includes('CNI-')), [], 'no reference-plugin chain');
  const netTag = `bb:net=${net.spec.id.slice(0, 12)}`;
  assert.ok(rules.some((l) => l.startsWith('-A BB-POSTROUTING') && l.includes(`-s ${SUBNET}`) && l.includes('MASQUERADE') && l.includes(netTag)), 'masquerade of the pod subnet');
  assert.ok(rules.some((l) => l.startsWith('-A BB-FORWARD') && l.includes(`-o ${BRIDGE}`) && l.includes(netTag)), 'forwarding rules of the bridge');
  for (const p of pods) {
    const ep = eps.find((e) => e.sandbox?.containerId === p.id);
    const dnat = rules.filter((l) => /^-A BB-DNAT-\d+ /.test(l) && l.includes(`--dport ${p.hostPort} `) && l.includes(`--to-destination ${p.ip}:80`));
    assert.equal(dnat.length, 1, `one DNAT rule for pod${p.i}'s host port ${p.hostPort}`);
    assert.ok(dnat[0]?.includes(`bb:ep=${ep?.id.slice(0, 12) ?? '?'}`), 'tagged with the attachment');
  }
}

test('containerd CRI + batchbridge: 8 concurrent pods with host ports, reachable, batchbridge\'s, and gone after Stop + Remove', { timeout: 120_000 }, async (t) => {
  const scope = testScope(t);
  const host = scope.add(await createNetns({ prefix: 'bbt-cri' }));
  const network = `bbt-cri-${randomHex(3)}`;
  const bb = await startBbCni(scope, host, { network, subnet: SUBNET, bridge: BRIDGE });
  const PORT0 = 18080;
  const ports = Array.from({ length: 8 }, (_, i) => PORT0 + i);

  const { ids, calls } = await criScenario(t, scope, {
    host,
    binDir: bb.binDir,
    conflist: bb.conflist,
    gateway: GATEWAY,
    podAddress: /^198\.18\.72\.\d+$/,
    pods: ports.length,
    portBase: PORT0,
    whileRunning: (pods) => checkRunning(host, bb.plugin, network, pods),
  });

  // What containerd got from each ADD: the three interfaces, the container's in its namespace.
  for (const add of calls.filter((c) => c.plugin === 'batchbridge-cni' && c.env['CNI_COMMAND'] === 'ADD')) {
    const r = JSON.parse(add.stdout) as { cniVersion: string; interfaces: Array<{ name: string; sandbox?: string }>; ips: Array<{ interface: number; gateway: string }> };
    assert.equal(r.cniVersion, '1.0.0');
    assert.deepEqual(r.interfaces.map((i) => [i.name === BRIDGE, i.sandbox]), [[true, undefined], [false, undefined], [false, add.env['CNI_NETNS']]]);
    assert.deepEqual(r.ips.map((i) => [i.interface, i.gateway]), [[2, GATEWAY]]);
  }

  // Nothing of the pods left in batchbridge: books, port list, rules, bridge ports; the network stays (CNI never deletes one).
  const books = readBooks(bb.plugin.stateDir);
  assert.deepEqual(books.networks.map((n) => n.cniName), [network]);
  assert.deepEqual(books.endpoints, [], 'no attachment in the books');
  assert.deepEqual(await bbPorts(bb.plugin), [], 'no port binding');
  const rules = await bbAndCniRules(host);
  assert.deepEqual(rules.filter((l) => l.includes('bb:ep=') || ports.some((p) => l.includes(`--dport ${p} `))), [], 'no rule of an attachment or a host port');
  assert.deepEqual(await ipLinks(host, ['master', BRIDGE]), [], 'no port on the bridge');
  const cached = readdirSync('/var/lib/cni/results').filter((f) => ids.some((id) => f.includes(id)));
  assert.deepEqual(cached, [], 'no libcni cache entry of the pods');
  assert.doesNotMatch(bb.plugin.logText(), /CNI request failed/, 'no CNI request failed in the daemon');
});
