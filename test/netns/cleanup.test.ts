// Uninstall in a private namespace: a plugin with two networks (one on its own bridge, one on a
// bridge the user made, down), endpoints and a published port; `status` answers healthy;
// `cleanup` refuses while the plugin serves; after the plugin stops, `cleanup --dry-run` changes
// nothing, and `cleanup` leaves no rule, chain or hook of ours in iptables-save or
// ip6tables-save, no bridge or veth of ours (a marked veth the books do not know included), and
// no books, while the user's bridge (down again, without our address) and a foreign veth named
// like ours stay. On the CNI side it refuses while the daemon answers at the CNI socket, then
// removes the DEL spool and the forwarder cni-install wrote (not a foreign file of that name),
// and names the conflist without removing it.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { runOk } from '../helpers/proc.js';
import { assertPrivateNetns, BIN, cleanUpAfter, Client, kernelLinks, readBooks, startPlugin, tempDir, type PluginProc } from './crash-kit.js';

const hex = (n: number, w = 63): string => n.toString(16).padStart(w, '0');
const NET_OWN = `a${hex(1)}`;
const NET_USER = `a${hex(2)}`;
const USER_BRIDGE = 'bbtuser0';
const FOREIGN = ['vethf00f00f', 'vethf00f00e'];

function cli(args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

async function ok(c: Client, method: string, body: unknown): Promise<void> {
  const r = await c.call(method, body);
  assert.equal(r.status, 200, `${method}: ${r.text}`);
}

async function populate(c: Client): Promise<void> {
  const net = (id: string, n: number, generic: Record<string, unknown>) => ({
    NetworkID: id,
    Options: { 'com.docker.network.generic': generic, 'com.docker.network.enable_ipv6': true },
    IPv4Data: [{ AddressSpace: '', Pool: `198.18.${n}.0/24`, Gateway: `198.18.${n}.1/24` }],
    IPv6Data: [{ AddressSpace: '', Pool: `fd00:${n}::/64`, Gateway: `fd00:${n}::1/64` }],
  });
  await ok(c, 'CreateNetwork', net(NET_OWN, 61, {}));
  await ok(c, 'CreateNetwork', net(NET_USER, 62, { 'com.docker.network.bridge.name': USER_BRIDGE }));
  for (let i = 0; i < 4; i++) {
    const [id, n] = i % 2 === 0 ? [NET_OWN, 61] : [NET_USER, 62];
    const ep = `e${hex(i + 1)}`;
    await ok(c, 'CreateEndpoint', { NetworkID: id, EndpointID: ep, Interface: { Address: `198.18.${n}.${i + 2}/24`, AddressIPv6: `fd00:${n}::${i + 2}/64` }, Options: {} });
    await ok(c, 'Join', { NetworkID: id, EndpointID: ep, SandboxKey: '', Options: {} });
  }
  await ok(c, 'ProgramExternalConnectivity', { NetworkID: NET_OWN, EndpointID: `e${hex(1)}`, Options: { 'com.docker.network.portmap': [{ Proto: 6, Port: 80, HostPort: 18081 }] } });
}

async function ours(): Promise<string> {
  const v4 = await runOk(['iptables-save']);
  const v6 = await runOk(['ip6tables-save']);
  return [...v4.split('\n'), ...v6.split('\n')].filter((l) => /BB-|bb:(net|ep)=/.test(l)).join('\n');
}

test('cleanup: refused while serving; then removes everything of ours and nothing else', async (t) => {
  assertPrivateNetns();
  const dir = await tempDir('bbt-cleanup-');
  let plugin: PluginProc | null = null;
  cleanUpAfter(t, dir, () => plugin, async () => {
    for (const l of [USER_BRIDGE, FOREIGN[0] ?? '']) spawnSync('ip', ['link', 'del', l]);
  });
  await runOk(['ip', 'link', 'set', 'lo', 'up']);
  await runOk(['ip', 'link', 'add', USER_BRIDGE, 'type', 'bridge']);
  await runOk(['ip', 'link', 'add', FOREIGN[0] ?? '', 'type', 'veth', 'peer', 'name', FOREIGN[1] ?? '']);
  const stateDir = join(dir.path, 'state');
  const socketDir = join(dir.path, 'sock');
  const cniSocket = join(dir.path, 'cni.sock');
  const binDir = join(dir.path, 'cni-bin');
  const confDir = join(dir.path, 'cni-conf');
  const foreignBin = join(dir.path, 'other-bin');
  const common = ['--state-dir', stateDir, '--name', 'bbclean', '--socket-dir', socketDir, '--cni-socket', cniSocket];
  plugin = await startPlugin({ name: 'bbclean', stateDir, socketDir, logPath: join(dir.path, 'plugin.log'), extraArgs: ['--cni-socket', cniSocket] });
  const installed = cli(['cni-install', '--bin-dir', binDir, '--socket', cniSocket, '--conf-dir', confDir, '--name', 'podnet', '--subnet', '198.18.63.0/24']);
  assert.equal(installed.code, 0, installed.err);
  mkdirSync(foreignBin);
  writeFileSync(join(foreignBin, 'batchbridge-cni'), '#!/bin/sh\n');
  const c = new Client(plugin.socketPath, 5000);
  try {
    await populate(c);
  } finally {
    await c.close();
  }
  const status = cli(['status', '--name', 'bbclean', '--socket-dir', socketDir]);
  assert.equal(status.code, 0, status.err);
  assert.match(status.out, /health: healthy\nnetworks 2, endpoints 4, published ports 2;/);

  const refused = cli(['cleanup', ...common]);
  assert.equal(refused.code, 1);
  assert.match(refused.err, /cleanup refused: a plugin answers at .*bbclean\.sock: stop it first/);
  // Asked about another socket, it still finds the plugin through the state dir's lock.
  const held = cli(['cleanup', '--state-dir', stateDir, '--name', 'other', '--socket-dir', socketDir]);
  assert.equal(held.code, 1);
  assert.match(held.err, /cleanup refused: the state dir .* is in use by batchbridge serve \(pid \d+, name bbclean/);
  // Only the CNI socket answers for these: the daemon is still there.
  const cniHeld = cli(['cleanup', '--state-dir', join(dir.path, 'elsewhere'), '--name', 'other', '--socket-dir', socketDir, '--cni-socket', cniSocket]);
  assert.equal(cniHeld.code, 1);
  assert.match(cniHeld.err, /cleanup refused: a daemon answers at the CNI socket .*cni\.sock: stop it first/);
  assert.equal(existsSync(join(dir.path, 'elsewhere')), false, 'refused before anything was made');
  assert.notEqual(await ours(), '', 'nothing changed');

  assert.equal((await plugin.stop()).code, 0);
  plugin = null;
  assert.equal(cli(['status', '--name', 'bbclean', '--socket-dir', socketDir]).code, 3, 'status: no plugin answers');
  // An interface with the books' mark that they do not name is ours too.
  const mark = readBooks(stateDir).ownerGroup;
  await runOk(['ip', 'link', 'add', 'vethabc1230', 'group', String(mark), 'type', 'veth', 'peer', 'name', 'vethabc1231']);
  const rulesBefore = await ours();
  assert.match(rulesBefore, /-A FORWARD -j BB-FORWARD/);

  // A DEL the forwarder recorded while the daemon was down.
  const spooled = join(`${cniSocket}.spool`, `del-${'1'.padStart(20, '0')}-42-0.frame`);
  writeFileSync(spooled, 'frame');
  const cniArgs = ['--cni-bin-dir', binDir, '--cni-conf-dir', confDir];
  const dry = cli(['cleanup', ...common, ...cniArgs, '--dry-run']);
  assert.equal(dry.code, 0, dry.err);
  assert.match(dry.out, /^would remove: veth /m);
  assert.match(dry.out, /would remove: veth vethabc1230 \(with our mark, not in the books\)/);
  assert.match(dry.out, /would remove: bridge bb-a00000000000 \(network a0+1\)/);
  assert.match(dry.out, /would remove: user bridge bbtuser0 \(network a0+2\) kept, our address\(es\) 198\.18\.62\.1\/24/);
  assert.match(dry.out, /would remove: firewall: IPv4 filter FORWARD -j BB-FORWARD \(hook\)/);
  assert.match(dry.out, /would remove: spooled CNI DEL .*del-0+1-42-0\.frame/);
  assert.match(dry.out, /would remove: CNI plugin .*cni-bin\/batchbridge-cni \(socket .*cni\.sock\)/);
  assert.doesNotMatch(dry.out, /^removed/m);
  assert.ok(existsSync(spooled) && existsSync(join(binDir, 'batchbridge-cni')), 'a dry run leaves the CNI side too');
  assert.equal(await ours(), rulesBefore, 'a dry run changes no rule');
  assert.ok((await kernelLinks()).has('vethabc1230') && existsSync(join(stateDir, 'batchbridge.db')), 'nor an interface or the books');

  assert.match(cli(['cleanup', ...common, '--cni-bin-dir', foreignBin, '--dry-run']).out, /note: .*other-bin\/batchbridge-cni is not a batchbridge-cni forwarder; it is kept/);
  const done = cli(['cleanup', ...common, ...cniArgs]);
  assert.equal(done.code, 0, `${done.out}\n${done.err}`);
  assert.match(done.out, /^removed: file .*batchbridge\.db$/m);
  assert.equal(await ours(), '', 'no rule, chain or hook of ours in iptables-save or ip6tables-save');
  const links = await kernelLinks();
  const left = [...links.values()].filter((l) => l.linkinfo?.info_kind === 'bridge' || l.linkinfo?.info_kind === 'veth').map((l) => l.ifname).sort();
  assert.deepEqual(left, [USER_BRIDGE, ...FOREIGN].sort(), 'only the user bridge and the foreign pair are left');
  const ub = links.get(USER_BRIDGE);
  assert.ok(!(ub?.flags ?? []).includes('UP'), 'the user bridge is down again, as it was');
  assert.deepEqual((ub?.addr_info ?? []).filter((a) => a.local.startsWith('198.18.') || a.local.startsWith('fd00:')), [], 'without our addresses');
  assert.equal(existsSync(stateDir), false, 'the books (and the emptied state dir) are gone');
  assert.equal(existsSync(join(socketDir, 'bbclean.sock')), false);
  assert.equal(existsSync(`${cniSocket}.spool`), false, 'the DEL spool is gone');
  assert.equal(existsSync(join(binDir, 'batchbridge-cni')), false, 'the forwarder is gone');
  assert.ok(existsSync(join(foreignBin, 'batchbridge-cni')), 'a foreign file of that name stays');
  assert.match(done.out, /note: .*cni-conf\/10-podnet\.conflist names batchbridge-cni/);
  assert.ok(existsSync(join(confDir, '10-podnet.conflist')), 'the conflist is named, not removed');
  const again = cli(['cleanup', ...common]);
  assert.equal(again.code, 0);
  assert.match(again.out, /nothing of batchbridge's found/);
});
