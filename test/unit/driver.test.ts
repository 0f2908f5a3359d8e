// The Driver with a stateful fake kernel and a real SqliteStateStore in a temp dir.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { VETH_NAME_RE } from '../../src/domain/names.js';
import { OPT } from '../../src/api/network-options.js';
import {
  EndpointExistsError,
  EndpointNotFoundError,
  InvalidAddressError,
  KernelError,
  NetworkConflictError,
  NetworkExistsError,
  NetworkNotFoundError,
  ShuttingDownError,
} from '../../src/errors.js';
import { eid, epReq, netReq, nid, rig } from './driver-rig.js';
import { FakeKernel } from './fake-kernel.js';

const N1 = 'a1a1a1a1a1a1a1a1a1a1';
const E1 = 'e1e1e1e1e1e1e1e1e1e1';

describe('Driver lifecycle', () => {
  test('create network → create endpoint → join → delete endpoint twice → delete network', async (t) => {
    const { driver, kernel, store } = rig(t);
    await driver.createNetwork(netReq(N1, '198.18.20.0/24', { [OPT.mtu]: '1400' }));
    const br = kernel.link('bb-a1a1a1a1a1a1');
    assert.equal(br.kind, 'bridge');
    assert.equal(br.up, true);
    assert.equal(br.mtu, 1400);
    assert.deepEqual(br.addrs, ['198.18.20.1/24']);
    assert.match(br.mac ?? '', /^02:42:/);
    assert.ok(kernel.ruleCount() > 0, 'network rules installed');
    assert.equal(kernel.sysctls.get('net/ipv4/conf/bb-a1a1a1a1a1a1/route_localnet'), '1');
    assert.equal(store.loadNetworks().length, 1);

    const created = await driver.createEndpoint(epReq(N1, E1, '198.18.20.2/24'));
    assert.deepEqual(created, { Interface: { MacAddress: '02:42:c6:12:14:02' } });
    const ep = driver.books.endpoints.get(E1);
    assert.ok(ep);
    assert.match(ep.host, VETH_NAME_RE);
    assert.match(ep.peer, VETH_NAME_RE);
    const host = kernel.link(ep.host);
    assert.equal(host.master, 'bb-a1a1a1a1a1a1');
    assert.equal(host.up, true);
    assert.equal(host.mtu, 1400);
    assert.equal(kernel.link(ep.peer).master, null);
    assert.equal(store.loadEndpoints().length, 1);

    const join = await driver.join(nid(N1), eid(E1));
    assert.deepEqual(join, {
      InterfaceName: { SrcName: ep.peer, DstPrefix: 'eth' },
      Gateway: '198.18.20.1',
      StaticRoutes: [],
      DisableGatewayService: false,
    });
    await driver.leave(nid(N1), eid(E1));

    await driver.deleteEndpoint(nid(N1), eid(E1));
    assert.equal(kernel.links.has(ep.host), false);
    assert.equal(kernel.links.has(ep.peer), false);
    assert.equal(store.loadEndpoints().length, 0);
    await driver.deleteEndpoint(nid(N1), eid(E1)); // idempotent
    const batchesAfterDelete = kernel.batches.length;

    await driver.deleteNetwork(nid(N1));
    assert.equal(kernel.batches.length, batchesAfterDelete + 1);
    kernel.assertClean();
    assert.equal(store.loadNetworks().length, 0);
    assert.equal(store.loadIntents().length, 0, 'every intent is cleared');
    await driver.deleteNetwork(nid(N1)); // idempotent
  });

  test('join: internal network has no Gateway; IPv6 network has GatewayIPv6; custom iface prefix', async (t) => {
    const { driver } = rig(t);
    await driver.createNetwork(netReq('internal0000000000001', '198.18.21.0/24', { [OPT.ifacePrefix]: 'int' }, { [OPT.internal]: true }));
    await driver.createEndpoint(epReq('internal0000000000001', 'epi', '198.18.21.2/24'));
    const j = await driver.join(nid('internal0000000000001'), eid('epi'));
    assert.equal('Gateway' in j, false);
    assert.equal('GatewayIPv6' in j, false);
    assert.equal(j.InterfaceName.DstPrefix, 'int');

    await driver.createNetwork({
      NetworkID: nid('v6net00000000000001'),
      Options: { [OPT.enableIpv6]: true },
      IPv4Data: [{ Pool: '198.18.22.0/24', Gateway: '198.18.22.1/24' }],
      IPv6Data: [{ Pool: 'fd00:22::/64', Gateway: 'fd00:22::1/64' }],
    });
    const r = await driver.createEndpoint({ ...epReq('v6net00000000000001', 'ep6', '198.18.22.2/24'), Interface: { Address: '198.18.22.2/24', AddressIPv6: 'fd00:22::2/64' } });
    assert.deepEqual(r, { Interface: { MacAddress: '02:42:c6:12:16:02' } });
    const j6 = await driver.join(nid('v6net00000000000001'), eid('ep6'));
    assert.equal(j6.Gateway, '198.18.22.1');
    assert.equal(j6.GatewayIPv6, 'fd00:22::1');
  });

  test('an endpoint with a MAC and no derived IPv6 gets an empty answer', async (t) => {
    const { driver } = rig(t);
    await driver.createNetwork(netReq(N1));
    assert.deepEqual(await driver.createEndpoint(epReq(N1, E1, '198.18.20.9/24', { MacAddress: '02:00:00:00:00:09' })), {});
  });
});

describe('Driver refusals', () => {
  test('duplicate network id', async (t) => {
    const { driver } = rig(t);
    await driver.createNetwork(netReq(N1));
    await driver.createNetwork(netReq(N1)); // a retry of the same request: done already
    await assert.rejects(driver.createNetwork(netReq(N1, '198.18.30.0/24')), (e: unknown) => e instanceof NetworkExistsError && e.message === `network ${N1} exists with a different configuration (ipv4)`);
  });

  test('duplicate endpoint', async (t) => {
    const { driver, kernel } = rig(t);
    await driver.createNetwork(netReq(N1));
    await driver.createEndpoint(epReq(N1, E1, '198.18.20.2/24'));
    const links = kernel.links.size;
    await assert.rejects(driver.createEndpoint(epReq(N1, E1, '198.18.20.3/24')), EndpointExistsError);
    assert.equal(kernel.links.size, links, 'nothing created for the refused endpoint');
  });

  test('conflicting subnet and same bridge name', async (t) => {
    const { driver } = rig(t);
    await driver.createNetwork(netReq(N1, '198.18.20.0/24', { [OPT.bridgeName]: 'br-one' }));
    await assert.rejects(
      driver.createNetwork(netReq('b2b2b2b2b2b2b2b2', '198.18.20.0/25')),
      (e: unknown) =>
        e instanceof NetworkConflictError &&
        e.message === `cannot create network b2b2b2b2b2b2b2b2 (bb-b2b2b2b2b2b2): conflicts with network ${N1} (br-one): networks have overlapping IPv4`,
    );
    await assert.rejects(driver.createNetwork(netReq('c3c3c3c3c3c3', '198.18.40.0/24', { [OPT.bridgeName]: 'br-one' })), /networks have same bridge name/);
  });

  test('a bridge name that is an existing non-bridge link', async (t) => {
    const { driver, kernel } = rig(t);
    kernel.addLink('vethforeign', 'veth');
    await assert.rejects(driver.createNetwork(netReq(N1, '198.18.20.0/24', { [OPT.bridgeName]: 'vethforeign' })), /existing interface vethforeign is not a bridge/);
    kernel.assertClean(['vethforeign']);
  });

  test('unknown network / endpoint', async (t) => {
    const { driver } = rig(t);
    await assert.rejects(driver.createEndpoint(epReq('nope', E1, '198.18.20.2/24')), NetworkNotFoundError);
    await assert.rejects(driver.join(nid('nope'), eid(E1)), EndpointNotFoundError);
    await assert.rejects(driver.endpointOperInfo(nid('nope'), eid(E1)), EndpointNotFoundError);
    await assert.rejects(driver.programExternalConnectivity(nid('nope'), eid(E1), {}), EndpointNotFoundError);
    await driver.revokeExternalConnectivity(nid('nope'), eid(E1)); // teardown: success
    await driver.deleteEndpoint(nid('nope'), eid(E1));
    await driver.deleteNetwork(nid('nope'));
  });

  test('bad endpoint address', async (t) => {
    const { driver } = rig(t);
    await driver.createNetwork(netReq(N1));
    await assert.rejects(driver.createEndpoint(epReq(N1, E1, '198.18.99.2/24')), InvalidAddressError);
    assert.equal(driver.books.endpoints.size, 0);
  });

  test('100 concurrent CreateNetwork with the same subnet: exactly one succeeds', async (t) => {
    const { driver, kernel, store } = rig(t);
    const ids = Array.from({ length: 100 }, (_, i) => `race${String(i).padStart(4, '0')}`);
    const rs = await Promise.allSettled(ids.map((id) => driver.createNetwork(netReq(id, '198.18.50.0/24'))));
    const ok = rs.filter((r) => r.status === 'fulfilled');
    assert.equal(ok.length, 1);
    for (const r of rs) if (r.status === 'rejected') assert.ok(r.reason instanceof NetworkConflictError, String(r.reason));
    assert.equal([...kernel.links.values()].filter((l) => l.kind === 'bridge').length, 1);
    assert.equal(store.loadNetworks().length, 1);
    assert.equal(driver.books.networks.size, 1);
  });
});

describe('Driver batching and books', () => {
  test('concurrent endpoints share batches; each batch is booked in one transaction', async (t) => {
    const { driver, kernel, commits } = rig(t);
    await driver.createNetwork(netReq(N1));
    kernel.faults.delayMs = 5;
    const before = kernel.batches.length;
    commits.length = 0;
    const rs = await Promise.all(Array.from({ length: 30 }, (_, i) => driver.createEndpoint(epReq(N1, `ep${i}`, `198.18.20.${i + 2}/24`))));
    assert.equal(rs.length, 30);
    const batches = kernel.batches.length - before;
    assert.ok(batches < 30, `expected batching, got ${batches} batches for 30 endpoints`);
    assert.equal(commits.length, batches, 'one commit per batch');
    assert.equal(commits.flatMap((c) => c.putEndpoints ?? []).length, 30);
    for (const c of commits) assert.equal(c.clearIntents?.length, 1, 'each commit clears its own intent');
    for (const l of kernel.links.values()) if (l.kind === 'veth' && l.up) assert.equal(l.master, 'bb-a1a1a1a1a1a1');
    // delete them all concurrently: veth deletions go through link groups
    await Promise.all(Array.from({ length: 30 }, (_, i) => driver.deleteEndpoint(nid(N1), eid(`ep${i}`))));
    assert.ok(kernel.scripts.some((s) => /^link del group \d+$/m.test(s)));
    await driver.deleteNetwork(nid(N1));
    kernel.assertClean();
  });

  test('a veth name taken by someone else: retried with fresh names', async (t) => {
    const { driver, kernel } = rig(t);
    await driver.createNetwork(netReq(N1));
    let failures = 0;
    kernel.faults.ipLine = (line) => (line.startsWith('link add name veth') && failures++ < 2 ? 'RTNETLINK answers: File exists' : null);
    await driver.createEndpoint(epReq(N1, E1, '198.18.20.2/24'));
    assert.equal(failures, 3);
    assert.ok(driver.books.endpoints.has(E1));
  });

  test('a kernel failure: KernelError, nothing booked, the endpoint can be created again', async (t) => {
    const { driver, kernel, store } = rig(t);
    await driver.createNetwork(netReq(N1));
    kernel.faults.ipLine = (line) => (line.startsWith('link add name veth') ? 'RTNETLINK answers: Operation not permitted' : null);
    await assert.rejects(driver.createEndpoint(epReq(N1, E1, '198.18.20.2/24')), (e: unknown) => e instanceof KernelError && /Operation not permitted/.test(e.message));
    assert.equal(driver.books.endpoints.size, 0);
    assert.equal(store.loadEndpoints().length, 0);
    kernel.faults = {};
    await driver.createEndpoint(epReq(N1, E1, '198.18.20.2/24'));
  });

  test('a worker that dies: the request fails, the next one works', async (t) => {
    const { driver, kernel } = rig(t);
    await driver.createNetwork(netReq(N1));
    kernel.faults.batchThrows = () => true;
    await assert.rejects(driver.createEndpoint(epReq(N1, E1, '198.18.20.2/24')), /fake worker died/);
    kernel.faults = {};
    await driver.createEndpoint(epReq(N1, E1, '198.18.20.2/24'));
  });

  test('a failed bridge setup is rolled back', async (t) => {
    const { driver, kernel, store } = rig(t);
    kernel.faults.ipLine = (line) => (line.startsWith('address add') ? 'RTNETLINK answers: Permission denied' : null);
    await assert.rejects(driver.createNetwork(netReq(N1)), KernelError);
    kernel.faults = {};
    kernel.assertClean();
    assert.equal(store.loadNetworks().length, 0);
    await driver.createNetwork(netReq(N1));
  });

  test('books survive reopening the store', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'bbt-unit-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const kernel = new FakeKernel();
    const first = rig(t, { dir, kernel });
    await first.driver.createNetwork(netReq(N1, '198.18.20.0/24', { [OPT.icc]: 'false' }));
    await first.driver.createEndpoint(epReq(N1, E1, '198.18.20.2/24'));
    const ep = first.driver.books.endpoints.get(E1);
    await first.close();

    const second = rig(t, { dir, kernel });
    const net = second.driver.books.networks.get(N1);
    assert.ok(net, 'network survives');
    assert.equal(net.spec.icc, false);
    assert.equal(net.createdBridge, true);
    assert.deepEqual(second.driver.books.endpoints.get(E1), ep);
    assert.equal((await second.driver.join(nid(N1), eid(E1))).InterfaceName.SrcName, ep?.peer);
    // the reopened driver can still tear everything down
    await second.driver.deleteNetwork(nid(N1));
    kernel.assertClean();
    await second.close();
  });

  test("a user's bridge is used, not created, and not deleted", async (t) => {
    const { driver, kernel } = rig(t);
    kernel.addLink('br-user', 'bridge', ['198.18.60.1/24']);
    await driver.createNetwork(netReq(N1, '198.18.60.0/24', { [OPT.bridgeName]: 'br-user' }, { [OPT.enableIpv6]: true }));
    const rec = driver.books.networks.get(N1);
    assert.equal(rec?.createdBridge, false);
    assert.deepEqual(rec?.addedAddrs, ['fe80::1/64']);
    assert.deepEqual(kernel.link('br-user').addrs, ['198.18.60.1/24', 'fe80::1/64']);
    await driver.createEndpoint(epReq(N1, E1, '198.18.60.2/24'));
    await driver.deleteNetwork(nid(N1));
    kernel.assertClean(['br-user']);
    assert.deepEqual(kernel.link('br-user').addrs, ['198.18.60.1/24']);
  });

  test('drain: work accepted before finishes, later work is refused', async (t) => {
    const { driver } = rig(t);
    await driver.createNetwork(netReq(N1));
    const p = driver.createEndpoint(epReq(N1, E1, '198.18.20.2/24'));
    await driver.drain();
    await p;
    await assert.rejects(driver.createEndpoint(epReq(N1, 'other', '198.18.20.3/24')), ShuttingDownError);
    await assert.rejects(driver.createNetwork(netReq('zzzz')), ShuttingDownError);
  });
});

describe('Write-behind deletion (--write-behind-deletes, DeleteEndpoint under churn)', () => {
  const C = 'c0c0c0c0c0c0c0c0c0c0';

  test('while veth work runs, DeleteEndpoint answers first; the deletion is durable, its names stay reserved, and it happens next', async (t) => {
    const { driver, kernel, store } = rig(t, { writeBehindDeletes: true });
    await driver.createNetwork(netReq(N1));
    await driver.createEndpoint(epReq(N1, E1, '198.18.20.2/24'));
    const host = driver.books.endpoints.get(E1)?.host ?? '';
    assert.ok(kernel.links.has(host));
    kernel.faults.delayMs = 40;
    const busy = driver.createEndpoint(epReq(N1, C, '198.18.20.3/24')); // keeps the veth pipeline busy
    await driver.deleteEndpoint(nid(N1), eid(E1));
    // Answered, and the kernel has not been asked yet.
    assert.ok(kernel.links.has(host), 'the veth is still there when DeleteEndpoint answers');
    assert.equal(driver.books.endpoints.has(E1), false);
    assert.equal(store.loadEndpoints().some((e) => e.id === E1), false, 'unbooked on disk before answering');
    assert.deepEqual(
      store.loadIntents().flatMap((i) => i.items).filter((it) => it.kind === 'endpoint-delete'),
      [{ kind: 'endpoint-delete', endpointId: E1, host }],
      'the deletion is durable (an intent reconciliation would finish after a crash)',
    );
    assert.ok(driver.books.isNameTaken(host), 'a fresh endpoint cannot get the doomed name');
    await busy;
    await driver.settleDeferred();
    assert.equal(kernel.links.has(host), false);
    assert.equal(driver.books.isNameTaken(host), false);
    assert.deepEqual(store.loadIntents(), []);
  });

  test('an idle plugin deletes before answering, as the built-in driver does', async (t) => {
    const { driver, kernel } = rig(t, { writeBehindDeletes: true });
    await driver.createNetwork(netReq(N1));
    await driver.createEndpoint(epReq(N1, E1, '198.18.20.2/24'));
    const host = driver.books.endpoints.get(E1)?.host ?? '';
    await driver.deleteEndpoint(nid(N1), eid(E1));
    assert.equal(kernel.links.has(host), false);
  });

  test('DeleteNetwork waits for write-behind deletions, so the bridge goes last and nothing is left', async (t) => {
    const { driver, kernel, store } = rig(t, { writeBehindDeletes: true });
    await driver.createNetwork(netReq(N1));
    await Promise.all(Array.from({ length: 10 }, (_, i) => driver.createEndpoint(epReq(N1, `ep${i}`, `198.18.20.${i + 2}/24`))));
    kernel.faults.delayMs = 20;
    await Promise.all(Array.from({ length: 10 }, (_, i) => driver.deleteEndpoint(nid(N1), eid(`ep${i}`))));
    await driver.deleteNetwork(nid(N1));
    kernel.assertClean();
    assert.deepEqual(store.loadIntents(), []);
  });

  test('a write-behind deletion that fails keeps its intent for reconciliation', async (t) => {
    const { driver, kernel, store } = rig(t, { writeBehindDeletes: true });
    await driver.createNetwork(netReq(N1));
    await driver.createEndpoint(epReq(N1, E1, '198.18.20.2/24'));
    kernel.faults.delayMs = 20;
    kernel.faults.ipLine = (line) => (line.startsWith('link set dev veth') ? 'RTNETLINK answers: Operation not permitted' : null);
    const busy = driver.createEndpoint(epReq(N1, C, '198.18.20.3/24'));
    await driver.deleteEndpoint(nid(N1), eid(E1));
    await busy;
    await driver.settleDeferred();
    assert.equal(store.loadIntents().flatMap((i) => i.items).filter((it) => it.kind === 'endpoint-delete').length, 1);
  });

  test('without the option, DeleteEndpoint answers only once the veth is gone, even under churn', async (t) => {
    const { driver, kernel } = rig(t);
    await driver.createNetwork(netReq(N1));
    await driver.createEndpoint(epReq(N1, E1, '198.18.20.2/24'));
    const host = driver.books.endpoints.get(E1)?.host ?? '';
    kernel.faults.delayMs = 40;
    const busy = driver.createEndpoint(epReq(N1, C, '198.18.20.3/24'));
    await driver.deleteEndpoint(nid(N1), eid(E1));
    assert.equal(kernel.links.has(host), false);
    await busy;
  });
});
