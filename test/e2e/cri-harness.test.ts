// containerd's CRI plugin (Debian's containerd 1.6) driving a CNI chain, as a kubelet would: the
// harness that batchbridge's CNI front end will be plugged into (its executable in binDir, its
// conflist instead of the reference one). Proven here with the reference chain: bridge +
// host-local + portmap from containernetworking-plugins, wrapped by recorders.
//
// What containerd 1.6.20 sends (recorded by this test's recorder plugins; the parts batchbridge
// depends on are asserted below):
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
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { ORDER, makeTempDir, testScope } from '../helpers/cleanup.js';
import { referenceConflist, readRecordings, recorderPlugin, referencePluginDir } from '../helpers/cni-fixtures.js';
import { startContainerd } from '../helpers/containerd.js';
import { createExternalPeer, createNetns, ipLinks, iptablesSave } from '../helpers/netns.js';
import { randomHex, run } from '../helpers/proc.js';
import { podListeners, httpGet } from '../helpers/pod-net.js';

const PODS = 8;
const SUBNET = '198.18.64.0/24';
const GATEWAY = '198.18.64.1';
const PORT0 = 18080;

test(`containerd CRI + reference chain: ${PODS} concurrent pods with host ports, reachable, and gone after Stop + Remove`, { timeout: 90_000 }, async (t) => {
  const scope = testScope(t);
  const host = scope.add(await createNetns({ prefix: 'bbt-cri' }));
  const ext = scope.add(await createExternalPeer(host));
  const tmp = scope.add(await makeTempDir('bbt-cni-'));
  const bin = await referencePluginDir(join(tmp.path, 'bin'));
  const calls = join(tmp.path, 'calls');
  await recorderPlugin(bin, 'rec-bridge', join(bin, 'bridge'), calls);
  await recorderPlugin(bin, 'rec-portmap', join(bin, 'portmap'), calls);
  const network = `bbt-cri-${randomHex(3)}`;
  const conflist = referenceConflist({ name: network, bridge: 'bbcri0', subnet: SUBNET, dataDir: join(tmp.path, 'ipam'), bridgeType: 'rec-bridge', portmapType: 'rec-portmap' });
  const ctd = scope.add(await startContainerd(host, { binDir: bin, conflist }));
  await ctd.importPauseImage();
  const v = await ctd.cri.version();
  assert.equal(v.runtimeName, 'containerd');

  const run0 = Date.now();
  const ids = await Promise.all(Array.from({ length: PODS }, (_, i) => ctd.cri.runPodSandbox({
    metadata: { name: `pod${i}`, uid: `uid-${i}-${network}`, namespace: 'default' },
    hostname: `pod${i}`,
    logDirectory: join(ctd.dir, 'logs', `pod${i}`),
    portMappings: [{ protocol: 'TCP', containerPort: 80, hostPort: PORT0 + i }],
    labels: { harness: network },
    linux: { cgroupParent: ctd.cgroupParent },
  })));
  t.diagnostic(`${PODS} concurrent RunPodSandbox: ${Date.now() - run0} ms`);
  const pods = await Promise.all(ids.map(async (id, i) => {
    const st = await ctd.cri.podSandboxStatus(id);
    assert.equal(st.status.state, 'SANDBOX_READY');
    const ip = st.status.network?.ip ?? '';
    assert.match(ip, /^198\.18\.64\.\d+$/, `pod${i} has an address in ${SUBNET}`);
    const { netns } = await ctd.cri.podNetns(id);
    return { id, i, ip, netns };
  }));
  assert.equal(new Set(pods.map((p) => p.ip)).size, PODS, 'distinct addresses');

  // Pods reach each other, the gateway and the external peer (masqueraded).
  const ping = (netns: string, addr: string) => run(['nsenter', `--net=${netns}`, 'busybox', 'ping', '-c', '1', '-W', '3', addr], { timeoutMs: 15_000 });
  const reach = await Promise.all(pods.flatMap((p) => {
    const next = pods[(p.i + 1) % PODS];
    return [next?.ip ?? '', GATEWAY, ext.peerAddr].map(async (addr) => ({ from: p.i, addr, code: (await ping(p.netns, addr)).code }));
  }));
  assert.deepEqual(reach.filter((r) => r.code !== 0), [], 'every ping answered');

  // A listener in each pod answers on its host port, from the external peer.
  const www = join(tmp.path, 'www');
  await mkdir(www);
  const listeners = scope.add(await podListeners(pods.map((p) => ({ netns: p.netns, body: `pod ${p.i}` })), www));
  for (const p of pods) {
    const body = await httpGet(ext.peer, ext.hostAddr, PORT0 + p.i);
    assert.match(body, new RegExp(`pod ${p.i}\\b`), `host port ${PORT0 + p.i} reaches pod${p.i}`);
  }
  await listeners.close();

  const stop0 = Date.now();
  await Promise.all(ids.map(async (id) => {
    await ctd.cri.stopPodSandbox(id);
    await ctd.cri.removePodSandbox(id);
  }));
  t.diagnostic(`${PODS} concurrent Stop + Remove: ${Date.now() - stop0} ms`);

  // Nothing left: pods, namespaces, veths, rules, addresses.
  assert.deepEqual(await ctd.cri.listPodSandbox(), []);
  for (const p of pods) assert.equal(existsSync(p.netns), false, `${p.netns} removed`);
  const veths = (await ipLinks(host, ['type', 'veth'])).map((l) => l.ifname).filter((n) => n !== ext.hostIf);
  assert.deepEqual(veths, [], 'no pod veth left');
  const rules = [...await iptablesSave(host), ...await iptablesSave(host, { ipv6: true })];
  assert.deepEqual(rules.filter((l) => l.includes('CNI-DN-') || ids.some((id) => l.includes(id))), [], 'no port mapping or masquerade rule left');
  const leases = readdirSync(join(tmp.path, 'ipam', network)).filter((f) => f !== 'lock' && !f.startsWith('last_reserved_ip'));
  assert.deepEqual(leases, [], 'host-local released every address');

  // What containerd sent.
  const rec = readRecordings(calls).map((r) => ({ ...r, conf: JSON.parse(r.stdin) as Record<string, unknown> }));
  const histogram = new Map<string, number>();
  for (const r of rec) histogram.set(`${r.env['CNI_COMMAND']} ${String(r.conf['type'] ?? '')}`, (histogram.get(`${r.env['CNI_COMMAND']} ${String(r.conf['type'] ?? '')}`) ?? 0) + 1);
  t.diagnostic(`calls: ${JSON.stringify(Object.fromEntries(histogram))}`);
  for (const p of pods) {
    const mine = rec.filter((r) => r.env['CNI_CONTAINERID'] === p.id);
    const bridge = mine.filter((r) => r.conf['type'] === 'rec-bridge');
    assert.deepEqual(bridge.map((r) => r.env['CNI_COMMAND']), ['ADD', 'DEL', 'DEL'], `pod${p.i}: ADD, then a DEL on Stop and one on Remove`);
    const [add, del1, del2] = bridge;
    assert.equal(add?.env['CNI_NETNS'], p.netns);
    assert.equal(add?.env['CNI_IFNAME'], 'eth0');
    const args = new Map((add?.env['CNI_ARGS'] ?? '').split(';').map((kv) => kv.split('=') as [string, string]));
    assert.equal(args.get('K8S_POD_NAME'), `pod${p.i}`);
    assert.equal(args.get('K8S_POD_NAMESPACE'), 'default');
    assert.equal(args.get('K8S_POD_INFRA_CONTAINER_ID'), p.id);
    assert.equal(args.get('IgnoreUnknown'), '1');
    assert.equal(del1?.env['CNI_NETNS'], p.netns);
    assert.ok(del1?.conf['prevResult'], 'the first DEL carries the cached result');
    assert.equal(del2?.env['CNI_NETNS'], '', 'the second DEL comes after the namespace is gone');
    assert.equal(del2?.conf['prevResult'], undefined);
    const pm = mine.find((r) => r.conf['type'] === 'rec-portmap' && r.env['CNI_COMMAND'] === 'ADD');
    assert.deepEqual((pm?.conf['runtimeConfig'] as { portMappings: unknown }).portMappings,
      [{ HostPort: PORT0 + p.i, ContainerPort: 80, Protocol: 'tcp', HostIP: '' }], 'capitalised port mapping keys');
    assert.deepEqual(pm?.conf['capabilities'], { portMappings: true }, 'capabilities left in');
  }
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
