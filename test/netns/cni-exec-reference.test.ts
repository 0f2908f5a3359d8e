// The exec harness (test/helpers/cni-exec.ts) driving the reference chain (bridge + host-local +
// portmap) in throwaway namespaces, with the checks the reference bridge plugin's own tests make.
// The same checks will run against batchbridge's executable; here they show that the harness sees
// what they look for (and that CHECK through it does fail after damage). The plugins run in a
// "host" namespace of the test's own (the bridge and the rules they leave die with it).
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { makeTempDir, testScope } from '../helpers/cleanup.js';
import { CniError, CniExec, parseConflist, type RuntimeConf } from '../helpers/cni-exec.js';
import { referenceConflist, referencePluginDir } from '../helpers/cni-fixtures.js';
import { createNetns, type Netns } from '../helpers/netns.js';
import { randomHex } from '../helpers/proc.js';

interface Iface { name: string; mac?: string; sandbox?: string }

test('reference chain through the exec harness: ADD result, CHECK, damage, DEL twice, never-added DEL, failed ADD', { timeout: 60_000 }, async (t) => {
  const scope = testScope(t);
  const tmp = scope.add(await makeTempDir('bbt-cni-'));
  const bin = await referencePluginDir(join(tmp.path, 'bin'));
  const net = `bbt-ex-${randomHex(3)}`;
  const list = parseConflist(referenceConflist({ name: net, bridge: 'bbex0', subnet: '198.18.70.0/24', dataDir: join(tmp.path, 'ipam') }));
  const host = scope.add(await createNetns({ prefix: 'bbt-exhost' }));
  const cni = new CniExec({ path: [bin], cacheDir: join(tmp.path, 'cache'), hostNetns: host.path });
  const leases = () => readdirSync(join(tmp.path, 'ipam', net)).filter((f) => f !== 'lock' && !f.startsWith('last_reserved_ip'));
  const pod = async (): Promise<[Netns, RuntimeConf]> => {
    const ns = scope.add(await createNetns({ prefix: 'bbt-expod' }));
    return [ns, { containerId: `ctr-${ns.name}`, netns: ns.path, ifName: 'eth0', args: [['IgnoreUnknown', '1']], capabilityArgs: { portMappings: [{ hostPort: 18090, containerPort: 80, protocol: 'tcp' }] } }];
  };

  const [p1, rt1] = await pod();
  const r = await cni.addList(list, rt1);
  const ifs = r['interfaces'] as unknown as Iface[];
  assert.equal(ifs.length, 3, 'bridge, host veth, container interface');
  assert.equal(ifs[0]?.name, 'bbex0');
  assert.equal(ifs[2]?.name, 'eth0');
  assert.equal(ifs[2]?.sandbox, p1.path);
  const ips = r['ips'] as unknown as Array<{ address: string; gateway: string; interface: number }>;
  assert.equal(ips[0]?.address, '198.18.70.2/24');
  assert.equal(ips[0]?.gateway, '198.18.70.1');
  assert.equal(ips[0]?.interface, 2);
  const routes = (await p1.execOk(['ip', '-j', 'route', 'show', 'default'])).trim();
  assert.match(routes, /"gateway":"198\.18\.70\.1"/, 'default route via the gateway');
  const bridgeMac = ifs[0]?.mac ?? '';
  const [bridgeLink] = JSON.parse(await host.execOk(['ip', '-j', 'link', 'show', 'bbex0'])) as Array<{ address: string }>;
  assert.equal(bridgeMac, bridgeLink?.address, 'the result names the bridge with its MAC');
  const hostRules = await host.execOk(['iptables-save', '-t', 'nat']);
  assert.match(hostRules, /CNI-DN-.*--dport 18090/, 'portmap installed the DNAT');

  // A second pod: the bridge keeps its MAC.
  const [, rt2] = await pod();
  const r2 = await cni.addList(list, rt2);
  assert.equal((r2['interfaces'] as unknown as Iface[])[0]?.mac, bridgeMac, 'stable bridge MAC');
  // Debian's portmap 1.1.1 fails CHECK for an IPv4-only pod ("could not check ipv6 dnat: chain
  // CNI-DN-... not found"): CHECK the bridge alone, under the same network name (same cache entry).
  const bridgeOnly = { ...list, plugins: list.plugins.slice(0, 1) };
  await assert.rejects(cni.checkList(list, rt1), /could not check ipv6 dnat/);
  await cni.checkList(bridgeOnly, rt1);

  // Damage: the container's address goes; CHECK through the harness fails with the plugin's error.
  await p1.execOk(['ip', 'addr', 'flush', 'dev', 'eth0']);
  const e = await cni.checkList(bridgeOnly, rt1).then(() => undefined, (x: unknown) => x);
  assert.ok(e instanceof CniError, 'CHECK fails after damage');
  assert.notEqual(e.exitCode, 0);
  assert.match(e.message, /198\.18\.70\.2/, 'the error names the missing address');

  // DEL twice; DEL of a container never added.
  await cni.delList(list, rt1);
  await cni.delList(list, rt1);
  await cni.delList(list, { ...rt1, containerId: 'never-added', netns: '' });
  await cni.delList(list, rt2);
  assert.deepEqual(leases(), [], 'addresses released');
  assert.doesNotMatch(await host.execOk(['iptables-save', '-t', 'nat']), /CNI-DN-/, 'port mappings removed');

  // A failed ADD (CNI_IFNAME already exists in the pod) leaks no address.
  const [p3, rt3] = await pod();
  await p3.execOk(['ip', 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0peer']);
  await assert.rejects(cni.addList(list, rt3), (x: unknown) => x instanceof CniError && /plugin type="bridge" failed \(add\)/.test(x.message));
  assert.deepEqual(leases(), [], 'no address kept by the failed ADD');
  const cached = await cni.cachedResult(list, rt3);
  assert.equal(cached, undefined, 'nothing cached for a failed ADD');
  assert.equal(r['cniVersion'], '1.0.0');
});
