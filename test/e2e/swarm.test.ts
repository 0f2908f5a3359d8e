// End-to-end: Docker Swarm services on batchbridge. Two dockerd "nodes" on this machine, each in
// a network namespace of its own and a mount namespace of its own (a private tmpfs on
// /run/docker/plugins, so each dockerd sees only its own managed plugin), joined by a veth link
// (198.18.250.0/24) and into one swarm over it. dockerd refuses a hand-started plugin in swarm
// mode, so each node gets the batchbridge managed plugin. Each node has a config-only network
// with its own subnet; the swarm-scope network is made --config-from it. Tasks get node-local
// networking from their node's plugin: an address from their node's subnet, reach to the other
// tasks of their node and to the outside (an external peer namespace per node, which has no
// route to the container subnets: only masquerade lets a task reach it). Across nodes there is
// no L2: that is the overlay driver's job.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { testScope, type Scope } from '../helpers/cleanup.js';
import { buildBusyboxImage, startDockerd, type Dockerd } from '../helpers/dockerd.js';
import { buildPluginFolder, installManagedPlugin, ourFirewallLines, type ManagedPlugin, type PluginFolder } from '../helpers/managed-plugin.js';
import { createExternalPeer, createNetns, ipLinks, type Netns } from '../helpers/netns.js';
import { randomPluginName } from '../helpers/plugin.js';
import { eventually, randomHex } from '../helpers/proc.js';
import { linkNamespaces, startNodeNamespaces } from '../helpers/swarm-node.js';

const PEER = '198.19.255.2';

interface Node {
  readonly hostname: string;
  readonly ns: Netns;
  readonly d: Dockerd;
  readonly linkAddr: string;
  readonly subnet: string;
  plugin?: ManagedPlugin;
}

async function startNode(scope: Scope, hostname: string, linkAddr: string, subnet: string): Promise<Node> {
  const ns = scope.add(await createNetns());
  const holder = scope.add(await startNodeNamespaces(ns, hostname));
  const d = scope.add(await startDockerd(holder.ns));
  await buildBusyboxImage(d);
  scope.add(await createExternalPeer(ns));
  return { hostname, ns, d, linkAddr, subnet };
}

/**
 * Bridges and veths in a node as "name@master", leaving out the external peer's and the swarm
 * link's veths and Docker's own docker_gwbridge (swarm makes it for its ingress sandbox).
 */
async function bridgesAndVeths(n: Node): Promise<string[]> {
  return (await ipLinks(n.ns))
    .filter((l) => !l.ifname.startsWith('bbh') && !l.ifname.startsWith('bbl'))
    .filter((l) => l.ifname !== 'docker_gwbridge' && l.master !== 'docker_gwbridge')
    .filter((l) => l.linkinfo?.info_kind === 'bridge' || l.linkinfo?.info_kind === 'veth')
    .map((l) => `${l.ifname}@${l.master ?? ''}`)
    .sort();
}

/** Running task containers of service `svc` on a node, with their swarmnet addresses. */
async function tasks(n: Node, svc: string): Promise<Array<{ id: string; ip: string }>> {
  const ids = (await n.d.dockerOk(['ps', '-q', '--filter', `label=com.docker.swarm.service.name=${svc}`])).split('\n').filter((l) => l !== '');
  const out: Array<{ id: string; ip: string }> = [];
  for (const id of ids) {
    const ip = (await n.d.dockerOk(['inspect', '-f', '{{(index .NetworkSettings.Networks "swarmnet").IPAddress}}', id])).trim();
    out.push({ id, ip });
  }
  return out;
}

async function pingOk(n: Node, from: string, to: string): Promise<void> {
  const r = await n.d.docker(['exec', from, 'ping', '-c', '1', '-W', '3', to]);
  assert.equal(r.code, 0, `${n.hostname}: task ${from.slice(0, 12)} cannot reach ${to}: ${r.stdout}${r.stderr}`);
}

test('swarm: a service over two nodes, node-local networking from each node\'s managed plugin', { timeout: 300_000 }, async (t) => {
  const scope = testScope(t);
  const started = Date.now();
  const mark = (what: string) => t.diagnostic(`${what}: ${Math.round((Date.now() - started) / 1000)} s`);
  const name = randomPluginName();
  const [folder, n1, n2]: [PluginFolder, Node, Node] = await Promise.all([
    buildPluginFolder(scope, name),
    startNode(scope, 'bbnode1', '198.18.250.1', '198.18.61.0/24'),
    startNode(scope, 'bbnode2', '198.18.250.2', '198.18.62.0/24'),
  ]);
  const nodes = [n1, n2];
  await linkNamespaces(n1.ns, n2.ns, `${n1.linkAddr}/24`, `${n2.linkAddr}/24`, randomHex(3));
  mark('two nodes, their link and the plugin folder');

  await t.test('each node installs its own managed plugin and sees only it', async () => {
    await Promise.all(nodes.map(async (n) => {
      n.plugin = await installManagedPlugin(scope, n.d, folder);
    }));
    for (const n of nodes) {
      const ls = (await n.d.dockerOk(['plugin', 'ls', '--format', '{{.ID}} {{.Enabled}}'])).trim().split('\n');
      assert.deepEqual(ls, [`${n.plugin?.id.slice(0, 12)} true`], `${n.hostname}: plugins`);
      // The socket is in the node's private /run/docker/plugins, not on the host.
      const r = await n.ns.exec(['test', '-S', n.plugin?.socketPath ?? '']);
      assert.notEqual(r.code, 0, 'invisible from the root mount namespace');
      const inside = await n.d.docker(['plugin', 'inspect', '-f', '{{.Enabled}}', `${name}:latest`]);
      assert.equal(inside.stdout.trim(), 'true');
    }
    mark('plugins created and enabled on both nodes');
  });
  const drv = `${name}:latest`;

  // On failure, leave the swarm before the dockerds stop, so that their clean-up can remove the
  // containers and networks (a swarm network in use by a service cannot be removed).
  scope.defer('leave the swarm', async () => {
    await n1.d.docker(['service', 'rm', 'svc']);
    for (const n of [n2, n1]) await n.d.docker(['swarm', 'leave', '--force']);
  });

  await t.test('swarm init / join over the link', async () => {
    await n1.d.dockerOk(['swarm', 'init', '--advertise-addr', n1.linkAddr, '--listen-addr', `${n1.linkAddr}:2377`]);
    const token = (await n1.d.dockerOk(['swarm', 'join-token', '-q', 'worker'])).trim();
    await n2.d.dockerOk(['swarm', 'join', '--token', token, '--advertise-addr', n2.linkAddr, '--listen-addr', `${n2.linkAddr}:2377`, `${n1.linkAddr}:2377`]);
    await eventually(async () => {
      const ls = (await n1.d.dockerOk(['node', 'ls', '--format', '{{.Hostname}} {{.Status}}'])).trim().split('\n').sort();
      assert.deepEqual(ls, ['bbnode1 Ready', 'bbnode2 Ready']);
    }, { timeoutMs: 30_000, intervalMs: 500 });
    mark('swarm formed');
  });

  await t.test('a swarm-scope network from per-node config-only networks; 6 replicas spread over both nodes', async () => {
    await Promise.all(nodes.map((n) => n.d.dockerOk(['network', 'create', '--config-only', '--subnet', n.subnet, 'bbcfg'])));
    await n1.d.dockerOk(['network', 'create', '-d', drv, '--scope', 'swarm', '--config-from', 'bbcfg', 'swarmnet']);
    await n1.d.dockerOk(['service', 'create', '--detach', '--name', 'svc', '--replicas', '6', '--network', 'swarmnet',
      '--no-resolve-image', '--endpoint-mode', 'dnsrr', '--stop-grace-period', '1s', 'bb:latest', 'sleep', '600']);
    await eventually(async () => {
      const counts = await Promise.all(nodes.map(async (n) => (await tasks(n, 'svc')).filter((x) => x.ip !== '').length));
      assert.equal(counts[0]! + counts[1]!, 6, `running tasks per node: ${counts.join(', ')}`);
    }, { timeoutMs: 90_000, intervalMs: 1000 });
    mark('6 tasks running');
    for (const n of nodes) {
      const ts = await tasks(n, 'svc');
      assert.ok(ts.length >= 1, `${n.hostname} runs tasks (${ts.length})`);
      const prefix = n.subnet.replace(/0\/24$/, '');
      for (const x of ts) assert.ok(x.ip.startsWith(prefix), `${n.hostname}: task address ${x.ip} is from ${n.subnet}`);
      // One bridge of ours with one veth per task on it, and nothing else.
      const added = await bridgesAndVeths(n);
      const bridges = added.filter((l) => l.startsWith('bb-') && l.endsWith('@'));
      assert.equal(bridges.length, 1, `${n.hostname}: new links ${added.join(' ')}`);
      const br = bridges[0]!.slice(0, -1);
      assert.equal(added.filter((l) => l.startsWith('veth') && l.endsWith(`@${br}`)).length, ts.length, `${n.hostname}: ${added.join(' ')}`);
      assert.equal(added.length, 1 + ts.length, `${n.hostname}: ${added.join(' ')}`);
      t.diagnostic(`${n.hostname}: ${ts.length} task(s) ${ts.map((x) => x.ip).join(' ')} on ${br}`);
    }
  });

  await t.test('each task reaches the other tasks on its node and the outside', async () => {
    for (const n of nodes) {
      const ts = await tasks(n, 'svc');
      for (const x of ts) {
        await pingOk(n, x.id, PEER);
        for (const y of ts) if (y.id !== x.id) await pingOk(n, x.id, y.ip);
      }
      // Masquerade: the peer saw the node's address, not the task's (it has no route back).
      const rules = (await n.ns.execOk(['iptables-save', '-t', 'nat'])).split('\n');
      assert.ok(rules.some((l) => l.includes(`-s ${n.subnet}`) && l.includes('MASQUERADE')), `${n.hostname}: masquerade for ${n.subnet}`);
    }
    mark('traffic checked');
  });

  await t.test('scale to 0 and service rm leave nothing of ours on either node', async () => {
    await n1.d.dockerOk(['service', 'scale', '--detach', 'svc=0']);
    await eventually(async () => {
      for (const n of nodes) {
        assert.deepEqual(await tasks(n, 'svc'), [], `${n.hostname}: tasks left`);
        assert.deepEqual(await bridgesAndVeths(n), [], `${n.hostname}: links of ours left`);
        assert.deepEqual((await ourFirewallLines(n.ns)).filter((l) => /bb:(net|ep)=/.test(l)), [], `${n.hostname}: tagged rules left`);
      }
    }, { timeoutMs: 60_000, intervalMs: 1000 });
    await n1.d.dockerOk(['service', 'rm', 'svc']);
    for (const n of nodes) {
      assert.deepEqual(await bridgesAndVeths(n), []);
      assert.deepEqual((await ourFirewallLines(n.ns)).filter((l) => /bb:(net|ep)=/.test(l)), []);
    }
    mark('scaled to 0 and removed');
  });

  await t.test('networks removed, swarm left, plugins disabled and removed: no rule of ours at all', async () => {
    await n1.d.dockerOk(['network', 'rm', 'swarmnet']);
    await Promise.all(nodes.map((n) => n.d.dockerOk(['network', 'rm', 'bbcfg'])));
    await n2.d.dockerOk(['swarm', 'leave', '--force']);
    await n1.d.dockerOk(['swarm', 'leave', '--force']);
    await Promise.all(nodes.map(async (n) => {
      await n.d.dockerOk(['plugin', 'disable', drv]);
      await n.d.dockerOk(['plugin', 'rm', drv]);
    }));
    for (const n of nodes) assert.deepEqual(await ourFirewallLines(n.ns), [], n.hostname);
    mark('all removed');
  });
});
