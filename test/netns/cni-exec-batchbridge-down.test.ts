// The real daemon going away under the installed executable, called as libcni calls it: VERSION
// is still answered (the executable alone), STATUS says 50, ADD waits the bounded time compiled in
// by `cni-install --add-wait-ms` and fails with 11, CHECK and GC fail with 11 at once, a DEL is
// spooled and succeeds; when `serve` starts again it does the spooled DEL before anything else
// (veth gone, ports freed, books empty).
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { test } from 'node:test';
import { testScope } from '../helpers/cleanup.js';
import { LIBCNI_CURRENT_VERSION, type JsonObject } from '../helpers/cni-exec.js';
import { eventually } from '../helpers/proc.js';
import {
  bbConflist, booksOf, cniDaemon, cniFailure, dnatRules, hostVeths, linkIn, newPod, snapshot,
} from './cni-exec-kit.js';
import { checkConsistency, readBooks } from './crash-kit.js';

const ADD_WAIT_MS = 400;

test('daemon down: VERSION answered, STATUS 50, ADD 11 after the wait, CHECK/GC 11, DEL spooled and done after the restart', { timeout: 60_000 }, async (t) => {
  const s = testScope(t);
  const d = await cniDaemon(s, 'bbcxc', { addWaitMs: ADD_WAIT_MS });
  const list = bbConflist({ name: 'cxdown', socket: d.cniSocket, bridge: 'bbcx7', subnet: '198.18.78.0/24', cniVersion: '1.1.0' });
  const ports = (p: number) => ({ capabilityArgs: { portMappings: [{ hostPort: p, containerPort: 80, protocol: 'tcp' }] } });
  await d.cni.statusList(list);
  const a = await newPod(s, ports(18095));
  const ra = await d.cni.addList(list, a.rt);
  const veth = (ra['interfaces'] as Array<{ name: string }>)[1]?.name ?? '';
  assert.equal((await dnatRules()).length, 1);

  await d.kill9();
  const b = await newPod(s, ports(18096));
  const before = await snapshot(d, [a.ns, b.ns]);

  // VERSION: the executable alone; libcni's validation of the list goes through.
  assert.deepEqual(await d.cni.versionInfo('batchbridge-cni'), { cniVersion: '1.1.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
  assert.equal(LIBCNI_CURRENT_VERSION, '1.1.0');
  assert.deepEqual((await d.cni.validateList(list)).sort(), ['ips', 'mac', 'portMappings']);

  // STATUS: 50 at once.
  let t0 = performance.now();
  const status = await cniFailure(d.cni.statusList(list));
  assert.equal(status.code, 50, status.message);
  assert.ok(performance.now() - t0 < ADD_WAIT_MS, 'STATUS does not wait');
  assert.match(status.msg, new RegExp(d.cniSocket.replace(/[./]/g, '\\$&')));

  // ADD: retried for the compiled-in wait, then 11 naming the socket.
  t0 = performance.now();
  const add = await cniFailure(d.cni.addList(list, b.rt));
  const waited = performance.now() - t0;
  assert.equal(add.code, 11, add.message);
  assert.match(add.msg, new RegExp(d.cniSocket.replace(/[./]/g, '\\$&')));
  assert.ok(waited >= ADD_WAIT_MS && waited < ADD_WAIT_MS + 3_000, `ADD waited ${Math.round(waited)} ms (wait ${ADD_WAIT_MS} ms)`);
  assert.equal(await d.cni.cachedResult(list, b.rt), undefined);

  // CHECK and GC: 11 at once.
  for (const call of [() => d.cni.checkList(list, a.rt), () => d.cni.gcList(list, [])]) {
    t0 = performance.now();
    const e = await cniFailure(call());
    assert.equal(e.code, 11, e.message);
    assert.ok(performance.now() - t0 < ADD_WAIT_MS, 'no wait');
  }
  // (libcni's GC DELs the cached attachments first: the forwarder spooled that DEL of `a`.)
  const spooledByGc = readdirSync(d.spoolDir).filter((f) => f.startsWith('del-'));
  assert.equal(spooledByGc.length, 1, `GC's DEL of a was spooled: ${spooledByGc.join(' ')}`);
  // Nothing of the kernel or the books moved while the daemon was down (the spool aside).
  const during = await snapshot(d, [a.ns, b.ns]) as JsonObject;
  assert.deepEqual({ ...during, spool: [] }, before);

  // DEL (the runtime's own, after GC's): recorded and successful.
  await d.cni.delList(list, a.rt);
  const spooled = readdirSync(d.spoolDir).filter((f) => /^del-\d+-\d+-\d+\.frame$/.test(f));
  assert.equal(spooled.length, 2, readdirSync(d.spoolDir).join(' '));
  assert.ok((await linkIn(null, veth)) !== undefined, 'nothing is done while the daemon is down');

  // serve again: the spool is replayed before the first request is answered.
  await d.start();
  await eventually(async () => assert.deepEqual(readdirSync(d.spoolDir).filter((f) => !f.startsWith('.')), []), { timeoutMs: 10_000, intervalMs: 50 });
  assert.equal(await linkIn(null, veth), undefined, 'the spooled DEL removed the veth');
  assert.equal(await linkIn(a.ns, 'eth0'), undefined);
  assert.deepEqual(await hostVeths(), []);
  assert.deepEqual(await dnatRules(), [], 'host port 18095 released');
  assert.deepEqual(booksOf(d.stateDir).endpoints, []);
  assert.equal(booksOf(d.stateDir).intents, 0);
  assert.deepEqual(await checkConsistency(readBooks(d.stateDir)), []);
  await d.cni.statusList(list);

  // The freed port and the pod that could not be added: both fine now.
  const c = await newPod(s, ports(18095));
  const rc = await d.cni.addList(list, c.rt);
  assert.equal((rc['ips'] as Array<{ address: string }>)[0]?.address.startsWith('198.18.78.'), true);
  assert.equal((await dnatRules()).filter((l) => / --dport 18095 /.test(l)).length, 1);
  await d.cni.addList(list, b.rt);
  await d.cni.checkList(list, b.rt);
  for (const p of [b, c]) await d.cni.delList(list, p.rt);
  assert.deepEqual(booksOf(d.stateDir).endpoints, []);
});
