// applyIpWork (src/ip/apply.ts) and runBatch (src/workers/batch-worker.ts) against the real
// kernel with the real `ip`, in the runner's private network namespace.
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, test, type TestContext } from 'node:test';
import type { BatchRequest, OpWork } from '../../src/batching/work.js';
import { applyIpWork, noteBridgeEpoch } from '../../src/ip/apply.js';
import type { IpOp } from '../../src/ip/ops.js';
import { planIpBatch, type IpWork } from '../../src/ip/plan.js';
import { ipSessionStats } from '../../src/ip/session.js';
import { toolEnv } from '../../src/tools/env.js';
import { DEFAULT_TOOLS } from '../../src/tools/paths.js';
import { runBatch } from '../../src/workers/batch-worker.js';
import { workerEnv } from '../../src/workers/env.js';
import { WORKER_CONFIG } from './engine-kit.js';
import { runOk } from '../helpers/proc.js';
import { addrs, assertPrivateNetns, deleteLinks, linkMap, linkNames } from './bb-kernel.js';

const GROUP = 0x62620000 + 4001;
let seq = 0;

before(() => assertPrivateNetns());

/** A bridge made through applyIpWork, deleted (with anything left on it) after the test. */
async function bridge(t: TestContext, opts: { mtu?: number; addr?: string } = {}): Promise<string> {
  const name = `bbt-br${++seq}`;
  const baseline = await linkNames();
  t.after(async () => {
    const now = await linkNames();
    await deleteLinks(now.filter((n) => !baseline.includes(n)));
  });
  const r = await applyIpWork(
    [
      { opId: 1, ops: [{ kind: 'bridge-create', bridge: name, mac: '02:42:c6:12:00:01', mtu: opts.mtu ?? 0 }] },
      { opId: 2, ops: [{ kind: 'bridge-addrs', bridge: name, addrs: [opts.addr ?? '198.18.100.1/24'], up: true }] },
    ],
    GROUP,
    toolEnv(),
  );
  assert.deepEqual([...r.failed], []);
  assert.equal(r.spawns, 1);
  return name;
}

const vethPair = (i: number): { host: string; peer: string } => ({ host: `bbth${seq}x${i}`, peer: `bbtp${seq}x${i}` });

describe('applyIpWork on the kernel', () => {
  test('bridge create: up, with its address, MAC and MTU', async (t) => {
    const br = await bridge(t, { mtu: 1400, addr: '198.18.101.1/24' });
    const l = (await linkMap()).get(br);
    assert.ok(l);
    assert.equal(l.linkinfo?.info_kind, 'bridge');
    assert.ok(l.flags.includes('UP'));
    assert.equal(l.mtu, 1400);
    assert.deepEqual((await addrs(br)).filter((a) => !a.startsWith('fe80:')), ['198.18.101.1/24']);
    // adding the same address again is tolerated ("File exists")
    const again = await applyIpWork([{ opId: 9, ops: [{ kind: 'bridge-addrs', bridge: br, addrs: ['198.18.101.1/24'], up: true }] }], GROUP, toolEnv());
    assert.deepEqual([...again.failed], []);
  });

  test('50 veths in one batch: on the bridge, txqlen 0, MTU, host side up, peer down without master', async (t) => {
    const br = await bridge(t);
    const pairs = Array.from({ length: 50 }, (_, i) => vethPair(i));
    const works: IpWork[] = pairs.map((p, i) => ({ opId: i + 1, ops: [{ kind: 'veth-create', host: p.host, peer: p.peer, bridge: br, mtu: 1400 }] }));
    const r = await applyIpWork(works, GROUP, toolEnv());
    assert.deepEqual([...r.failed], []);
    assert.equal(r.spawns, 1, 'one ip process for the whole batch');
    const m = await linkMap();
    for (const p of pairs) {
      const host = m.get(p.host);
      const peer = m.get(p.peer);
      assert.ok(host && peer, `${p.host}/${p.peer} exist`);
      assert.equal(host.master, br);
      assert.equal(host.linkinfo?.info_kind, 'veth');
      assert.ok(host.flags.includes('UP'), `${p.host} is up`);
      assert.equal(host.mtu, 1400);
      // iproute2 omits "txqlen" when it is 0 (older versions print "txqlen":0); veths default to 1000
      assert.equal(host.txqlen ?? 0, 0, `${p.host} txqlen`);
      assert.equal(peer.master, undefined, `${p.peer} has no master`);
      assert.ok(!peer.flags.includes('UP'), `${p.peer} stays down`);
      assert.equal(peer.mtu, 1400);
      assert.equal(peer.txqlen ?? 0, 0, `${p.peer} txqlen`);
      assert.equal(peer.link, p.host, 'the two ends are one pair');
    }
  });

  test('without an MTU the veths keep the kernel default', async (t) => {
    const br = await bridge(t);
    const p = vethPair(0);
    const r = await applyIpWork([{ opId: 1, ops: [{ kind: 'veth-create', host: p.host, peer: p.peer, bridge: br, mtu: 0 }] }], GROUP, toolEnv());
    assert.deepEqual([...r.failed], []);
    assert.equal((await linkMap()).get(p.host)?.mtu, 1500);
  });

  test('one impossible op in a batch of good ones fails only that op', async (t) => {
    const br = await bridge(t);
    const taken = vethPair(99);
    await applyIpWork([{ opId: 1, ops: [{ kind: 'veth-create', host: taken.host, peer: taken.peer, bridge: br, mtu: 0 }] }], GROUP, toolEnv());
    const good = Array.from({ length: 5 }, (_, i) => vethPair(i));
    const works: IpWork[] = [
      ...good.slice(0, 2).map((p, i) => ({ opId: 10 + i, ops: [{ kind: 'veth-create', host: p.host, peer: p.peer, bridge: br, mtu: 0 } as IpOp] })),
      // the host name exists already
      { opId: 20, ops: [{ kind: 'veth-create', host: taken.host, peer: `bbtq${seq}x1`, bridge: br, mtu: 0 }] },
      ...good.slice(2).map((p, i) => ({ opId: 30 + i, ops: [{ kind: 'veth-create', host: p.host, peer: p.peer, bridge: br, mtu: 0 } as IpOp] })),
    ];
    const r = await applyIpWork(works, GROUP, toolEnv());
    assert.deepEqual([...r.failed.keys()], [20]);
    assert.match(r.failed.get(20) ?? '', /File exists/);
    const m = await linkMap();
    for (const p of good) assert.equal(m.get(p.host)?.master, br, `${p.host} was created`);
    assert.equal(m.has(`bbtq${seq}x1`), false);
  });

  test('a line that makes ip stop early: the kernel is asked which ops took effect', async (t) => {
    const br = await bridge(t);
    const [a, b, c] = [vethPair(1), vethPair(2), vethPair(3)];
    const works: IpWork[] = [
      { opId: 1, ops: [{ kind: 'veth-create', host: a.host, peer: a.peer, bridge: br, mtu: 0 }] },
      // a master that does not exist is a syntax-level error: ip -force exits at once
      { opId: 2, ops: [{ kind: 'veth-create', host: b.host, peer: b.peer, bridge: 'bbt-nosuch', mtu: 0 }] },
      { opId: 3, ops: [{ kind: 'veth-create', host: c.host, peer: c.peer, bridge: br, mtu: 0 }] },
    ];
    const r = await applyIpWork(works, GROUP, toolEnv());
    assert.deepEqual([...r.failed.keys()].sort(), [2, 3]);
    assert.match(r.failed.get(2) ?? '', /Device does not exist|bbt-nosuch/);
    assert.equal(r.spawns, 2, 'the script, then one look at the kernel');
    const m = await linkMap();
    assert.equal(m.get(a.host)?.master, br, 'the op before the failure stands');
    assert.equal(m.has(b.host), false);
    assert.equal(m.has(c.host), false);
  });

  test('delete by link group: all gone, one group-delete line; deleting them again is success', async (t) => {
    const br = await bridge(t);
    const pairs = Array.from({ length: 50 }, (_, i) => vethPair(i));
    const created = await applyIpWork(
      pairs.map((p, i) => ({ opId: i + 1, ops: [{ kind: 'veth-create', host: p.host, peer: p.peer, bridge: br, mtu: 0 }] })),
      GROUP,
      toolEnv(),
    );
    assert.deepEqual([...created.failed], []);
    const dels: IpWork[] = pairs.map((p, i) => ({ opId: 100 + i, ops: [{ kind: 'veth-delete', host: p.host }] }));
    const plan = planIpBatch(dels, GROUP);
    assert.equal(plan.text.split('\n').filter((l) => l.startsWith('link del group ')).length, 1);
    assert.equal(plan.text.split('\n').filter((l) => l.startsWith('link del ')).length, 1, 'no per-veth delete');
    const t0 = performance.now();
    const r = await applyIpWork(dels, GROUP, toolEnv());
    const ms = performance.now() - t0;
    assert.deepEqual([...r.failed], []);
    assert.equal(r.spawns, 1);
    const names = await linkNames();
    for (const p of pairs) {
      assert.ok(!names.includes(p.host), `${p.host} deleted`);
      assert.ok(!names.includes(p.peer), `${p.peer} deleted with its pair`);
    }
    assert.ok(names.includes(br), 'the bridge stays');
    // 50 single deletes cost ~17 ms each (an RCU grace period); the group pays that once
    assert.ok(ms < 700, `group delete of 50 veths took ${ms.toFixed(0)} ms`);
    // already gone: success, not an error
    const again = await applyIpWork(dels, GROUP, toolEnv());
    assert.deepEqual([...again.failed], []);
    assert.equal(again.spawns, 1);
  });

  test('the group delete leaves links of other groups alone', async (t) => {
    const br = await bridge(t);
    const [a, b] = [vethPair(1), vethPair(2)];
    await applyIpWork(
      [a, b].map((p, i) => ({ opId: i + 1, ops: [{ kind: 'veth-create', host: p.host, peer: p.peer, bridge: br, mtu: 0 } as IpOp] })),
      GROUP,
      toolEnv(),
    );
    const r = await applyIpWork([{ opId: 1, ops: [{ kind: 'veth-delete', host: a.host }] }], GROUP + 1, toolEnv());
    assert.deepEqual([...r.failed], []);
    const m = await linkMap();
    assert.equal(m.has(a.host), false);
    assert.equal(m.get(b.host)?.master, br);
    assert.equal(m.get(b.host)?.group, 'default');
  });

  test('bridge delete (with veths still on it), then again: success', async (t) => {
    const br = await bridge(t);
    const p = vethPair(1);
    await applyIpWork([{ opId: 1, ops: [{ kind: 'veth-create', host: p.host, peer: p.peer, bridge: br, mtu: 0 }] }], GROUP, toolEnv());
    const teardown: IpWork[] = [{ opId: 5, ops: [{ kind: 'veth-delete', host: p.host }, { kind: 'bridge-delete', bridge: br }] }];
    assert.deepEqual([...(await applyIpWork(teardown, GROUP, toolEnv())).failed], []);
    const names = await linkNames();
    assert.ok(!names.includes(br));
    assert.ok(!names.includes(p.host));
    assert.deepEqual([...(await applyIpWork(teardown, GROUP, toolEnv())).failed], []);
  });

  test('addresses removed from a bridge, twice', async (t) => {
    const br = await bridge(t, { addr: '198.18.102.1/24' });
    const rm: IpWork[] = [{ opId: 1, ops: [{ kind: 'bridge-addrs-remove', bridge: br, addrs: ['198.18.102.1/24'] }] }];
    assert.deepEqual([...(await applyIpWork(rm, GROUP, toolEnv())).failed], []);
    assert.deepEqual((await addrs(br)).filter((a) => !a.startsWith('fe80:')), []);
    assert.deepEqual([...(await applyIpWork(rm, GROUP, toolEnv())).failed], []);
  });
});

describe('runBatch on the kernel', () => {
  test('ip work and sysctls of many ops in one batch; a failing op does not sink the others', async (t) => {
    const br = await bridge(t);
    const taken = vethPair(50);
    await runOk(['ip', 'link', 'add', 'name', taken.host, 'type', 'veth', 'peer', 'name', taken.peer]);
    const ops: OpWork[] = Array.from({ length: 10 }, (_, i) => {
      const p = i === 4 ? taken : vethPair(i);
      return { opId: i + 1, ip: [{ kind: 'veth-create', host: p.host, peer: p.peer, bridge: br, mtu: 0 }] };
    });
    ops.push({ opId: 11, sysctls: [{ path: `net/ipv4/conf/${br}/route_localnet`, value: '1', optional: false }] });
    ops.push({ opId: 12, sysctls: [{ path: 'net/ipv4/conf/bbt-nosuch/route_localnet', value: '1', optional: false }] });
    ops.push({ opId: 13, sysctls: [{ path: 'net/ipv4/conf/bbt-nosuch/route_localnet', value: '1', optional: true }] });
    ops.push({ opId: 14, sysctls: [{ path: '../../etc/passwd', value: '1', optional: true }] });
    const req: BatchRequest = { batchId: 7, ops, linkGroup: GROUP };
    const res = await runBatch(req, workerEnv(WORKER_CONFIG));
    assert.equal(res.batchId, 7);
    const byId = new Map(res.results.map((r) => [r.opId, r]));
    assert.equal(res.results.length, 14);
    for (let i = 1; i <= 10; i++) assert.equal(byId.get(i)?.ok, i !== 5, `op ${i}`);
    assert.match(byId.get(5)?.message ?? '', /File exists/);
    assert.equal(byId.get(11)?.ok, true);
    assert.equal(byId.get(12)?.ok, false);
    assert.equal(byId.get(13)?.ok, true, 'optional sysctl');
    assert.equal(byId.get(14)?.ok, false, 'path escape refused');
    assert.equal(res.timings.ipSpawns, 1);
    const { readFileSync } = await import('node:fs');
    assert.equal(readFileSync(`/proc/sys/net/ipv4/conf/${br}/route_localnet`, 'utf8').trim(), '1');

    // teardown in one batch
    const del: BatchRequest = {
      batchId: 8,
      ops: Array.from({ length: 10 }, (_, i) => ({ opId: i + 1, ip: [{ kind: 'veth-delete', host: (i === 4 ? taken : vethPair(i)).host } as IpOp] })),
      linkGroup: GROUP,
    };
    const dres = await runBatch(del, workerEnv(WORKER_CONFIG));
    assert.ok(dres.results.every((r) => r.ok));
    const names = await linkNames();
    for (let i = 0; i < 10; i++) assert.ok(!names.includes(vethPair(i).host));
    assert.ok(!names.includes(taken.host));
  });
});

describe('the long-lived ip session (src/ip/session.ts)', () => {
  test('a bridge made again by someone else (another thread, reconciliation): a new bridge epoch ends the session first', async (t) => {
    const br = await bridge(t);
    const a = vethPair(701);
    const create = (p: { host: string; peer: string }): IpWork[] => [{ opId: 1, ops: [{ kind: 'veth-create', host: p.host, peer: p.peer, bridge: br, mtu: 0 }] }];
    assert.deepEqual([...(await applyIpWork(create(a), GROUP, toolEnv())).failed], []);
    // Not through this thread's applyIpWork: its session never hears of it.
    await runOk(['ip', 'link', 'del', br]);
    await runOk(['ip', 'link', 'add', br, 'type', 'bridge']);
    noteBridgeEpoch(1_000_000 + ++seq);
    const b = vethPair(702);
    assert.deepEqual([...(await applyIpWork(create(b), GROUP, toolEnv())).failed], [], 'a session that kept the old index would fail with "Invalid argument"');
    assert.equal((await linkMap()).get(b.host)?.master, br);
  });

  test('veth batches share one ip process; a bridge batch ends it, so a bridge made again under the same name gets the next veths', async (t) => {
    const br = await bridge(t);
    const startsBefore = ipSessionStats.starts;
    const batchesBefore = ipSessionStats.batches;
    for (let b = 0; b < 5; b++) {
      const p = vethPair(100 + b);
      const r = await applyIpWork([{ opId: 1, ops: [{ kind: 'veth-create', host: p.host, peer: p.peer, bridge: br, mtu: 0 }] }], GROUP, toolEnv());
      assert.deepEqual([...r.failed], []);
    }
    assert.equal(ipSessionStats.batches - batchesBefore, 5);
    assert.equal(ipSessionStats.starts - startsBefore, 1, 'five batches, one ip process');
    // The session has looked up `br` (as a master). Delete the bridge and make it again: a session
    // that kept running would use the old ifindex ("Invalid argument").
    const del = await applyIpWork([{ opId: 1, ops: [{ kind: 'bridge-delete', bridge: br }] }], GROUP, toolEnv());
    assert.deepEqual([...del.failed], []);
    const again = await applyIpWork(
      [
        { opId: 1, ops: [{ kind: 'bridge-create', bridge: br, mac: '02:42:c6:12:00:01', mtu: 0 }] },
        { opId: 2, ops: [{ kind: 'bridge-addrs', bridge: br, addrs: ['198.18.100.1/24'], up: true }] },
      ],
      GROUP,
      toolEnv(),
    );
    assert.deepEqual([...again.failed], []);
    const p = vethPair(200);
    const r = await applyIpWork([{ opId: 1, ops: [{ kind: 'veth-create', host: p.host, peer: p.peer, bridge: br, mtu: 0 }] }], GROUP, toolEnv());
    assert.deepEqual([...r.failed], []);
    assert.equal((await linkMap()).get(p.host)?.master, br);
  });

  test('creations and deletions share the session; a veth name used again after its deletion gets a fresh one', async (t) => {
    const br = await bridge(t);
    const pairs = [vethPair(501), vethPair(502), vethPair(503)];
    const starts = ipSessionStats.starts;
    const create = (p: { host: string; peer: string }): IpWork => ({ opId: 1, ops: [{ kind: 'veth-create', host: p.host, peer: p.peer, bridge: br, mtu: 0 }] });
    const remove = (p: { host: string; peer: string }): IpWork => ({ opId: 1, ops: [{ kind: 'veth-delete', host: p.host }] });
    for (const p of pairs) assert.deepEqual([...(await applyIpWork([create(p)], GROUP, toolEnv())).failed], []);
    for (const p of pairs) assert.deepEqual([...(await applyIpWork([remove(p)], GROUP, toolEnv())).failed], []);
    // Two sessions at most: a deletion is answered before its ip is done, so the next batch may take the other one.
    assert.ok(ipSessionStats.starts - starts <= 2, 'six batches of fresh names, no process per batch');
    const m1 = await linkMap();
    for (const p of pairs) assert.equal(m1.has(p.host), false);
    // The same name again: made and deleted for real (no stale cached index).
    const p0 = pairs[0] ?? vethPair(0);
    // Whichever of the two sessions takes it: the one that deleted the name ends itself first (a
    // stale cached index would fail this creation), the other one never looked the name up.
    assert.deepEqual([...(await applyIpWork([create(p0)], GROUP, toolEnv())).failed], []);
    assert.equal((await linkMap()).get(p0.host)?.master, br);
    assert.deepEqual([...(await applyIpWork([remove(p0)], GROUP, toolEnv())).failed], []);
    assert.equal((await linkMap()).has(p0.host), false);
  });

  test('a deletion batch is answered once its veths are gone, before ip is done; they are unlisted and their names free', async (t) => {
    const br = await bridge(t);
    const pairs = Array.from({ length: 24 }, (_, i) => vethPair(600 + i));
    const create = (p: { host: string; peer: string }): IpWork => ({ opId: 1, ops: [{ kind: 'veth-create', host: p.host, peer: p.peer, bridge: br, mtu: 0 }] });
    for (const p of pairs) assert.deepEqual([...(await applyIpWork([create(p)], GROUP, toolEnv())).failed], []);
    // One of them is already gone when the batch runs (dockerd deleted the container's end).
    const gone = pairs[5] ?? vethPair(0);
    await runOk(['ip', 'link', 'del', gone.host]);
    const early = ipSessionStats.answeredBeforeIp;
    const r = await applyIpWork(pairs.map((p, i) => ({ opId: i + 1, ops: [{ kind: 'veth-delete', host: p.host }] })), GROUP, toolEnv());
    assert.deepEqual([...r.failed], []);
    assert.equal(ipSessionStats.answeredBeforeIp - early, 1, 'answered before ip acknowledged');
    // Right away, not after some settling time: nothing of them is listed, on the bridge or not.
    const links = await linkMap();
    for (const p of pairs) {
      assert.equal(links.has(p.host), false, `${p.host} still listed`);
      assert.equal(links.has(p.peer), false, `${p.peer} still listed`);
    }
    // And the names can be used again at once.
    const again = pairs.slice(0, 3);
    for (const p of again) assert.deepEqual([...(await applyIpWork([create(p)], GROUP, toolEnv())).failed], []);
    assert.deepEqual([...(await applyIpWork(again.map((p, i) => ({ opId: i + 1, ops: [{ kind: 'veth-delete', host: p.host }] })), GROUP, toolEnv())).failed], []);
    const after = await linkMap();
    for (const p of again) assert.equal(after.has(p.host), false);
  });

  test('a failed line in a session batch fails only its op, and the next batch runs in a fresh session', async (t) => {
    const br = await bridge(t);
    const [a, b] = [vethPair(301), vethPair(302)];
    await applyIpWork([{ opId: 1, ops: [{ kind: 'veth-create', host: a.host, peer: a.peer, bridge: br, mtu: 0 }] }], GROUP, toolEnv());
    const starts = ipSessionStats.starts;
    const r = await applyIpWork(
      [
        { opId: 1, ops: [{ kind: 'veth-create', host: b.host, peer: b.peer, bridge: br, mtu: 0 }] },
        // the same names again: "File exists" for this line only
        { opId: 2, ops: [{ kind: 'veth-create', host: a.host, peer: `${a.peer}z`, bridge: br, mtu: 0 }] },
      ],
      GROUP,
      toolEnv(),
    );
    assert.deepEqual([...r.failed.keys()], [2]);
    assert.match(r.failed.get(2) ?? '', /File exists/);
    assert.equal((await linkMap()).get(b.host)?.master, br);
    const c = vethPair(303);
    const r2 = await applyIpWork([{ opId: 1, ops: [{ kind: 'veth-create', host: c.host, peer: c.peer, bridge: br, mtu: 0 }] }], GROUP, toolEnv());
    assert.deepEqual([...r2.failed], []);
    assert.ok(ipSessionStats.starts > starts, 'a failure ends the session');
  });

  test('an ip that dies in the middle of a session batch: the kernel is asked which ops took effect', async (t) => {
    const br = await bridge(t);
    // An `ip` that reads only the first two lines of its input, then sees end of input and exits.
    const dir = mkdtempSync(join(tmpdir(), 'bbt-ipwrap-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const wrapper = join(dir, 'ip');
    writeFileSync(wrapper, '#!/bin/sh\nhead -n 2 | exec ip "$@"\n');
    chmodSync(wrapper, 0o755);
    const tools = toolEnv({ ...DEFAULT_TOOLS, ip: wrapper });
    const pairs = [vethPair(401), vethPair(402), vethPair(403)];
    const works: IpWork[] = pairs.map((p, i) => ({ opId: i + 1, ops: [{ kind: 'veth-create', host: p.host, peer: p.peer, bridge: br, mtu: 0 }] }));
    const r = await applyIpWork(works, GROUP, tools);
    assert.deepEqual([...r.failed.keys()], [3], 'two lines ran, the third never did');
    const m = await linkMap();
    assert.equal(m.get(pairs[0]?.host ?? '')?.master, br);
    assert.equal(m.get(pairs[1]?.host ?? '')?.master, br);
    assert.equal(m.has(pairs[2]?.host ?? ''), false);
  });
});
