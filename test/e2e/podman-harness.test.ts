// Podman 4.3 (Debian, CNI backend) driving a CNI chain: the harness batchbridge's CNI front end
// will be plugged into. Proven with the reference chain (bridge + host-local + portmap), wrapped by
// recorders, plus a network whose plugin cannot answer.
//
// What Podman 4.3.1 does (recorded here; asserted where batchbridge depends on it):
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
import { createExternalPeer, createNetns, ipLinks, iptablesSave } from '../helpers/netns.js';
import { httpGet } from '../helpers/pod-net.js';
import { startPodman } from '../helpers/podman.js';
import { eventually, randomHex } from '../helpers/proc.js';

const PORT = 18085;

test('podman run --network NET -p HOSTPORT:80 with the reference chain; a plugin that fails VERSION drops its network', { timeout: 90_000 }, async (t) => {
  const scope = testScope(t);
  const host = scope.add(await createNetns({ prefix: 'bbt-pod' }));
  const ext = scope.add(await createExternalPeer(host));
  const tmp = scope.add(await makeTempDir('bbt-cni-'));
  const bin = await referencePluginDir(join(tmp.path, 'bin'));
  const calls = join(tmp.path, 'calls');
  await recorderPlugin(bin, 'rec-bridge', join(bin, 'bridge'), calls);
  await recorderPlugin(bin, 'rec-portmap', join(bin, 'portmap'), calls);
  // A plugin whose daemon is gone: every command, VERSION included, fails with code 11.
  await writeFile(join(bin, 'dead'), '#!/bin/sh\ncat > /dev/null\necho \'{"code":11,"msg":"daemon not reachable"}\'\nexit 1\n');
  await chmod(join(bin, 'dead'), 0o755);
  const net = `bbt-pod-${randomHex(3)}`;
  const dead = `${net}-dead`;
  const conflist = referenceConflist({ name: net, bridge: 'bbpod0', subnet: '198.18.66.0/24', dataDir: join(tmp.path, 'ipam'), bridgeType: 'rec-bridge', portmapType: 'rec-portmap' });
  const deadList = JSON.stringify({ cniVersion: '1.0.0', name: dead, plugins: [{ type: 'dead' }] });
  const pm = scope.add(await startPodman(host, { binDir: bin, conflists: [conflist, deadList] }));

  // Loading the configs: VERSION probes; the dead network is dropped with a warning.
  const ls = await pm.podman(['network', 'ls', '--format', '{{.Name}}']);
  assert.equal(ls.code, 0, ls.stderr);
  const names = ls.stdout.split('\n').filter((s) => s !== '');
  assert.ok(names.includes(net), `${net} listed`);
  assert.ok(!names.includes(dead), `${dead} dropped`);
  assert.match(ls.stderr, /Error validating CNI config file .*cni plugin dead failed: daemon not reachable/);
  const probe = readRecordings(calls).find((r) => r.env['CNI_COMMAND'] === 'VERSION');
  assert.deepEqual(probe?.env, { CNI_COMMAND: 'VERSION', CNI_CONTAINERID: '', CNI_NETNS: 'dummy', CNI_IFNAME: 'dummy', CNI_ARGS: '', CNI_PATH: 'dummy' });
  assert.equal(probe?.stdin, '{"cniVersion":"1.0.0"}');
  const refused = await pm.podman(['run', '--rm', '--network', dead, '--rootfs', pm.rootfs, '/bin/true']);
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /network not found/);

  // A container with a published port, answering the external peer.
  const t0 = Date.now();
  const web = await pm.runDetached('web', ['--network', net, '-p', `${PORT}:80`], ['/bin/httpd', '-f', '-p', '80', '-h', '/www']);
  t.diagnostic(`podman run -d: ${Date.now() - t0} ms; netns ${web.netns}`);
  assert.match(web.netns, /^\/run\/netns\/netns-/);
  const body = await eventually(async () => {
    const b = await httpGet(ext.peer, ext.hostAddr, PORT);
    if (!b.includes('hello from podman')) throw new Error(`no answer on ${ext.hostAddr}:${PORT}: ${JSON.stringify(b)}`);
    return b;
  }, { timeoutMs: 10_000 });
  assert.match(body, /^HTTP\/1\.[01] 200/);

  const t1 = Date.now();
  await pm.podmanOk(['rm', '-f', '-t', '0', 'web']);
  t.diagnostic(`podman rm -f: ${Date.now() - t1} ms`);
  assert.equal(existsSync(web.netns), false, 'netns removed');
  const veths = (await ipLinks(host, ['type', 'veth'])).map((l) => l.ifname).filter((n) => n !== ext.hostIf);
  assert.deepEqual(veths, [], 'no container veth left');
  const rules = await iptablesSave(host);
  assert.deepEqual(rules.filter((l) => l.includes('CNI-DN-') || l.includes(web.id)), [], 'no port mapping or masquerade rule left');
  assert.deepEqual(readdirSync(join(tmp.path, 'ipam', net)).filter((f) => f !== 'lock' && !f.startsWith('last_reserved_ip')), [], 'address released');

  // What Podman sent for the container.
  const rec = readRecordings(calls).map((r) => ({ ...r, conf: JSON.parse(r.stdin) as Record<string, unknown> }));
  const mine = rec.filter((r) => r.env['CNI_CONTAINERID'] === web.id);
  assert.deepEqual(mine.map((r) => `${r.env['CNI_COMMAND']} ${String(r.conf['type'])}`),
    ['ADD rec-bridge', 'ADD rec-portmap', 'DEL rec-portmap', 'DEL rec-bridge']);
  const add = mine[0];
  assert.equal(add?.env['CNI_NETNS'], web.netns);
  assert.equal(add?.env['CNI_IFNAME'], 'eth0');
  assert.equal(add?.env['CNI_ARGS'], 'IgnoreUnknown=1;K8S_POD_NAME=web');
  const pmAdd = mine[1];
  assert.deepEqual((pmAdd?.conf['runtimeConfig'] as { portMappings: unknown }).portMappings,
    [{ hostPort: PORT, containerPort: 80, protocol: 'tcp' }], 'lowercase port mapping keys, no hostIP when none');
  assert.deepEqual(pmAdd?.conf['capabilities'], { portMappings: true });
  assert.ok(mine[2]?.conf['prevResult'], 'DEL carries the cached result');
  assert.equal(mine[2]?.env['CNI_NETNS'], web.netns);
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
