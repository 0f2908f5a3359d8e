// Issue 10 A: dockerd killed with SIGKILL and started again WITHOUT live-restore, as after a
// crash on a host. What happens then (seen with dockerd 20.10 here): its containerd dies with it
// (a managed containerd gets SIGKILL when dockerd goes), the shims and containers keep running;
// the new dockerd starts a new containerd that takes the shims over, stops every running
// container (SIGTERM, SIGKILL after the stop timeout), removes their "stale sandboxes" by
// force — which deletes the network namespaces, and with them the veths — and forgets their
// endpoints WITHOUT calling the plugin (its driver is not loaded yet). Only then does it start
// the --restart always containers, which is when it activates the plugin (Plugin.Activate).
// The plugin must settle the endpoints whose veth vanished at that point, or the restarted
// container cannot get its published port back ("port is already allocated", it then stays
// Exited for good), and a new container that IPAM gives a dead endpoint's address receives that
// endpoint's published-port traffic.
//
// One stack for the whole file; the steps depend on each other.
import assert from 'node:assert/strict';
import { dirname } from 'node:path';
import { test } from 'node:test';
import { createExternalPeer, iptablesSave, type Netns } from '../helpers/netns.js';
import { PLUGIN_BIN } from '../helpers/plugin.js';
import { eventually, run, sleep } from '../helpers/proc.js';
import { containerIp, kernelLeftovers, startStack, type Stack } from '../helpers/stack.js';

const HOST = '198.19.255.1';
/** How long a restarted dockerd may take to bring a restart-always container back with its port. */
const CONVERGE_MS = 20_000;

/** busybox httpd whose page names the container, so a test sees who answered. */
function httpd(name: string): string[] {
  return ['sh', '-c', `mkdir -p /w && echo i-am-${name} > /w/index.html && exec httpd -f -p 80 -h /w`];
}

/** The page behind a published port, seen from the external peer ('' when nothing answers). */
async function page(peer: Netns, port: number): Promise<string> {
  const r = await peer.exec(['curl', '-s', '--max-time', '2', `http://${HOST}:${port}/`], { timeoutMs: 10_000 });
  return r.code === 0 ? r.stdout.trim() : '';
}

async function status(s: Stack, ctr: string): Promise<string> {
  return (await s.dockerOk(['inspect', '-f', '{{.State.Status}}', ctr])).trim();
}

async function bindings(s: Stack): Promise<string[]> {
  const r = await run(['node', PLUGIN_BIN, 'ports', '--name', s.pluginName, '--socket-dir', dirname(s.plugin.socketPath)]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.split('\n').filter((l) => l !== '');
}

/** The restart-always container is running again and its port serves it, within CONVERGE_MS. */
async function webComesBack(s: Stack, peer: Netns, since: number): Promise<number> {
  try {
    await eventually(async () => {
      assert.equal(await status(s, 'web1'), 'running');
      assert.equal(await page(peer, 18081), 'i-am-web1');
    }, { timeoutMs: CONVERGE_MS, intervalMs: 300 });
  } catch (e) {
    const ps = await s.docker(['ps', '-a', '--format', '{{.Names}} {{.Status}}']);
    const why = s.dockerd.logSince(since).split('\n').filter((l) => /level=(error|warning)/.test(l) && !/grpc|blkio|devmapper|containerd config/.test(l)).slice(-8);
    assert.fail(`web1 did not come back serving :18081 within ${CONVERGE_MS} ms: ${String(e)}\n`
      + `docker ps -a:\n${ps.stdout}\ndockerd after the restart:\n${why.join('\n')}\n${s.explain()}`);
  }
  return Date.now();
}

test('dockerd kill -9 without live-restore: the restart-always container gets its port back; a dead endpoint\'s traffic reaches nobody', { timeout: 150_000 }, async (t) => {
  const s = await startStack(t);
  const peer = s.scope.add(await createExternalPeer(s.ns));
  const d = s.pluginName;
  const ok = (args: string[]) => s.dockerOk(args);
  // A short stop timeout: dockerd SIGTERMs the old containers at its restart and httpd as PID 1
  // ignores SIGTERM, so dockerd would otherwise wait its default 10 s.
  const run1 = (name: string, extra: string[]) => ok(['run', '-d', '--name', name, '--network', 'n1', '--stop-timeout', '1', ...extra, 'bb:latest', ...httpd(name)]);

  await ok(['network', 'create', '-d', d, '--subnet', '198.18.70.0/24', 'n1']);
  await run1('web1', ['--restart', 'always', '-p', '18081:80']);
  await run1('victim', ['-p', '18082:80']);
  const victimIp = await containerIp(s, 'victim', 'n1');
  await eventually(async () => {
    assert.equal(await page(peer.peer, 18081), 'i-am-web1');
    assert.equal(await page(peer.peer, 18082), 'i-am-victim');
  });

  await t.test('kill -9 dockerd, start it again: web1 is back on :18081 for the external peer', async () => {
    await s.dockerd.crash();
    const since = s.dockerd.logSize();
    const t0 = Date.now();
    await s.restartDockerd();
    const back = await webComesBack(s, peer.peer, since);
    t.diagnostic(`dockerd restart to web1 serving again: ${back - t0} ms`);
    // No restart policy: dockerd stopped it and forgot its endpoint without telling the plugin.
    assert.equal(await status(s, 'victim'), 'exited');
  });

  await t.test('a new container on the dead endpoint\'s address gets none of its published-port traffic', async () => {
    // IPAM freed the dead endpoint's address with its sandbox; --ip hands it to a new container.
    await run1('newc', ['--ip', victimIp]);
    assert.equal(await containerIp(s, 'newc', 'n1'), victimIp);
    for (let i = 0; i < 3; i++) {
      const got = await page(peer.peer, 18082);
      assert.notEqual(got, 'i-am-newc', `:18082 (published by the dead victim endpoint) reached newc, which asked for no port\n${s.explain()}`);
      assert.equal(got, '', `:18082 answered ${JSON.stringify(got)} though its container is stopped`);
    }
    assert.equal(await page(peer.peer, 18081), 'i-am-web1');
    const held = (await bindings(s)).filter((l) => l.includes(`-> ${victimIp}:`));
    assert.deepEqual(held, [], 'no binding points at the reused address');
    // The dead endpoint's port is free again: the victim gets it back when started.
    await ok(['start', 'victim']);
    await eventually(async () => assert.equal(await page(peer.peer, 18082), 'i-am-victim'));
    await ok(['rm', '-f', 'newc']);
  });

  await t.test('kill -9 dockerd and the plugin; the plugin comes back only after dockerd: web1 serves again', async () => {
    const victimNow = await containerIp(s, 'victim', 'n1');
    await s.dockerd.crash();
    assert.ok(s.plugin.kill('SIGKILL'));
    await s.plugin.waitExit(10_000);
    const since = s.dockerd.logSize();
    const t0 = Date.now();
    // dockerd looks the plugin up while it restores web1 and retries for ~15 s; the plugin
    // returns while it waits (so readiness of the two is awaited together).
    await Promise.all([s.restartDockerd(), sleep(1500).then(() => s.restartPlugin())]);
    const back = await webComesBack(s, peer.peer, since);
    t.diagnostic(`dockerd + plugin restart to web1 serving again: ${back - t0} ms`);
    assert.equal(await status(s, 'victim'), 'exited');
    await run1('newc2', ['--ip', victimNow]);
    assert.notEqual(await page(peer.peer, 18082), 'i-am-newc2', `:18082 reached newc2, which asked for no port\n${s.explain()}`);
    assert.equal(await page(peer.peer, 18082), '');
  });

  await t.test('after removal nothing of ours is left', async () => {
    await ok(['rm', '-f', 'web1', 'victim', 'newc2']);
    await ok(['network', 'rm', 'n1']);
    const left = await kernelLeftovers(s.ns, [], [peer.hostIf]);
    assert.deepEqual(left.links, [], s.explain());
    const rules = (await iptablesSave(s.ns)).filter((l) => l.startsWith('-A ') && (l.includes('bb:') || l.includes('198.18.70.')));
    assert.deepEqual(rules, [], s.explain());
  });
});
