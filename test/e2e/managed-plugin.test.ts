// End-to-end: batchbridge as a Docker managed plugin. `batchbridge package-plugin` builds the
// folder once; a private dockerd (20.10) in a throwaway namespace installs it with `docker plugin
// create` + `enable`, with its books in a temp dir. Real containers, real traffic, an external
// peer namespace; then the plugin is disabled and enabled under running containers, dockerd is
// restarted with a --restart=always container, and finally the plugin is disabled and removed,
// which must leave no veth, bridge or rule of ours.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { testScope } from '../helpers/cleanup.js';
import { buildBusyboxImage, startDockerd, type Dockerd } from '../helpers/dockerd.js';
import { buildPluginFolder, installManagedPlugin, ourFirewallLines } from '../helpers/managed-plugin.js';
import { createExternalPeer, createNetns, ipLinks, type Netns } from '../helpers/netns.js';
import { PLUGIN_BIN, randomPluginName } from '../helpers/plugin.js';
import { eventually, run, signalPid, sleep } from '../helpers/proc.js';
import { vethLinks } from '../helpers/stack.js';

const HOST = '198.19.255.1';
const PEER = '198.19.255.2';
const HTTPD = ['httpd', '-f', '-p', '80', '-h', '/www'];
// PID 1 in these containers ignores SIGTERM: without this, dockerd's restart waits 10 s for each.
const RUN = ['run', '-d', '--stop-timeout', '1'];

function curl(ns: Netns, url: string): Promise<{ code: number; stdout: string }> {
  return ns.exec(['curl', '-s', '-g', '--max-time', '3', url], { timeoutMs: 15_000 });
}

async function ip(d: Dockerd, ctr: string, net: string): Promise<string> {
  return (await d.dockerOk(['inspect', '-f', `{{(index .NetworkSettings.Networks "${net}").IPAddress}}`, ctr])).trim();
}

async function pings(d: Dockerd, ctr: string, target: string): Promise<void> {
  const r = await d.docker(['exec', ctr, 'ping', '-c', '1', '-W', '3', target]);
  assert.equal(r.code, 0, `${ctr} cannot ping ${target}: ${r.stdout}${r.stderr}`);
}

/** Plugin output that dockerd logged (it logs a plugin's stdout at level error). */
function pluginLog(d: Dockerd, id: string): string {
  return d.logTail(2000).split('\n').filter((l) => l.includes(`plugin=${id}`)).slice(-30).join('\n');
}

test('managed plugin: create, enable, traffic, disable/enable under load, dockerd restart, disable + rm leaves nothing', { timeout: 240_000 }, async (t) => {
  const scope = testScope(t);
  const name = randomPluginName();
  const ns = scope.add(await createNetns());
  const [folder, first] = await Promise.all([buildPluginFolder(scope, name), startDockerd(ns)]);
  let d = scope.add(first);
  await buildBusyboxImage(d);
  const peer = scope.add(await createExternalPeer(ns));
  t.diagnostic(`package-plugin ${folder.ms} ms`);

  await t.test('the folder: config.json and a rootfs whose tools run', async () => {
    const config = JSON.parse(readFileSync(join(folder.dir, 'config.json'), 'utf8')) as { interface: { socket: string } };
    assert.equal(config.interface.socket, `${name}.sock`);
    const rootfs = join(folder.dir, 'rootfs');
    const inRoot = (argv: string[]) => run(['chroot', rootfs, ...argv], { timeoutMs: 30_000 });
    assert.match((await inRoot(['iptables-save', '--version'])).stdout, /nf_tables/);
    assert.match((await inRoot(['ip6tables-restore', '--version'])).stdout, /nf_tables/);
    assert.match((await inRoot(['/usr/sbin/ip', '-V'])).stdout, /iproute2/);
    assert.equal((await inRoot(['conntrack', '--version'])).code, 0);
    assert.equal((await inRoot(['/bin/sh', '-c', 'true'])).code, 0, 'busybox shell');
    const help = await inRoot(['/usr/bin/node', '/opt/batchbridge/bin/batchbridge.js', '--help']);
    assert.match(help.stdout, /batchbridge serve/, help.stderr);
  });

  const plugin = await installManagedPlugin(scope, d, folder);
  const drv = plugin.ref;
  t.diagnostic(`docker plugin create ${plugin.createMs} ms, enable ${plugin.enableMs} ms`);
  const explain = () => `--- plugin output in dockerd's log ---\n${pluginLog(d, plugin.id)}`;

  await t.test('enabled: its socket is under /run/docker/plugins/<id>/, CAP_NET_ADMIN only', async () => {
    assert.equal((await d.dockerOk(['plugin', 'inspect', '-f', '{{.Enabled}}', drv])).trim(), 'true');
    assert.ok(existsSync(plugin.socketPath), `${plugin.socketPath}\n${explain()}`);
    assert.equal((await d.dockerOk(['plugin', 'inspect', '-f', '{{json .Config.Linux.Capabilities}}', drv])).trim(), '["CAP_NET_ADMIN"]');
    assert.ok(existsSync(join(plugin.stateDir, 'batchbridge.db')), 'the books are in the state mount source');
  });

  await t.test('a network with options; containers reach each other by name; a published port answers the peer', async () => {
    await d.dockerOk(['network', 'create', '-d', drv, '--subnet', '198.18.60.0/24', '-o', 'com.docker.network.driver.mtu=1400',
      '-o', 'com.docker.network.bridge.name=bbmp0', 'n1']);
    await d.dockerOk([...RUN, '--name', 'web', '--network', 'n1', '-p', '18090:80', 'bb:latest', ...HTTPD]);
    await d.dockerOk([...RUN, '--name', 'c1', '--network', 'n1', 'bb:latest', 'sleep', '600']);
    assert.match(await ip(d, 'web', 'n1'), /^198\.18\.60\.\d+$/);
    await pings(d, 'c1', 'web');
    assert.match(await d.dockerOk(['exec', 'c1', 'ip', 'link', 'show', 'eth0']), /mtu 1400\b/);
    assert.equal((await ipLinks(ns, ['bbmp0']))[0]?.mtu, 1400);
    await eventually(async () => assert.match((await curl(peer.peer, `http://${HOST}:18090/`)).stdout, /hello from batchbridge/));
    await pings(d, 'c1', PEER);
  });

  await t.test('the CLI finds the managed plugin: ports --name NAME:latest, reconcile', async () => {
    const ports = await run([process.execPath, PLUGIN_BIN, 'ports', '--name', drv]);
    assert.equal(ports.code, 0, ports.stderr);
    assert.equal(ports.stdout.trim(), `tcp 0.0.0.0:18090 -> ${await ip(d, 'web', 'n1')}:80`);
    const rec = await run([process.execPath, PLUGIN_BIN, 'reconcile', '--name', name, '--dry-run']);
    assert.equal(rec.code, 0, rec.stderr);
    assert.ok(rec.stdout.includes(`running plugin at ${plugin.socketPath}`), rec.stdout);
    assert.match(rec.stdout, /1 network\(s\), 2 endpoint\(s\)/);
  });

  await t.test('disable -f / enable with containers running: traffic keeps flowing; new containers join; old ones go cleanly', async () => {
    const refused = await d.docker(['plugin', 'disable', drv]);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /in use/);
    // 8 s of pings across the disable and the enable.
    const flow = d.docker(['exec', 'c1', 'ping', '-c', '40', '-i', '0.2', '-W', '1', 'web']);
    const t0 = Date.now();
    await d.dockerOk(['plugin', 'disable', '-f', drv]);
    const disableMs = Date.now() - t0;
    assert.ok(!existsSync(plugin.socketPath), 'the plugin removed its socket');
    await pings(d, 'c1', 'web');
    assert.match((await curl(peer.peer, `http://${HOST}:18090/`)).stdout, /hello/, 'published port while disabled');
    // The log level is a plugin setting: at warn, the start-up info lines are gone.
    const listening = (text: string) => text.split('\n').filter((l) => l.includes(`plugin=${plugin.id}`) && l.includes('listening'));
    assert.ok(listening(d.logSince(0)).length > 0, 'at the default level (info) the plugin logs that it listens');
    await d.dockerOk(['plugin', 'set', drv, 'BB_LOG_LEVEL=warn']);
    const enableAt = d.logSize();
    const t1 = Date.now();
    await d.dockerOk(['plugin', 'enable', drv]);
    assert.deepEqual(listening(d.logSince(enableAt)), [], 'BB_LOG_LEVEL=warn reached serve --log-level');
    t.diagnostic(`disable -f ${disableMs} ms, enable ${Date.now() - t1} ms`);
    const f = await flow;
    assert.match(f.stdout, / 0% packet loss/, `pings across disable/enable: ${f.stdout}`);

    await d.dockerOk([...RUN, '--name', 'c2', '--network', 'n1', 'bb:latest', 'sleep', '600']);
    await pings(d, 'c2', 'web');
    await pings(d, 'c2', PEER);
    assert.equal((await vethLinks(ns, [peer.hostIf])).length, 3, 'web, c1, c2');
    const logAt = d.logSize();
    const c1Ip = await ip(d, 'c1', 'n1');
    await d.dockerOk(['rm', '-f', 'c1']);
    assert.equal((await vethLinks(ns, [peer.hostIf])).length, 2, `c1's veth is gone\n${explain()}`);
    const failed = d.logSince(logAt).split('\n').filter((l) => /level=(warning|error)/.test(l) && /NetworkDriver\.|remote: /.test(l));
    assert.deepEqual(failed, [], 'dockerd logged no failed plugin call while removing c1');
    assert.ok(!(await ns.execOk(['iptables-save'])).includes(c1Ip), 'no rule mentions c1');
    assert.match((await curl(peer.peer, `http://${HOST}:18090/`)).stdout, /hello/, 'published port after enable');
  });

  await t.test('dockerd restarted with a --restart=always container: it comes back with working networking', async () => {
    await d.dockerOk([...RUN, '--name', 'keep', '--restart=always', '--network', 'n1', '-p', '18091:80', 'bb:latest', ...HTTPD]);
    await eventually(async () => assert.match((await curl(peer.peer, `http://${HOST}:18091/`)).stdout, /hello/));
    // A clean restart, as `systemctl restart docker` does it: SIGTERM, then the same dirs.
    const t0 = Date.now();
    signalPid(d.pid, 'SIGTERM');
    for (let i = 0; i < 300 && !d.exited; i++) await sleep(100);
    assert.ok(d.exited, 'dockerd stopped within 30 s');
    d = scope.add(await startDockerd(ns, { restartOf: d }));
    assert.equal((await d.dockerOk(['plugin', 'inspect', '-f', '{{.Enabled}}', drv])).trim(), 'true');
    await eventually(async () => assert.equal((await d.dockerOk(['inspect', '-f', '{{.State.Running}}', 'keep'])).trim(), 'true'), { timeoutMs: 30_000 });
    await eventually(async () => assert.match((await curl(peer.peer, `http://${HOST}:18091/`)).stdout, /hello/), { timeoutMs: 20_000 });
    t.diagnostic(`dockerd restart until keep answers again: ${Date.now() - t0} ms`);
    await pings(d, 'keep', PEER);
    await d.dockerOk([...RUN, '--name', 'c3', '--network', 'n1', 'bb:latest', 'sleep', '600']);
    await pings(d, 'c3', 'keep');
    const ports = await run([process.execPath, PLUGIN_BIN, 'ports', '--name', drv]);
    assert.equal(ports.stdout.trim(), `tcp 0.0.0.0:18091 -> ${await ip(d, 'keep', 'n1')}:80`, `${ports.stdout}${ports.stderr}\n${explain()}`);
  });

  await t.test('disable + rm after the networks are gone leaves no veth, bridge or rule of ours', async () => {
    const all = (await d.dockerOk(['ps', '-aq'])).split('\n').filter((l) => l !== '');
    await d.dockerOk(['rm', '-f', ...all]);
    await d.dockerOk(['network', 'rm', 'n1']);
    assert.ok((await ourFirewallLines(ns)).length > 0, 'the skeleton is there while the plugin runs');
    await d.dockerOk(['plugin', 'disable', drv]);
    await d.dockerOk(['plugin', 'rm', drv]);
    assert.deepEqual(await ourFirewallLines(ns), [], explain());
    const links = (await ipLinks(ns)).filter((l) => l.ifname !== peer.hostIf && (l.linkinfo?.info_kind === 'bridge' || l.linkinfo?.info_kind === 'veth'));
    assert.deepEqual(links.map((l) => l.ifname), []);
    assert.ok(!existsSync(join('/run/docker/plugins', plugin.id)), 'dockerd removed the socket folder');
  });
});
