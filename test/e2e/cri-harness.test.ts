// containerd's CRI plugin (Debian's containerd 1.6) driving a CNI chain, as a kubelet would: the
// harness that batchbridge's CNI front end will be plugged into (its executable in binDir, its
// conflist instead of the reference one). Proven here with the reference chain: bridge +
// host-local + portmap from containernetworking-plugins, wrapped by recorders.
//
// What containerd 1.6.20 sends (recorded by this test's recorder plugins; the parts batchbridge
// depends on are asserted in test/helpers/cri-scenario.ts):
// - Per pod: ADD of the chain (after the CRI plugin's own "cni-loopback" network, cniVersion 0.3.1,
//   type loopback, which it always runs from bin_dir: a batchbridge bin dir needs `loopback` too).
//   No VERSION probe, no CHECK, no GC, no STATUS from containerd 1.6.
// - CNI_CONTAINERID = the sandbox id (64 hex), CNI_IFNAME=eth0, CNI_NETNS = the pod namespace:
//   /var/run/netns/cni-<uuid> by default, <state>/io.containerd.grpc.v1.cri/netns/cni-<uuid> with
//   netns_mounts_under_state_dir (what this harness uses, to stay private).
// - CNI_ARGS = IgnoreUnknown=1, K8S_POD_NAMESPACE, K8S_POD_NAME, K8S_POD_INFRA_CONTAINER_ID,
//   K8S_POD_UID, joined with ';' in a different order on every call (they come from a Go map).
// - runtimeConfig.portMappings with capitalised keys: {"HostPort":18080,"ContainerPort":80,"Protocol":"tcp","HostIP":""};
//   the conflist's `capabilities` object stays in the stdin next to runtimeConfig. A plugin gets only
//   the capabilities it declares (the loopback network is offered io.kubernetes.cri.pod-annotations).
// - Two DELs per pod (for every plugin of the chain, in reverse order): StopPodSandbox (with the
//   netns path and the cached prevResult) and RemovePodSandbox (CNI_NETNS empty, the namespace being
//   gone, and no prevResult: the first DEL removed libcni's cache entry).
// - Concurrent RunPodSandbox calls reach the plugins concurrently (no lock in containerd): 8 pods
//   took ~1.5 s to run and ~2 s to stop + remove with the reference chain here.
// - libcni's cache is the global /var/lib/cni/results (<network>-<id>-eth0, cni-loopback-<id>-lo).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { ORDER, makeTempDir, testScope } from '../helpers/cleanup.js';
import { referenceConflist, referencePluginDir } from '../helpers/cni-fixtures.js';
import { startContainerd } from '../helpers/containerd.js';
import { criScenario } from '../helpers/cri-scenario.js';
import { createNetns } from '../helpers/netns.js';
import { randomHex, run } from '../helpers/proc.js';

test('containerd CRI + reference chain: 8 concurrent pods with host ports, reachable, and gone after Stop + Remove', { timeout: 90_000 }, async (t) => {
  const scope = testScope(t);
  const tmp = scope.add(await makeTempDir('bbt-cni-'));
  const network = `bbt-cri-${randomHex(3)}`;
  const ipam = join(tmp.path, 'ipam');
  await criScenario(t, scope, {
    binDir: await referencePluginDir(join(tmp.path, 'bin')),
    conflist: referenceConflist({ name: network, bridge: 'bbcri0', subnet: '198.18.64.0/24', dataDir: ipam }),
    gateway: '198.18.64.1',
    podAddress: /^198\.18\.64\.\d+$/,
    // host-local's leases (one file per address) must all be released
    leftovers: async () => readdirSync(join(ipam, network)).filter((f) => f !== 'lock' && !f.startsWith('last_reserved_ip')),
  });
});

test('containerd teardown after a crash leaves no process, mount, namespace, cgroup or shim socket', { timeout: 60_000 }, async (t) => {
  const scope = testScope(t);
  const host = scope.add(await createNetns({ prefix: 'bbt-cri' }));
  const tmp = scope.add(await makeTempDir('bbt-cni-'));
  const bin = await referencePluginDir(join(tmp.path, 'bin'));
  const network = `bbt-cri-${randomHex(3)}`;
  const conflist = referenceConflist({ name: network, bridge: 'bbcri1', subnet: '198.18.65.0/24', dataDir: join(tmp.path, 'ipam') });
  const ctd = await startContainerd(host, { binDir: bin, conflist });
  // stop() is what this test checks (and it must report the crash): clean up quietly if it is never reached
  scope.defer('containerd', () => ctd.stop().catch(() => {}), ORDER.dockerd);
  await ctd.importPauseImage();
  const ids = await Promise.all([0, 1].map((i) => ctd.cri.runPodSandbox({
    metadata: { name: `crash${i}`, uid: `uid-crash-${i}-${network}`, namespace: 'default' },
    logDirectory: join(ctd.dir, 'logs', `crash${i}`),
    linux: { cgroupParent: ctd.cgroupParent },
  })));
  const netns = await Promise.all(ids.map(async (id) => (await ctd.cri.podNetns(id)).netns));
  const pids = await Promise.all(ids.map(async (id) => (await ctd.cri.podNetns(id)).pid));
  const shimSockets = ids.map((id) => join('/run/containerd/s', createHash('sha256').update(join(ctd.socketPath, 'k8s.io', id)).digest('hex')));
  for (const s of shimSockets) assert.ok(existsSync(s), `shim socket ${s} is where containerd 1.6 puts it`);
  process.kill(ctd.pid, 'SIGKILL');
  // The forced clean-up reports what it had to do; what matters is that nothing remains.
  await assert.rejects(ctd.stop(), /containerd clean-up/);
  for (const p of pids) assert.equal(existsSync(`/proc/${p}`), false, `pause process ${p} gone`);
  for (const n of netns) assert.equal(existsSync(n), false, `${n} gone`);
  assert.equal(existsSync(ctd.dir), false, 'containerd dir removed (so nothing was mounted below it)');
  const cg = readdirSync('/sys/fs/cgroup').filter((h) => existsSync(join('/sys/fs/cgroup', h, ctd.cgroupParent)));
  assert.deepEqual(cg, [], 'no cgroup left');
  for (const s of shimSockets) assert.equal(existsSync(s), false, `shim socket ${s} removed`);
  for (const id of ids) assert.equal(existsSync(`/var/lib/cni/results/cni-loopback-${id}-lo`), false, 'libcni cache entry of the loopback network removed');
  const mentions = (await run(['pgrep', '-f', ctd.dir])).stdout.trim();
  assert.equal(mentions, '', 'no process mentions the containerd dir');
});
