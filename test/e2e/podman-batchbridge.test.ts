// Podman 4.3 (Debian, CNI backend) on batchbridge's CNI front end: `batchbridge serve
// --cni-socket` in the namespace Podman runs in, `batchbridge cni-install` for the plugin dir and
// the conflist. The scenario (test/helpers/podman-scenario.ts): `podman network ls` lists the
// network (the VERSION probe answered), `podman run -d --network NET -p PORT:80` serves an
// external peer through the host port, `podman rm -f` leaves no netns, veth or rule naming the
// container, every CNI call exited 0. Here, on top: while it runs the attachment and binding are
// batchbridge's (books, `batchbridge ports`, a BB-DNAT rule); afterwards nothing of it is left in
// them. Then the daemon is stopped: Podman still loads the network (the executable answers
// VERSION itself: no "Error validating CNI config" warning), and `podman run` fails with code 11
// after the installed ADD wait, leaving nothing; its DEL is recorded in the spool.
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { test } from 'node:test';
import { bbAndCniRules, bbPorts, readBooks, startBbCni } from '../helpers/bb-cni.js';
import { testScope } from '../helpers/cleanup.js';
import { readRecordings } from '../helpers/cni-fixtures.js';
import { createNetns, ipLinks } from '../helpers/netns.js';
import { podmanScenario } from '../helpers/podman-scenario.js';
import { PODMAN_ULIMITS } from '../helpers/podman.js';
import { randomHex } from '../helpers/proc.js';

const PORT = 18085;
const ADD_WAIT_MS = 300;

test('podman + batchbridge: run -p served to an external peer, rm leaves nothing; daemon stopped: network still listed, run fails with code 11', { timeout: 90_000 }, async (t) => {
  const scope = testScope(t);
  const host = scope.add(await createNetns({ prefix: 'bbt-pod' }));
  const net = `bbt-pod-${randomHex(3)}`;
  const bridge = 'bbpod9';
  const bb = await startBbCni(scope, host, { network: net, subnet: '198.18.73.0/24', bridge, addWaitMs: ADD_WAIT_MS });

  const { podman, logDir } = await podmanScenario(t, scope, {
    host,
    binDir: bb.binDir,
    conflist: bb.conflist,
    podAddress: /^198\.18\.73\.\d+$/,
    port: PORT,
    whileRunning: async (c) => {
      const books = readBooks(bb.plugin.stateDir);
      assert.deepEqual(books.networks.map((n) => [n.cniName, n.spec.bridge]), [[net, bridge]]);
      assert.deepEqual(books.endpoints.map((e) => [e.sandbox?.containerId, e.sandbox?.netns, e.ipv4]), [[c.id, c.netns, `${c.ip}/24`]]);
      assert.deepEqual((await bbPorts(bb.plugin)).map((b) => [b.proto, b.hostPort, b.containerIp, b.containerPort]), [['tcp', PORT, c.ip, 80]]);
      const dnat = (await bbAndCniRules(host)).filter((l) => /^-A BB-DNAT-\d+ /.test(l) && l.includes(`--dport ${PORT} `));
      assert.equal(dnat.length, 1, 'one DNAT rule in batchbridge\'s chains');
      assert.ok(dnat[0]?.includes(`--to-destination ${c.ip}:80`), dnat[0]);
      assert.ok(dnat[0]?.includes(`bb:ep=${books.endpoints[0]?.id.slice(0, 12) ?? '?'}`), dnat[0]);
    },
  });
  assert.deepEqual(readBooks(bb.plugin.stateDir).endpoints, [], 'no attachment in the books after rm');
  assert.deepEqual(await bbPorts(bb.plugin), []);
  assert.deepEqual((await bbAndCniRules(host)).filter((l) => l.includes('bb:ep=') || l.includes(`--dport ${PORT} `) || l.includes('CNI-')), [], 'no rule of the container');
  assert.doesNotMatch(bb.plugin.logText(), /CNI request failed/);

  // The daemon goes away; the executable and the conflist stay.
  await bb.plugin.stop();
  const before = readRecordings(logDir).length;
  const ls = await podman.podman(['network', 'ls', '--format', '{{.Name}}']);
  assert.equal(ls.code, 0, ls.stderr);
  assert.ok(ls.stdout.split('\n').includes(net), `${net} still listed with the daemon down`);
  assert.doesNotMatch(ls.stderr, /Error validating CNI config/);

  const t0 = Date.now();
  const run = await podman.podman(['run', '--rm', '--name', 'down', ...PODMAN_ULIMITS, '--cgroup-parent', podman.cgroupParent,
    '--network', net, '-p', `${PORT + 1}:80`, '--rootfs', podman.rootfs, '/bin/true']);
  const ms = Date.now() - t0;
  t.diagnostic(`podman run with the daemon down: failed after ${ms} ms`);
  assert.notEqual(run.code, 0);
  assert.match(run.stderr, new RegExp(`batchbridge-cni failed.*the batchbridge daemon is not reachable at ${bb.cniSocket} after waiting ${ADD_WAIT_MS} ms`));
  assert.ok(ms >= ADD_WAIT_MS, `the ADD waited (${ms} ms)`);

  const calls = readRecordings(logDir).slice(before);
  assert.ok(calls.some((c) => c.env['CNI_COMMAND'] === 'VERSION'), 'podman probed VERSION with the daemon down');
  for (const c of calls.filter((x) => x.env['CNI_COMMAND'] === 'VERSION')) assert.equal(c.rc, 0, 'VERSION answered without the daemon');
  const add = calls.find((c) => c.env['CNI_COMMAND'] === 'ADD');
  assert.equal(add?.rc, 1);
  assert.equal((JSON.parse(add?.stdout ?? '{}') as { code?: number }).code, 11, 'ADD failed with code 11');
  const dels = calls.filter((c) => c.env['CNI_COMMAND'] === 'DEL');
  // Podman cleans up the failed ADD with one DEL, which the forwarder records for the daemon.
  assert.deepEqual(dels.map((d) => [d.env['CNI_NETNS'], d.rc]), [[add?.env['CNI_NETNS'], 0]], 'the DEL after the failed ADD succeeds');
  const spooled = readdirSync(`${bb.cniSocket}.spool`).filter((f) => /^del-.*\.frame$/.test(f));
  assert.equal(spooled.length, dels.length, 'each DEL recorded in the spool for the daemon\'s next start');

  // Nothing of the failed container: no container, no namespace, no veth.
  assert.equal((await podman.podmanOk(['ps', '-aq'])).trim(), '');
  assert.equal(existsSync(add?.env['CNI_NETNS'] ?? '/'), false, 'its network namespace removed');
  assert.deepEqual((await ipLinks(host, ['type', 'veth'])).map((l) => l.ifname).filter((n) => !n.startsWith('bbh')), [], 'no veth');
});
