// The containerd CRI scenario, for any CNI plugin dir + conflist: N concurrent RunPodSandbox with a
// host port each, pods reaching each other, the gateway and an external peer, each host port
// answering the peer, then Stop + Remove leaving nothing; every plugin of the conflist recorded,
// what containerd sent checked, and every call's exit status 0 (the second DEL of a pod included).
// Run with the reference chain by test/e2e/cri-harness.test.ts and with batchbridge by
// test/e2e/cri-batchbridge.test.ts (its daemon in the namespace given as `host`).
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { makeTempDir, type Scope } from './cleanup.js';
import { conflistTypes, readRecordings, recordingPluginDir, type RecordedCall } from './cni-fixtures.js';
import { startContainerd } from './containerd.js';
import { createExternalPeer, createNetns, ipLinks, iptablesSave, type ExternalPeer, type Netns } from './netns.js';
import { httpGet, inNetns, podListeners } from './pod-net.js';

export interface CriScenarioOptions {
  /** The plugins of the conflist, and `loopback` (containerd always runs it). */
  binDir: string;
  conflist: string;
  /** The pods' gateway (the bridge address). */
  gateway: string;
  /** What a pod's address looks like. */
  podAddress: RegExp;
  pods?: number;
  portBase?: number;
  /** The namespace containerd runs in (and the plugin's daemon, if it has one); default: a new one. */
  host?: Netns;
  /** Checks while the pods run (after the reachability checks). */
  whileRunning?: (pods: readonly RunningPod[], ext: ExternalPeer) => Promise<void>;
  /** Names of what the plugin still holds after Stop + Remove (IPAM leases, ...): must be empty. */
  leftovers?: () => Promise<string[]>;
}

export interface RunningPod {
  id: string;
  i: number;
  ip: string;
  netns: string;
  hostPort: number;
}

export interface Recorded extends RecordedCall {
  conf: Record<string, unknown>;
}

export interface CriScenarioResult {
  ids: string[];
  calls: Recorded[];
}

function podConfig(i: number, network: string, dir: string, cgroupParent: string, port: number) {
  return {
    metadata: { name: `pod${i}`, uid: `uid-${i}-${network}`, namespace: 'default' },
    hostname: `pod${i}`,
    logDirectory: join(dir, 'logs', `pod${i}`),
    portMappings: [{ protocol: 'TCP' as const, containerPort: 80, hostPort: port }],
    labels: { harness: network },
    linux: { cgroupParent },
  };
}

export async function criScenario(t: TestContext, scope: Scope, o: CriScenarioOptions): Promise<CriScenarioResult> {
  const n = o.pods ?? 8;
  const port0 = o.portBase ?? 18080;
  const host = o.host ?? scope.add(await createNetns({ prefix: 'bbt-cri' }));
  const ext = scope.add(await createExternalPeer(host));
  const work = scope.add(await makeTempDir('bbt-crirec-'));
  const logDir = join(work.path, 'calls');
  const types = conflistTypes(o.conflist);
  const bin = await recordingPluginDir(join(work.path, 'bin'), { from: [o.binDir], record: types, logDir });
  const network = (JSON.parse(o.conflist) as { name: string }).name;
  const ctd = scope.add(await startContainerd(host, { binDir: bin, conflist: o.conflist }));
  await ctd.importPauseImage();
  assert.equal((await ctd.cri.version()).runtimeName, 'containerd');

  const t0 = Date.now();
  const ids = await Promise.all(Array.from({ length: n }, (_, i) => ctd.cri.runPodSandbox(podConfig(i, network, ctd.dir, ctd.cgroupParent, port0 + i))));
  t.diagnostic(`${n} concurrent RunPodSandbox: ${Date.now() - t0} ms`);
  const pods = await Promise.all(ids.map(async (id, i) => {
    const st = await ctd.cri.podSandboxStatus(id);
    assert.equal(st.status.state, 'SANDBOX_READY');
    const ip = st.status.network?.ip ?? '';
    assert.match(ip, o.podAddress, `pod${i} address`);
    return { id, i, ip, netns: (await ctd.cri.podNetns(id)).netns, hostPort: port0 + i };
  }));
  assert.equal(new Set(pods.map((p) => p.ip)).size, n, 'distinct addresses');

  // Pods reach each other, the gateway and the external peer.
  const reach = await Promise.all(pods.flatMap((p) => [pods[(p.i + 1) % n]?.ip ?? '', o.gateway, ext.peerAddr].map(async (addr) =>
    ({ from: p.i, addr, code: (await inNetns(p.netns, ['busybox', 'ping', '-c', '1', '-W', '3', addr])).code }))));
  assert.deepEqual(reach.filter((r) => r.code !== 0), [], 'every ping answered');

  // Each pod's host port answers the external peer.
  const www = join(work.path, 'www');
  await mkdir(www);
  const listeners = scope.add(await podListeners(pods.map((p) => ({ netns: p.netns, body: `pod ${p.i}` })), www));
  for (const p of pods) assert.match(await httpGet(ext.peer, ext.hostAddr, port0 + p.i), new RegExp(`pod ${p.i}\\b`), `host port ${port0 + p.i}`);
  await listeners.close();
  await o.whileRunning?.(pods, ext);

  const t1 = Date.now();
  await Promise.all(ids.map(async (id) => {
    await ctd.cri.stopPodSandbox(id);
    await ctd.cri.removePodSandbox(id);
  }));
  t.diagnostic(`${n} concurrent Stop + Remove: ${Date.now() - t1} ms`);

  // Nothing left.
  assert.deepEqual(await ctd.cri.listPodSandbox(), []);
  for (const p of pods) assert.equal(existsSync(p.netns), false, `${p.netns} removed`);
  const veths = (await ipLinks(host, ['type', 'veth'])).map((l) => l.ifname).filter((x) => x !== ext.hostIf);
  assert.deepEqual(veths, [], 'no pod veth left');
  const rules = [...await iptablesSave(host), ...await iptablesSave(host, { ipv6: true })];
  assert.deepEqual(rules.filter((l) => l.includes('CNI-DN-') || ids.some((id) => l.includes(id))), [], 'no rule naming a pod left');
  assert.deepEqual(await o.leftovers?.() ?? [], [], 'nothing held by the plugin');

  const calls = readRecordings(logDir).map((r) => ({ ...r, conf: JSON.parse(r.stdin) as Record<string, unknown> }));
  const histogram: Record<string, number> = {};
  for (const c of calls) {
    const k = `${c.env['CNI_COMMAND'] ?? ''} ${String(c.conf['type'])}`;
    histogram[k] = (histogram[k] ?? 0) + 1;
  }
  t.diagnostic(`calls: ${JSON.stringify(histogram)}`);
  checkContainerdCalls(calls, pods, types, port0);
  return { ids, calls };
}

/** What containerd 1.6 sends, as far as a plugin depends on it (see test/e2e/cri-harness.test.ts). */
function checkContainerdCalls(calls: Recorded[], pods: ReadonlyArray<{ id: string; i: number; netns: string }>, types: readonly string[], port0: number): void {
  const first = types[0];
  for (const p of pods) {
    const mine = calls.filter((r) => r.env['CNI_CONTAINERID'] === p.id);
    const head = mine.filter((r) => r.conf['type'] === first);
    assert.deepEqual(head.map((r) => r.env['CNI_COMMAND']), ['ADD', 'DEL', 'DEL'], `pod${p.i}: ADD, then a DEL on Stop and one on Remove`);
    const [add, del1, del2] = head;
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
    // Each call's own exit status, not inferred from what containerd answered the CRI call.
    assert.deepEqual(mine.map((r) => [r.env['CNI_COMMAND'], r.plugin, r.rc, r.rc === 0 ? '' : r.stdout]),
      mine.map((r) => [r.env['CNI_COMMAND'], r.plugin, 0, '']), `pod${p.i}: every plugin call succeeded`);
    const pm = mine.find((r) => r.env['CNI_COMMAND'] === 'ADD' && (r.conf['capabilities'] as Record<string, boolean> | undefined)?.['portMappings'] === true);
    assert.deepEqual((pm?.conf['runtimeConfig'] as { portMappings?: unknown } | undefined)?.portMappings,
      [{ HostPort: port0 + p.i, ContainerPort: 80, Protocol: 'tcp', HostIP: '' }], 'capitalised port mapping keys');
    assert.equal((pm?.conf['capabilities'] as Record<string, boolean>)['portMappings'], true, 'capabilities left in');
  }
}
