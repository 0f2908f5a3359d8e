// Podman 4.3 (Debian, CNI backend) driving a CNI chain: the harness batchbridge's CNI front end
// will be plugged into. Proven with the reference chain (bridge + host-local + portmap), wrapped by
// recorders, plus a network whose plugin cannot answer.
//
// What Podman 4.3.1 does (recorded here; what batchbridge depends on is asserted in
// test/helpers/podman-scenario.ts and below):
// - Every podman command that loads networks (network ls, run, rm, ...) probes each plugin of
//   every conflist with VERSION: CNI_COMMAND=VERSION, CNI_NETNS=dummy, CNI_IFNAME=dummy,
//   CNI_PATH=dummy, CNI_CONTAINERID and CNI_ARGS empty, stdin {"cniVersion":"1.0.0"} (its libcni is
//   1.1). A plugin that fails the probe makes Podman drop that network with a warning
//   ("Error validating CNI config file ...: [cni plugin X failed: <msg>]"); `run --network X` then
//   fails with "network not found". A plugin that hangs on VERSION hangs every podman command (tried
//   by hand: no timeout) — so batchbridge's executable must answer VERSION without its daemon.
// - ADD: CNI_NETNS=/run/netns/netns-<uuid> (a global directory), CNI_IFNAME=eth0,
//   CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAME=<container name>, CNI_CONTAINERID = the container id;
//   runtimeConfig.portMappings with lowercase keys ({"hostPort":18085,"containerPort":80,"protocol":"tcp"},
//   hostIP only when one is given);
//   `capabilities` left in. No CHECK, GC or STATUS.
// - `podman rm -f` sends one DEL per plugin (reverse order) with the netns path and the cached prevResult.
// - Podman serialises its CNI calls with a file lock in the network config dir, so it never sends
//   two ADDs at once; its libcni cache is the global /var/lib/cni/results.
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { chmod, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { ORDER, makeTempDir, testScope } from '../helpers/cleanup.js';
import { readRecordings, recorderPlugin, referenceConflist, referencePluginDir } from '../helpers/cni-fixtures.js';
import { createNetns } from '../helpers/netns.js';
import { podmanScenario } from '../helpers/podman-scenario.js';
import { startPodman } from '../helpers/podman.js';
import { randomHex } from '../helpers/proc.js';

const PORT = 18085;

test('podman run --network NET -p HOSTPORT:80 with the reference chain: served to an external peer, nothing left after rm', { timeout: 90_000 }, async (t) => {
  const scope = testScope(t);
  const tmp = scope.add(await makeTempDir('bbt-cni-'));
  const net = `bbt-pod-${randomHex(3)}`;
  const ipam = join(tmp.path, 'ipam');
  await podmanScenario(t, scope, {
    binDir: await referencePluginDir(join(tmp.path, 'bin')),
    conflist: referenceConflist({ name: net, bridge: 'bbpod0', subnet: '198.18.66.0/24', dataDir: ipam }),
    podAddress: /^198\.18\.66\.\d+$/,
    port: PORT,
    leftovers: async () => readdirSync(join(ipam, net)).filter((f) => f !== 'lock' && !f.startsWith('last_reserved_ip')),
  });
});

test('podman drops a network whose plugin fails VERSION, with a warning; run --network then fails', { timeout: 60_000 }, async (t) => {
  const scope = testScope(t);
  const host = scope.add(await createNetns({ prefix: 'bbt-pod' }));
  const tmp = scope.add(await makeTempDir('bbt-cni-'));
  const bin = await referencePluginDir(join(tmp.path, 'bin'));
  // A plugin whose daemon is gone: every command, VERSION included, fails with code 11.
  await writeFile(join(tmp.path, 'dead'), '#!/bin/sh\ncat > /dev/null\necho \'{"code":11,"msg":"daemon not reachable"}\'\nexit 1\n');
  await chmod(join(tmp.path, 'dead'), 0o755);
  await recorderPlugin(bin, 'dead', join(tmp.path, 'dead'), join(tmp.path, 'calls'));
  const net = `bbt-pod-${randomHex(3)}`;
  const dead = `${net}-dead`;
  const good = referenceConflist({ name: net, bridge: 'bbpod2', subnet: '198.18.68.0/24', dataDir: join(tmp.path, 'ipam') });
  const pm = scope.add(await startPodman(host, { binDir: bin, conflists: [good, JSON.stringify({ cniVersion: '1.0.0', name: dead, plugins: [{ type: 'dead' }] })] }));
  const ls = await pm.podman(['network', 'ls', '--format', '{{.Name}}']);
  assert.equal(ls.code, 0, ls.stderr);
  const names = ls.stdout.split('\n').filter((s) => s !== '');
  assert.ok(names.includes(net), `${net} listed`);
  assert.ok(!names.includes(dead), `${dead} dropped`);
  assert.match(ls.stderr, /Error validating CNI config file .*cni plugin dead failed: daemon not reachable/);
  assert.deepEqual(readRecordings(join(tmp.path, 'calls')).map((r) => r.env['CNI_COMMAND']), ['VERSION'], 'only the VERSION probe reached it');
  const refused = await pm.podman(['run', '--rm', '--network', dead, '--rootfs', pm.rootfs, '/bin/true']);
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /network not found/);
});

test('podman teardown with a container still running and its conmon killed leaves nothing', { timeout: 60_000 }, async (t) => {
  const scope = testScope(t);
  const host = scope.add(await createNetns({ prefix: 'bbt-pod' }));
  const tmp = scope.add(await makeTempDir('bbt-cni-'));
  const bin = await referencePluginDir(join(tmp.path, 'bin'));
  const net = `bbt-pod-${randomHex(3)}`;
  const conflist = referenceConflist({ name: net, bridge: 'bbpod1', subnet: '198.18.67.0/24', dataDir: join(tmp.path, 'ipam') });
  const pm = await startPodman(host, { binDir: bin, conflists: [conflist] });
  scope.defer('podman', () => pm.stop().catch(() => {}), ORDER.dockerd);
  const c = await pm.runDetached('left', ['--network', net, '-p', `${PORT + 1}:80`], ['/bin/sleep', '600']);
  const pid = Number((await pm.podmanOk(['inspect', '--format', '{{.State.Pid}}', c.id])).trim());
  const conmon = Number((await pm.podmanOk(['inspect', '--format', '{{.State.ConmonPid}}', c.id])).trim());
  assert.ok(pid > 0 && conmon > 0);
  process.kill(conmon, 'SIGKILL');
  await assert.rejects(pm.stop(), /podman clean-up/);
  assert.equal(existsSync(`/proc/${pid}`), false, 'container process gone');
  assert.equal(existsSync(c.netns), false, 'netns gone');
  assert.equal(existsSync(pm.dir), false, 'podman dir removed');
  assert.equal(existsSync(`/var/lib/cni/results/${net}-${c.id}-eth0`), false, 'libcni cache entry gone');
  const cg = readdirSync('/sys/fs/cgroup').filter((h) => existsSync(join('/sys/fs/cgroup', h, pm.cgroupParent)));
  assert.deepEqual(cg, [], 'no cgroup left');
});
