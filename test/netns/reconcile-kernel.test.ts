// Reconciliation against the real kernel: damage what the plugin made (behind its back), then
// `batchbridge reconcile` (asking the running plugin, or offline with the books) repairs it.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { run, runOk } from '../helpers/proc.js';
import { assertPrivateNetns, BIN, checkConsistency, cleanUpAfter, Client, kernelLinks, readBooks, startPlugin, tempDir, type PluginProc } from './crash-kit.js';

const NET = 'recnet000000001';
const BRIDGE = 'bb-recnet000000';

async function cli(args: readonly string[]): Promise<{ code: number; out: string; err: string }> {
  const r = await run([process.execPath, BIN, 'reconcile', ...args], { timeoutMs: 60_000 });
  return { code: r.code, out: r.stdout, err: r.stderr };
}

test('reconcile repairs damage, via the running plugin and offline', { timeout: 120_000 }, async (t) => {
  assertPrivateNetns();
  const dir = await tempDir('bbt-rec-');
  const stateDir = join(dir.path, 'state');
  const socketDir = join(dir.path, 'sock');
  const name = 'bbrec';
  // The watchdog would repair the firewall damage before reconcile sees it: this tests reconcile.
  const opts = { name, stateDir, socketDir, logPath: join(dir.path, 'plugin.log'), extraArgs: ['--reconcile-interval-ms', '0', '--firewall-check-ms', '3600000'] };
  let plugin: PluginProc | null = null;
  const client = new Client(join(socketDir, `${name}.sock`), 5_000);
  cleanUpAfter(t, dir, () => plugin, () => client.close());
  const cliArgs = ['--state-dir', stateDir, '--name', name, '--socket-dir', socketDir];
  plugin = await startPlugin(opts);
  assert.equal((await client.call('CreateNetwork', { NetworkID: NET, Options: {}, IPv4Data: [{ Pool: '198.18.80.0/24', Gateway: '198.18.80.1/24' }], IPv6Data: [] })).status, 200);
  for (const [i, ep] of ['e1', 'e2', 'e3'].entries()) {
    const r = await client.call('CreateEndpoint', { NetworkID: NET, EndpointID: ep, Interface: { Address: `198.18.80.${10 + i}/24` }, Options: {} });
    assert.equal(r.status, 200, r.text);
  }
  assert.equal((await client.call('ProgramExternalConnectivity', { NetworkID: NET, EndpointID: 'e1', Options: { 'com.docker.network.portmap': [{ Proto: 6, Port: 80, HostPort: 18081 }] } })).status, 200);

  // Nothing to do on a healthy system.
  let r = await cli(cliArgs);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /running plugin/);
  assert.match(r.out, /kernel and books agree/);

  // Damage, with the plugin running: a vanished endpoint (container netns died), a detached veth,
  // an orphan veth on our bridge and an orphan bridge (both with our ownership mark: left by a
  // crash), a lost address, flushed and foreign rules. Beside them, interfaces that are not ours
  // and look like ours: a veth on our bridge and a bb-* bridge without the mark.
  const books = readBooks(stateDir);
  const mark = String(books.ownerGroup);
  assert.ok(books.ownerGroup > 0, 'the books carry an ownership mark');
  const e2 = books.endpoints.get('e2');
  const e3 = books.endpoints.get('e3');
  assert.ok(e2 && e3);
  await runOk(['ip', 'link', 'del', 'dev', e2.host]);
  await runOk(['ip', 'link', 'set', 'dev', e3.host, 'nomaster']);
  await runOk(['ip', 'link', 'add', 'vethdead001', 'group', mark, 'master', BRIDGE, 'type', 'veth', 'peer', 'name', 'vethdead002']);
  await runOk(['ip', 'link', 'add', 'bb-orphan0', 'group', mark, 'type', 'bridge']);
  await runOk(['ip', 'link', 'add', 'vethuser001', 'master', BRIDGE, 'type', 'veth', 'peer', 'name', 'vethuser002']);
  await runOk(['ip', 'link', 'add', 'bb-lan', 'type', 'bridge']);
  await runOk(['ip', 'addr', 'flush', 'dev', BRIDGE]);
  await runOk(['iptables', '-t', 'nat', '-F', 'BB-POSTROUTING']);
  await runOk(['iptables', '-A', 'BB-FORWARD', '-m', 'comment', '--comment', 'bb:net=zzzzzzzz', '-j', 'ACCEPT']);

  r = await cli([...cliArgs, '--dry-run']);
  assert.equal(r.code, 0, r.err);
  for (const kind of ['endpoint-vanished e2', `veth-detached ${e3.host}`, 'orphan-veth vethdead001', 'orphan-bridge bb-orphan0', `address-missing ${BRIDGE}`, 'firewall-drift bb:net=zzzzzzzz', 'firewall-drift bb:net=recnet000000']) {
    assert.ok(r.out.includes(kind), `dry run reports ${kind}:\n${r.out}`);
  }
  assert.match(r.out, /dry run: nothing changed/);
  assert.match(r.out, /would be removed/);
  assert.doesNotMatch(r.out, /: removed/, 'a dry run says what it would do, not what it did');
  assert.ok((await kernelLinks()).has('bb-orphan0'), 'a dry run changes nothing');

  r = await cli([...cliArgs, '--json']);
  assert.equal(r.code, 0, r.err);
  const report = JSON.parse(r.out) as { findings: Array<{ kind: string }>; applied: boolean };
  assert.equal(report.applied, true);
  assert.ok(report.findings.length >= 7, r.out);
  const after = readBooks(stateDir);
  assert.equal(after.endpoints.has('e2'), false, 'the vanished endpoint is unbooked');
  const kept = await kernelLinks();
  assert.equal(kept.get('vethuser001')?.master, BRIDGE, "a veth on our bridge that is not ours is left alone");
  assert.ok(kept.has('bb-lan'), "an operator's bb-* bridge is left alone");
  await runOk(['ip', 'link', 'del', 'vethuser001']);
  await runOk(['ip', 'link', 'del', 'bb-lan']);
  assert.deepEqual(await checkConsistency(after), []);
  // dockerd deletes the vanished endpoint later: success, as for anything already gone.
  assert.equal((await client.call('DeleteEndpoint', { NetworkID: NET, EndpointID: 'e2' })).status, 200);
  r = await cli(cliArgs);
  assert.match(r.out, /kernel and books agree/, r.out);

  // Offline: the plugin is dead (socket left behind); damage, then fix with the books alone.
  await plugin.kill9();
  plugin = null;
  await runOk(['ip', 'link', 'del', 'dev', BRIDGE]); // bridge gone: veths fall off it
  await runOk(['ip', 'link', 'add', 'bb-orphan1', 'group', mark, 'type', 'bridge']);
  r = await cli(cliArgs);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /plugin not running/);
  assert.match(r.out, new RegExp(`bridge-missing ${BRIDGE}`));
  assert.match(r.out, /orphan-bridge bb-orphan1/);
  assert.deepEqual(await checkConsistency(readBooks(stateDir)), []);
  const links = await kernelLinks();
  for (const ep of ['e1', 'e3']) assert.equal(links.get(readBooks(stateDir).endpoints.get(ep)?.host ?? '')?.master, BRIDGE, `${ep} back on its bridge`);

  // No books at all: refuse (there is nothing to compare the kernel with).
  r = await cli(['--state-dir', join(dir.path, 'nowhere'), '--name', name, '--socket-dir', socketDir]);
  assert.equal(r.code, 1);
  assert.match(r.err, /no books/);

  // The restarted plugin finds nothing left to fix, and the periodic timer runs quietly.
  plugin = await startPlugin({ ...opts, extraArgs: ['--reconcile-interval-ms', '200', '--firewall-check-ms', '3600000'] });
  r = await cli(cliArgs);
  assert.match(r.out, /kernel and books agree/, r.out);
  await runOk(['ip', 'link', 'add', 'bb-orphan2', 'group', mark, 'type', 'bridge']);
  const deadline = Date.now() + 5_000;
  while ((await kernelLinks()).has('bb-orphan2')) {
    assert.ok(Date.now() < deadline, 'the periodic reconcile removed the orphan bridge');
    await new Promise((res) => setTimeout(res, 50));
  }
  const stopped = await plugin.stop();
  plugin = null;
  assert.equal(stopped.code, 0);
});
