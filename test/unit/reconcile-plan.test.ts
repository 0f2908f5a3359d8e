// The pure half of reconciliation: books + intents + a kernel snapshot → findings and fixes.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseNetworkId } from '../../src/domain/names.js';
import { parseNetworkSpec } from '../../src/api/network-options.js';
import { ABANDONED_AFTER_MS, planReconcile, type KernelLink, type ReconcileInput } from '../../src/engine/reconcile/plan.js';
import type { EndpointRecord, Intent, NetworkRecord } from '../../src/state/records.js';

const spec = parseNetworkSpec({ NetworkID: parseNetworkId('net0000000001'), Options: {}, IPv4Data: [{ Pool: '198.18.20.0/24' }], IPv6Data: [] });
const net: NetworkRecord = { spec, createdBridge: true, addedAddrs: [], createdAt: 1 };
const BR = spec.bridge;
const epRec = (id: string, host: string, mappings = 0): EndpointRecord => ({
  id, networkId: spec.id, host, peer: `${host.slice(0, 10)}ff`, ipv4: '198.18.20.5/24', ipv6: null, mac: '02:42:c6:12:14:05', joined: true,
  exposed: [], requested: [], createdAt: 1,
  mappings: Array.from({ length: mappings }, (_, i) => ({ proto: 'tcp' as const, family: 4 as const, hostIp: '0.0.0.0', hostPort: 8000 + i, containerIp: '198.18.20.5', containerPort: 80 })),
});
const MARK = 0x63123456;
const link = (name: string, kind: string | null, master: string | null = null, addrs: string[] = [], up = true, group = MARK): KernelLink => ({ name, kind, master, up, addrs, group });
const healthyBridge = link(BR, 'bridge', null, ['198.18.20.1/24']);

function plan(p: Partial<ReconcileInput> & { links: KernelLink[] }) {
  return planReconcile({
    networks: p.networks ?? [net],
    endpoints: p.endpoints ?? [],
    intents: p.intents ?? [],
    kernel: { links: new Map(p.links.map((l) => [l.name, l])) },
    ownerGroup: MARK,
  });
}
const intent = (batchId: number, items: Intent['items']): Intent => ({ batchId, createdAt: batchId, items });

test('a healthy system needs nothing', () => {
  const p = plan({ endpoints: [epRec('e1', 'veth0000001')], links: [healthyBridge, link('veth0000001', 'veth', BR)] });
  assert.deepEqual(p.findings, []);
  assert.deepEqual(p.ipLines, []);
});

test('interrupted endpoint creation is undone; interrupted deletion and revocation are finished', () => {
  const p = plan({
    endpoints: [epRec('e2', 'veth0000002'), epRec('e3', 'veth0000003', 2)],
    intents: [intent(7, [
      { kind: 'endpoint-create', endpointId: 'e1', networkId: spec.id, host: 'veth0000001', peer: 'veth00000aa' },
      { kind: 'endpoint-delete', endpointId: 'e2', host: 'veth0000002' },
      { kind: 'ports-revoke', endpointId: 'e3', mappings: [] },
    ])],
    links: [healthyBridge, link('veth0000001', 'veth', BR), link('veth00000aa', 'veth', null, [], true, 0) /* a peer carries no mark */, link('veth0000002', 'veth', BR), link('veth0000003', 'veth', BR)],
  });
  assert.deepEqual(p.clearIntents, [7]);
  assert.deepEqual(p.deleteEndpoints, ['e2']);
  assert.deepEqual(p.putEndpoints.map((e) => [e.id, e.mappings.length]), [['e3', 0]]);
  assert.ok(p.ipLines.includes(`link set dev veth0000001 group ${0x62621000}`));
  assert.ok(p.ipLines.includes(`link set dev veth0000002 group ${0x62621000}`));
  assert.ok(!p.ipLines.some((l) => l.includes('veth00000aa')), 'the peer goes with its host end');
  assert.ok(!p.ipLines.some((l) => l.includes('veth0000003')));
});

test('interrupted network creation: our bridge removed, a user bridge only loses our addresses', () => {
  const ours = plan({ networks: [], intents: [intent(-1, [{ kind: 'network-create', networkId: 'netx', bridge: 'custom0', createdBridge: true, addrs: ['198.18.30.1/24'] }])], links: [link('custom0', 'bridge')] });
  assert.ok(ours.ipLines.includes('link del dev custom0'));
  const users = plan({ networks: [], intents: [intent(-2, [{ kind: 'network-create', networkId: 'nety', bridge: 'userbr', createdBridge: false, addrs: ['198.18.31.1/24'] }])], links: [link('userbr', 'bridge', null, ['198.18.31.1/24'], true, 0)] });
  assert.ok(!users.ipLines.includes('link del dev userbr'), 'never delete a user bridge');
  assert.ok(users.ipLines.includes('address del 198.18.31.1/24 dev userbr'));
});

test('interrupted network deletion is finished, endpoints included', () => {
  const p = plan({
    endpoints: [epRec('e1', 'veth0000001')],
    intents: [intent(9, [{ kind: 'network-delete', networkId: spec.id, bridge: BR, createdBridge: true }])],
    links: [healthyBridge, link('veth0000001', 'veth', BR)],
  });
  assert.deepEqual(p.deleteNetworks, [spec.id]);
  assert.deepEqual(p.deleteEndpoints, ['e1']);
  assert.ok(p.ipLines.includes(`link del dev ${BR}`));
});

test('missing bridge re-created with its address; detached veth re-enslaved; vanished endpoint unbooked', () => {
  const p = plan({ endpoints: [epRec('e1', 'veth0000001'), epRec('e2', 'veth0000002', 1)], links: [link('veth0000001', 'veth', null)] });
  assert.match(p.ipLines[0] ?? '', new RegExp(`^link add name ${BR} group ${MARK} address 02:42:`));
  assert.ok(p.ipLines.includes(`address add 198.18.20.1/24 dev ${BR}`));
  assert.ok(p.ipLines.includes(`link set dev veth0000001 master ${BR}`));
  assert.deepEqual(p.deleteEndpoints, ['e2']);
  assert.ok(p.findings.some((f) => f.kind === 'endpoint-vanished' && f.subject === 'e2'));
  assert.ok(p.sysctls.length > 0);
});

test('orphans are what carries our mark and the books do not explain; names never count', () => {
  const p = plan({
    links: [
      healthyBridge,
      link('vethdead001', 'veth', BR), // ours: our mark, nobody owns it
      link('vethdead002', 'veth', 'docker0'), // ours, on someone else's bridge (a network on docker0)
      link('vethabcdef0', 'veth', 'docker0', [], true, 0), // dockerd's
      link('vethabcdef1', 'veth', BR, [], true, 0), // someone's veth on our bridge: not ours
      link('bb-gone00000', 'bridge'), // ours: our mark, no network
      link('bb-lan', 'bridge', null, [], true, 0), // an operator's, named like ours
      link('docker0', 'bridge', null, [], true, 0),
      link('br-1234', 'bridge', null, [], true, 7),
    ],
  });
  assert.ok(p.ipLines.includes(`link set dev vethdead001 group ${0x62621000}`));
  assert.ok(p.ipLines.includes(`link set dev vethdead002 group ${0x62621000}`));
  assert.ok(p.ipLines.includes('link del dev bb-gone00000'));
  for (const foreign of ['vethabcdef0', 'vethabcdef1', 'bb-lan', 'docker0', 'br-1234']) assert.ok(!p.ipLines.some((l) => l.includes(foreign)), foreign);
});

test('an interrupted creation never removes an unmarked interface that has its name', () => {
  const p = plan({
    networks: [],
    intents: [intent(3, [
      { kind: 'endpoint-create', endpointId: 'e1', networkId: spec.id, host: 'vethuser001', peer: 'vethuser0ff' },
      { kind: 'network-create', networkId: 'netz', bridge: 'bb-user', createdBridge: true, addrs: [] },
    ])],
    links: [link('vethuser001', 'veth', null, [], true, 0), link('bb-user', 'bridge', null, [], true, 0)],
  });
  assert.deepEqual(p.ipLines, []);
});

test("a user's bridge that was down goes down again when an interrupted network is undone", () => {
  const p = plan({
    networks: [],
    intents: [intent(-4, [{ kind: 'network-create', networkId: 'netu', bridge: 'userbr', createdBridge: false, addrs: ['198.18.31.1/24'], restoreDown: true }])],
    links: [link('userbr', 'bridge', null, ['198.18.31.1/24'], true, 0)],
  });
  assert.deepEqual(p.ipLines, ['address del 198.18.31.1/24 dev userbr', 'link set dev userbr down']);
});

test('booked interfaces made before ownership marks get the mark', () => {
  const old: NetworkRecord = { ...net };
  const p = plan({ networks: [old], endpoints: [epRec('e1', 'veth0000001')], links: [link(BR, 'bridge', null, ['198.18.20.1/24'], true, 0), link('veth0000001', 'veth', BR, [], true, 0)] });
  assert.ok(p.ipLines.includes(`link set dev ${BR} group ${MARK}`));
  assert.ok(p.ipLines.includes(`link set dev veth0000001 group ${MARK}`));
  assert.ok(p.findings.some((f) => f.kind === 'ownership-mark' && f.subject === BR));
});

test('a dry run words its findings as what would be done', () => {
  const p = planReconcile({
    networks: [net], endpoints: [epRec('e2', 'veth0000002', 1)], intents: [], ownerGroup: MARK, dryRun: true,
    kernel: { links: new Map([[BR, healthyBridge], ['vethdead001', link('vethdead001', 'veth', BR)]]) },
  });
  assert.ok(p.findings.length >= 2);
  for (const f of p.findings) assert.match(f.detail, /would/, f.detail);
  assert.ok(!p.findings.some((f) => /: removed|unbooked$/.test(f.detail)));
});

test('an endpoint parked and unjoined for ABANDONED_AFTER_MS is removed; joined or running ones never', () => {
  const now = 50_000_000;
  const parkedHost = 'veth0000001';
  const links = [healthyBridge, link(parkedHost, 'veth', BR), link('veth000000ff', 'veth', null, [], true, 0), link('veth0000002', 'veth', BR), link('veth000000ff2', 'veth', null, [], true, 0)];
  const eps = [epRec('e1', parkedHost), { ...epRec('e2', 'veth0000002'), peer: 'veth000000ff2' }];
  const at = (since: number, joined: string[] = []) =>
    planReconcile({ networks: [net], endpoints: eps, intents: [], ownerGroup: MARK, kernel: { links: new Map(links.map((l) => [l.name, l])) }, joined: new Set(joined), parkedSince: new Map([['e1', since], ['e2', since]]), now });
  const fresh = at(now - 60_000);
  assert.deepEqual(fresh.findings, []);
  assert.deepEqual(fresh.parked.sort(), ['e1', 'e2']);
  const old = at(now - ABANDONED_AFTER_MS, ['e2']);
  assert.deepEqual(old.deleteEndpoints, ['e1']);
  assert.ok(old.findings.some((f) => f.kind === 'endpoint-abandoned' && f.subject === 'e1'));
  assert.ok(old.ipLines.includes(`link set dev ${parkedHost} group ${0x62621000}`));
  assert.deepEqual(old.parked, [], 'joined: not parked');
  // Its container end in a container (not in our namespace): never parked.
  const inContainer = planReconcile({ networks: [net], endpoints: [epRec('e3', 'veth0000003')], intents: [], ownerGroup: MARK, kernel: { links: new Map([[BR, healthyBridge], ['veth0000003', link('veth0000003', 'veth', BR)]]) }, joined: new Set(), parkedSince: new Map([['e3', 0]]), now });
  assert.deepEqual([inContainer.parked, inContainer.deleteEndpoints], [[], []]);
});

test('findings name the network and endpoint they concern (for log lines and metrics)', () => {
  const p = plan({ endpoints: [epRec('e9', 'veth0000009')], links: [link(BR, 'bridge', null, ['198.18.20.1/24'], false)] });
  const vanished = p.findings.find((f) => f.kind === 'endpoint-vanished');
  assert.deepEqual([vanished?.networkId, vanished?.endpointId], [spec.id, 'e9']);
  const down = p.findings.find((f) => f.kind === 'bridge-down');
  assert.deepEqual([down?.networkId, down?.endpointId], [spec.id, undefined], 'a bridge finding names its network');
  const undone = plan({ intents: [intent(5, [{ kind: 'endpoint-create', endpointId: 'e7', networkId: spec.id, host: 'veth0000007', peer: 'veth00000ff' }])], links: [healthyBridge] }).findings[0];
  assert.deepEqual([undone?.networkId, undone?.endpointId], [spec.id, 'e7'], 'an unbooked endpoint of an intent too');
});
