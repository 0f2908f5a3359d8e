// The Podman scenario, for any CNI plugin dir + conflist: `podman network ls` lists the network
// (VERSION probes answered), `podman run -d --network NET -p PORT:80` serves the external peer
// through the host port, `podman rm -f` leaves nothing; every plugin of the conflist recorded and
// what Podman sent checked, every call's exit status 0. Run with the reference chain by
// test/e2e/podman-harness.test.ts and with batchbridge by test/e2e/podman-batchbridge.test.ts (its
// daemon in the namespace given as `host`).
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { makeTempDir, type Scope } from './cleanup.js';
import { conflistTypes, readRecordings, recordingPluginDir } from './cni-fixtures.js';
import type { Recorded } from './cri-scenario.js';
import { createExternalPeer, createNetns, ipLinks, iptablesSave, type Netns } from './netns.js';
import { httpGet } from './pod-net.js';
import { startPodman, type Podman } from './podman.js';
import { eventually } from './proc.js';

export interface PodmanScenarioOptions {
  binDir: string;
  conflist: string;
  podAddress: RegExp;
  port?: number;
  /** The namespace Podman runs in (and the plugin's daemon, if it has one); default: a new one. */
  host?: Netns;
  /** Checks while the container runs (after its port answered): its address and netns. */
  whileRunning?: (c: { id: string; ip: string; netns: string }) => Promise<void>;
  /** Names of what the plugin still holds after `podman rm` (IPAM leases, ...): must be empty. */
  leftovers?: () => Promise<string[]>;
}

export interface PodmanScenarioResult {
  calls: Recorded[];
  /** The Podman instance, still usable (the caller's scope stops it). */
  podman: Podman;
  /** Where the recorders log (readRecordings), for calls made after the scenario. */
  logDir: string;
}

export async function podmanScenario(t: TestContext, scope: Scope, o: PodmanScenarioOptions): Promise<PodmanScenarioResult> {
  const port = o.port ?? 18085;
  const host = o.host ?? scope.add(await createNetns({ prefix: 'bbt-pod' }));
  const ext = scope.add(await createExternalPeer(host));
  const work = scope.add(await makeTempDir('bbt-podrec-'));
  const logDir = join(work.path, 'calls');
  const types = conflistTypes(o.conflist);
  const bin = await recordingPluginDir(join(work.path, 'bin'), { from: [o.binDir], record: types, logDir });
  const net = (JSON.parse(o.conflist) as { name: string }).name;
  const pm = scope.add(await startPodman(host, { binDir: bin, conflists: [o.conflist] }));

  const ls = await pm.podmanOk(['network', 'ls', '--format', '{{.Name}}']);
  assert.ok(ls.split('\n').includes(net), `${net} listed by podman network ls`);

  const t0 = Date.now();
  const web = await pm.runDetached('web', ['--network', net, '-p', `${port}:80`], ['/bin/httpd', '-f', '-p', '80', '-h', '/www']);
  t.diagnostic(`podman run -d: ${Date.now() - t0} ms; netns ${web.netns}`);
  assert.match(web.netns, /^\/run\/netns\/netns-/);
  const ip = (await pm.podmanOk(['inspect', '--format', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', web.id])).trim();
  assert.match(ip, o.podAddress);
  const body = await eventually(async () => {
    const b = await httpGet(ext.peer, ext.hostAddr, port);
    if (!b.includes('hello from podman')) throw new Error(`no answer on ${ext.hostAddr}:${port}: ${JSON.stringify(b)}`);
    return b;
  }, { timeoutMs: 10_000 });
  assert.match(body, /^HTTP\/1\.[01] 200/);
  await o.whileRunning?.({ id: web.id, ip, netns: web.netns });

  const t1 = Date.now();
  await pm.podmanOk(['rm', '-f', '-t', '0', 'web']);
  t.diagnostic(`podman rm -f: ${Date.now() - t1} ms`);
  assert.equal(existsSync(web.netns), false, 'netns removed');
  const veths = (await ipLinks(host, ['type', 'veth'])).map((l) => l.ifname).filter((x) => x !== ext.hostIf);
  assert.deepEqual(veths, [], 'no container veth left');
  assert.deepEqual((await iptablesSave(host)).filter((l) => l.includes('CNI-DN-') || l.includes(web.id)), [], 'no rule naming the container left');
  assert.deepEqual(await o.leftovers?.() ?? [], [], 'nothing held by the plugin');

  const calls = readRecordings(logDir).map((r) => ({ ...r, conf: JSON.parse(r.stdin) as Record<string, unknown> }));
  // Loading the config probed every plugin with VERSION.
  for (const ty of types) {
    const probe = calls.find((r) => r.plugin === ty && r.env['CNI_COMMAND'] === 'VERSION');
    assert.ok(probe, `VERSION probe of ${ty}`);
    assert.deepEqual(probe.env, { CNI_COMMAND: 'VERSION', CNI_CONTAINERID: '', CNI_NETNS: 'dummy', CNI_IFNAME: 'dummy', CNI_ARGS: '', CNI_PATH: 'dummy' });
    assert.equal(probe.stdin, '{"cniVersion":"1.0.0"}');
    assert.equal(probe.rc, 0, `VERSION of ${ty} answered`);
  }
  const mine = calls.filter((r) => r.env['CNI_CONTAINERID'] === web.id);
  assert.deepEqual(mine.map((r) => `${r.env['CNI_COMMAND']} ${String(r.conf['type'])}`),
    [...types.map((ty) => `ADD ${ty}`), ...[...types].reverse().map((ty) => `DEL ${ty}`)]);
  const add = mine[0];
  assert.equal(add?.env['CNI_NETNS'], web.netns);
  assert.equal(add?.env['CNI_IFNAME'], 'eth0');
  assert.equal(add?.env['CNI_ARGS'], 'IgnoreUnknown=1;K8S_POD_NAME=web');
  const pmAdd = mine.find((r) => r.env['CNI_COMMAND'] === 'ADD' && (r.conf['capabilities'] as Record<string, boolean> | undefined)?.['portMappings'] === true);
  assert.deepEqual((pmAdd?.conf['runtimeConfig'] as { portMappings?: unknown } | undefined)?.portMappings,
    [{ hostPort: port, containerPort: 80, protocol: 'tcp' }], 'lowercase port mapping keys, no hostIP when none');
  const del = mine[types.length];
  assert.ok(del?.conf['prevResult'], 'DEL carries the cached result');
  assert.equal(del?.env['CNI_NETNS'], web.netns);
  assert.deepEqual(mine.map((r) => [r.env['CNI_COMMAND'], r.plugin, r.rc, r.rc === 0 ? '' : r.stdout]),
    mine.map((r) => [r.env['CNI_COMMAND'], r.plugin, 0, '']), 'every plugin call for the container succeeded');
  return { calls, podman: pm, logDir };
}
