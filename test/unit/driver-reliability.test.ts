// The Driver's answers to retries, left-over endpoints and a full disk (issue 10 B, A, G), over
// the fake kernel and a real SqliteStateStore.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { AddressInUseError, EndpointExistsError, NetworkExistsError } from '../../src/errors.js';
import { eid, epReq, netReq, nid, rig } from './driver-rig.js';

const N1 = 'a1a1a1a1a1a1a1a1a1a1';
const E1 = 'e1e1e1e1e1e1e1e1e1e1';
const E2 = 'e2e2e2e2e2e2e2e2e2e2';
const PORT = 'com.docker.network.portmap';

describe('Retries are idempotent', () => {
  test('CreateNetwork again with the same request: done already, nothing new in the kernel', async (t) => {
    const { driver, kernel } = rig(t);
    await driver.createNetwork(netReq(N1));
    const batches = kernel.batches.length;
    await driver.createNetwork(netReq(N1));
    assert.equal(kernel.batches.length, batches);
    await assert.rejects(driver.createNetwork(netReq(N1, '198.18.20.0/24', { 'com.docker.network.driver.mtu': '1400' })), (e: unknown) => e instanceof NetworkExistsError && /different configuration \(mtu\)/.test(e.message));
  });

  test('CreateEndpoint again with the same request: the same reply, one veth', async (t) => {
    const { driver, kernel } = rig(t);
    await driver.createNetwork(netReq(N1));
    const first = await driver.createEndpoint(epReq(N1, E1, '198.18.20.2/24'));
    const links = kernel.links.size;
    const again = await driver.createEndpoint(epReq(N1, E1, '198.18.20.2/24'));
    assert.deepEqual(again, first);
    assert.equal(kernel.links.size, links);
    await assert.rejects(driver.createEndpoint(epReq(N1, E1, '198.18.20.2/24', { MacAddress: '02:42:00:00:00:09' })), (e: unknown) => e instanceof EndpointExistsError && /differs in its MAC address/.test(e.message));
    await assert.rejects(driver.createEndpoint({ ...epReq(N1, E1, '198.18.20.2/24'), Options: { [PORT]: [{ Proto: 6, Port: 80, HostPort: 18180 }] } }), /differs in its published ports/);
  });
});

describe('A new endpoint whose address another endpoint still holds', () => {
  test("the holder's veth is gone: the holder is removed with its published port, the new one created", async (t) => {
    const { driver, kernel, store } = rig(t);
    await driver.createNetwork(netReq(N1));
    await driver.createEndpoint(epReq(N1, E1, '198.18.20.2/24'));
    await driver.join(nid(N1), eid(E1));
    await driver.programExternalConnectivity(nid(N1), eid(E1), { [PORT]: [{ Proto: 6, Port: 80, HostPort: 18181 }] });
    const old = driver.books.endpoints.get(E1);
    assert.ok(old);
    const dnat = [...kernel.rules.keys()].filter((k) => k.includes('--dport 18181'));
    assert.equal(dnat.length, 1);
    kernel.links.delete(old.host); // its container's namespace died, and the pair with it
    kernel.links.delete(old.peer);
    await driver.createEndpoint(epReq(N1, E2, '198.18.20.2/24'));
    assert.equal(driver.books.endpoints.has(E1), false);
    assert.equal(store.loadEndpoints().some((e) => e.id === E1), false);
    assert.deepEqual([...kernel.rules.keys()].filter((k) => k.includes('--dport 18181')), [], "no traffic for the old endpoint's port reaches the new one");
    await driver.programExternalConnectivity(nid(N1), eid(E2), { [PORT]: [{ Proto: 6, Port: 80, HostPort: 18181 }] });
  });

  test('a never-joined holder older than the grace period is left over: replaced', async (t) => {
    const { driver, kernel } = rig(t, { staleEndpointGraceMs: 0 });
    await driver.createNetwork(netReq(N1));
    await driver.createEndpoint(epReq(N1, E1, '198.18.20.2/24'));
    const old = driver.books.endpoints.get(E1);
    await new Promise((r) => setTimeout(r, 5));
    await driver.createEndpoint(epReq(N1, E2, '198.18.20.2/24'));
    assert.equal(driver.books.endpoints.has(E1), false);
    assert.equal(kernel.links.has(old?.host ?? ''), false, "the left-over endpoint's veth is removed");
  });

  test('a never-joined holder within the grace period: refused, nothing changes', async (t) => {
    const { driver, kernel } = rig(t, { staleEndpointGraceMs: 60_000 });
    await driver.createNetwork(netReq(N1));
    await driver.createEndpoint(epReq(N1, E1, '198.18.20.2/24'));
    const links = kernel.links.size;
    await assert.rejects(driver.createEndpoint(epReq(N1, E2, '198.18.20.2/24')), (e: unknown) => e instanceof AddressInUseError && /not joined yet; retry later/.test(e.message));
    assert.equal(kernel.links.size, links);
    assert.ok(driver.books.endpoints.has(E1));
  });

  test('a joined holder, or one whose container end is in a container: refused after a short wait', async (t) => {
    const { driver, kernel } = rig(t, { staleEndpointGraceMs: 0, holderVanishWaitMs: 50 });
    await driver.createNetwork(netReq(N1));
    await driver.createEndpoint(epReq(N1, E1, '198.18.20.2/24'));
    await driver.join(nid(N1), eid(E1));
    await assert.rejects(driver.createEndpoint(epReq(N1, E2, '198.18.20.2/24')), (e: unknown) => e instanceof AddressInUseError && /joined to a container/.test(e.message));
    await driver.leave(nid(N1), eid(E1));
    kernel.links.delete(driver.books.endpoints.get(E1)?.peer ?? ''); // moved into a container's namespace
    await assert.rejects(driver.createEndpoint(epReq(N1, E2, '198.18.20.2/24')), AddressInUseError);
    assert.ok(driver.books.endpoints.has(E1));
  });

  test('a joined holder that vanishes while the new endpoint waits: replaced', async (t) => {
    const { driver, kernel } = rig(t, { holderVanishWaitMs: 2000 });
    await driver.createNetwork(netReq(N1));
    await driver.createEndpoint(epReq(N1, E1, '198.18.20.2/24'));
    await driver.join(nid(N1), eid(E1));
    const old = driver.books.endpoints.get(E1);
    setTimeout(() => {
      kernel.links.delete(old?.host ?? '');
      kernel.links.delete(old?.peer ?? '');
    }, 100);
    await driver.createEndpoint(epReq(N1, E2, '198.18.20.2/24'));
    assert.equal(driver.books.endpoints.has(E1), false);
  });
});

describe('Endpoints whose veth vanished (dockerd restarted without live-restore)', () => {
  test('settleVanished removes them with their ports; a port they held is free again', async (t) => {
    const { driver, kernel } = rig(t);
    await driver.createNetwork(netReq(N1));
    await driver.createEndpoint(epReq(N1, E1, '198.18.20.2/24'));
    await driver.createEndpoint(epReq(N1, E2, '198.18.20.3/24'));
    await driver.programExternalConnectivity(nid(N1), eid(E1), { [PORT]: [{ Proto: 6, Port: 80, HostPort: 18182 }] });
    const gone = driver.books.endpoints.get(E1);
    kernel.links.delete(gone?.host ?? '');
    kernel.links.delete(gone?.peer ?? '');
    assert.equal(await driver.settleVanished(), 1);
    assert.deepEqual([...driver.books.endpoints.keys()], [E2]);
    assert.deepEqual([...kernel.rules.keys()].filter((k) => k.includes('--dport 18182')), []);
    await driver.programExternalConnectivity(nid(N1), eid(E2), { [PORT]: [{ Proto: 6, Port: 80, HostPort: 18182 }] });
  });

  test('a port refused because a vanished endpoint holds it: settled first, then granted', async (t) => {
    const { driver, kernel } = rig(t);
    await driver.createNetwork(netReq(N1));
    await driver.createEndpoint(epReq(N1, E1, '198.18.20.2/24'));
    await driver.createEndpoint(epReq(N1, E2, '198.18.20.3/24'));
    await driver.programExternalConnectivity(nid(N1), eid(E1), { [PORT]: [{ Proto: 6, Port: 80, HostPort: 18183 }] });
    const gone = driver.books.endpoints.get(E1);
    kernel.links.delete(gone?.host ?? '');
    kernel.links.delete(gone?.peer ?? '');
    await driver.programExternalConnectivity(nid(N1), eid(E2), { [PORT]: [{ Proto: 6, Port: 80, HostPort: 18183 }] });
    assert.equal(driver.books.endpoints.has(E1), false);
    assert.equal(driver.books.endpoints.get(E2)?.mappings[0]?.hostPort, 18183);
  });
});

describe('A full disk', () => {
  test('teardown still removes the kernel objects and succeeds; the books catch up when space returns', async (t) => {
    const { driver, kernel, store } = rig(t);
    await driver.createNetwork(netReq(N1));
    await driver.createEndpoint(epReq(N1, E1, '198.18.20.2/24'));
    await driver.createEndpoint(epReq(N1, E2, '198.18.20.3/24'));
    const host = driver.books.endpoints.get(E1)?.host ?? '';
    const full = (): never => {
      throw new Error('SQLITE_FULL: database or disk is full');
    };
    const real = { writeIntent: store.writeIntent.bind(store), commit: store.commit.bind(store), commitAll: store.commitAll.bind(store) };
    Object.assign(store, { writeIntent: full, commit: full, commitAll: full });

    await driver.deleteEndpoint(nid(N1), eid(E1));
    assert.equal(kernel.links.has(host), false, 'the veth is gone');
    assert.equal(driver.books.endpoints.has(E1), false);
    assert.equal(driver.unsavedBookChanges, 1);
    await assert.rejects(driver.createEndpoint(epReq(N1, 'e3e3', '198.18.20.4/24')), /could not write the books/);
    assert.equal(driver.books.endpoints.has('e3e3'), false, 'creation fails cleanly');

    Object.assign(store, real);
    assert.ok(store.loadEndpoints().some((e) => e.id === E1), 'on disk the books still hold it');
    assert.equal(driver.flushUnsavedBooks(), true);
    assert.deepEqual(store.loadEndpoints().map((e) => e.id), [E2]);
    assert.equal(driver.unsavedBookChanges, 0);
  });
});
