// The Driver in-process with the real PiscinaExecutor (worker threads running ip/iptables) and
// SQLite books in a temp dir, in the runner's private network namespace.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, test, type TestContext } from 'node:test';
import { pino } from 'pino';
import { parseEndpointId, parseNetworkId } from '../../src/domain/names.js';
import { OPT } from '../../src/api/network-options.js';
import type { Engine } from '../../src/engine/engine.js';
import { SqliteStateStore } from '../../src/state/sqlite-store.js';
import { PiscinaExecutor } from '../../src/workers/pool.js';
import type { TestDriver } from '../unit/driver-rig.js';
import { kernelDriver, WORKER_CONFIG } from './engine-kit.js';
import { runOk } from '../helpers/proc.js';
import { addrs, assertPrivateNetns, deleteLinks, iptablesSave, linkMap, linkNames, removeOurFirewall } from './bb-kernel.js';

before(() => assertPrivateNetns());

interface KRig {
  driver: TestDriver;
  engine: Engine;
  exec: PiscinaExecutor;
  store: SqliteStateStore;
  dir: string;
}

/** Driver + real workers + books; on teardown removes every link and BB- rule the test made. */
async function krig(t: TestContext): Promise<KRig> {
  const baselineLinks = await linkNames();
  const dir = mkdtempSync(join(tmpdir(), 'bbt-netns-'));
  const store = new SqliteStateStore(dir);
  const exec = new PiscinaExecutor(WORKER_CONFIG, 2);
  const { driver, engine } = kernelDriver(store, exec, pino({ level: 'silent' }), { batchMax: 64 });
  t.after(async () => {
    await driver.close();
    await exec.close();
    store.close();
    rmSync(dir, { recursive: true, force: true });
    const now = await linkNames();
    await deleteLinks(now.filter((n) => !baselineLinks.includes(n)));
    await removeOurFirewall();
  });
  return { driver, engine, exec, store, dir };
}

const nid = parseNetworkId;
const eid = parseEndpointId;

function netReq(id: string, pool: string, generic: Record<string, unknown> = {}) {
  return {
    NetworkID: nid(id),
    Options: { [OPT.generic]: generic },
    IPv4Data: [{ Pool: pool, Gateway: pool.replace(/0\/(\d+)$/, '1/$1') }],
    IPv6Data: [],
  };
}

describe('Driver with real workers', () => {
  test('network with MTU 1400, 20 concurrent endpoints, firewall sync, teardown leaves nothing', async (t) => {
    const baseline = await linkNames();
    const { driver, engine } = await krig(t);
    await engine.syncFirewall();
    let save4 = await iptablesSave(4);
    for (const want of [':BB-FORWARD', ':BB-ISOLATION-1', ':BB-ISOLATION-2', ':BB-DNAT', ':BB-POSTROUTING', '-A FORWARD -j BB-FORWARD', '-A POSTROUTING -j BB-POSTROUTING']) {
      assert.ok(save4.includes(want), `iptables-save lacks ${want}`);
    }
    assert.ok((await iptablesSave(6)).includes(':BB-FORWARD'), 'ip6tables chains too');

    const NET = 'k1k1k1k1k1k1k1k1k1k1';
    await driver.createNetwork(netReq(NET, '198.18.120.0/24', { [OPT.mtu]: '1400' }));
    const br = 'bb-k1k1k1k1k1k1';
    const m0 = await linkMap();
    const brl = m0.get(br);
    assert.ok(brl, 'bridge exists');
    assert.equal(brl.linkinfo?.info_kind, 'bridge');
    assert.ok(brl.flags.includes('UP'), 'bridge is up');
    assert.equal(brl.mtu, 1400);
    assert.deepEqual((await addrs(br)).filter((a) => !a.startsWith('fe80:')), ['198.18.120.1/24']);
    assert.equal(readFileSync(`/proc/sys/net/ipv4/conf/${br}/route_localnet`, 'utf8').trim(), '1');
    save4 = await iptablesSave(4);
    assert.ok(save4.includes(`-A BB-FORWARD -o ${br} -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "bb:net=k1k1k1k1k1k1" -j ACCEPT`));
    assert.ok(save4.includes(`-A BB-POSTROUTING -s 198.18.120.0/24 ! -o ${br} -m comment --comment "bb:net=k1k1k1k1k1k1" -j MASQUERADE`));

    const eps = Array.from({ length: 20 }, (_, i) => `ep${String(i).padStart(2, '0')}`);
    const answers = await Promise.all(
      eps.map((e, i) => driver.createEndpoint({ NetworkID: nid(NET), EndpointID: eid(e), Interface: { Address: `198.18.120.${i + 2}/24` }, Options: {} })),
    );
    answers.forEach((a, i) => assert.deepEqual(a, { Interface: { MacAddress: `02:42:c6:12:78:${(i + 2).toString(16).padStart(2, '0')}` } }));
    const m1 = await linkMap();
    for (const e of eps) {
      const rec = driver.books.endpoints.get(e);
      assert.ok(rec);
      const host = m1.get(rec.host);
      const peer = m1.get(rec.peer);
      assert.equal(host?.master, br, `${e}: host side on the bridge`);
      assert.ok(host?.flags.includes('UP'));
      assert.equal(host?.mtu, 1400);
      assert.equal(host?.txqlen ?? 0, 0);
      assert.equal(peer?.master, undefined);
      assert.equal(peer?.mtu, 1400);
      const j = await driver.join(nid(NET), eid(e));
      assert.equal(j.InterfaceName.SrcName, rec.peer);
      assert.equal(j.Gateway, '198.18.120.1');
    }

    // (iptables-save quotes comments)
    // a full sync with a network in the books: our rules once, hooks once
    await engine.syncFirewall();
    save4 = await iptablesSave(4);
    assert.equal(save4.split('\n').filter((l) => l === '-A FORWARD -j BB-FORWARD').length, 1);
    assert.equal(save4.split('\n').filter((l) => l.includes(`-A BB-FORWARD -o ${br} -m comment --comment "bb:net=k1k1k1k1k1k1" -j DROP`)).length, 1);

    await Promise.all(eps.map((e) => driver.deleteEndpoint(nid(NET), eid(e))));
    await driver.deleteNetwork(nid(NET));
    assert.deepEqual(await linkNames(), baseline, 'nothing left but what was there (lo)');
    for (const family of [4, 6] as const) {
      const save = await iptablesSave(family);
      assert.ok(!save.includes('bb:ep='), `no endpoint rule left (IPv${family})`);
      assert.ok(!save.includes('bb:net='), `no network rule left (IPv${family})`);
    }
    assert.equal(driver.books.networks.size, 0);
  });

  test("a user's bridge is used and not deleted with the network", async (t) => {
    const { driver, engine } = await krig(t);
    await engine.syncFirewall();
    await runOk(['ip', 'link', 'add', 'br-user', 'type', 'bridge']);
    const NET = 'u1u1u1u1u1u1u1u1';
    await driver.createNetwork(netReq(NET, '198.18.121.0/24', { [OPT.bridgeName]: 'br-user' }));
    assert.equal(driver.books.networks.get(NET)?.createdBridge, false);
    assert.deepEqual((await addrs('br-user')).filter((a) => !a.startsWith('fe80:')), ['198.18.121.1/24']);
    assert.ok((await linkMap()).get('br-user')?.flags.includes('UP'));
    await driver.createEndpoint({ NetworkID: nid(NET), EndpointID: eid('u-ep1'), Interface: { Address: '198.18.121.2/24' }, Options: {} });
    const host = driver.books.endpoints.get('u-ep1')?.host;
    assert.equal(host !== undefined && (await linkMap()).get(host)?.master, 'br-user');

    await driver.deleteNetwork(nid(NET));
    const m = await linkMap();
    assert.ok(m.has('br-user'), 'the user bridge survives');
    assert.equal(host !== undefined && m.has(host), false, 'our veth is gone');
    assert.deepEqual((await addrs('br-user')).filter((a) => !a.startsWith('fe80:')), [], 'the address we added is removed');
    assert.ok(!(await iptablesSave(4)).includes('bb:net='));
    await deleteLinks(['br-user']);
  });

  test('a bridge address the user already had is left in place', async (t) => {
    const { driver, engine } = await krig(t);
    await engine.syncFirewall();
    await runOk(['ip', 'link', 'add', 'br-user2', 'type', 'bridge']);
    await runOk(['ip', 'addr', 'add', '198.18.122.1/24', 'dev', 'br-user2']);
    const NET = 'u2u2u2u2u2u2u2u2';
    await driver.createNetwork(netReq(NET, '198.18.122.0/24', { [OPT.bridgeName]: 'br-user2' }));
    assert.deepEqual(driver.books.networks.get(NET)?.addedAddrs, []);
    await driver.deleteNetwork(nid(NET));
    assert.deepEqual((await addrs('br-user2')).filter((a) => !a.startsWith('fe80:')), ['198.18.122.1/24']);
    await deleteLinks(['br-user2']);
  });
});
