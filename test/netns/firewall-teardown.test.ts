// A clean stop with no network left removes every rule and chain of ours (both families), so
// that `docker plugin disable` + `docker plugin rm` leave nothing; with a network left, a stop
// keeps everything, the container keeps its traffic while no plugin runs, and a restart on the
// same books carries on. Real plugin (startServer in this process), real iptables and veths; the
// runner is inside a private network namespace (`unshare --net`).
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { pino } from 'pino';
import { startServer, type RunningServer } from '../../src/server.js';
import { readEnvironment } from '../../src/config/environment.js';
import { DEFAULT_TUNING } from '../../src/scheduler/pipelines.js';
import { run, runOk } from '../helpers/proc.js';
import { assertPrivateNetns, linkNames } from './bb-kernel.js';

let dir: string;
let box: ChildProcess | undefined;

before(async () => {
  assertPrivateNetns();
  await runOk(['ip', 'link', 'set', 'lo', 'up']);
  dir = mkdtempSync('/tmp/bbt-teardown-');
});

after(() => {
  box?.kill('SIGKILL');
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function start(stateDir: string): Promise<RunningServer> {
  return startServer(
    {
      name: 'bbteardown',
      stateDir,
      socketDir: join(dir, 'sock'),
      tuning: { ...DEFAULT_TUNING, batchMax: 64 },
      workers: 1,
      maxQueue: 4096,
      firewallCheckMs: 60_000,
      reconcileMs: 0,
      ...readEnvironment({}),
    },
    pino({ level: 'silent' }),
  );
}

async function ok(srv: RunningServer, path: string, body: unknown): Promise<Record<string, unknown>> {
  const r = await srv.app.inject({ method: 'POST', url: `/NetworkDriver.${path}`, payload: JSON.stringify(body) });
  assert.equal(r.statusCode, 200, `${path}: ${r.body}`);
  return JSON.parse(r.body) as Record<string, unknown>;
}

/** Both families' rules without counters and comment lines. */
async function saves(): Promise<string> {
  const out: string[] = [];
  for (const bin of ['iptables-save', 'ip6tables-save']) {
    out.push(...(await runOk([bin])).split('\n').filter((l) => !l.startsWith('#')).map((l) => l.replace(/ \[\d+:\d+\]$/, ' [0:0]')));
  }
  return out.join('\n');
}

/** Lines of ours in either family: our chains, jumps to them, our comments. */
async function oursIn(): Promise<string[]> {
  return (await saves()).split('\n').filter((l) => /BB-|bb:(net|ep)=/.test(l));
}

const NET = `a${'0'.repeat(61)}d41`;
const EP = `e${'0'.repeat(61)}d41`;
const createNet = (srv: RunningServer) => ok(srv, 'CreateNetwork', {
  NetworkID: NET,
  Options: { 'com.docker.network.generic': { 'com.docker.network.bridge.name': 'bbtd41' }, 'com.docker.network.enable_ipv6': true },
  IPv4Data: [{ AddressSpace: '', Pool: '198.18.41.0/24', Gateway: '198.18.41.1/24' }],
  IPv6Data: [{ AddressSpace: '', Pool: 'fd00:41::/64', Gateway: 'fd00:41::1/64' }],
});
const createEp = (srv: RunningServer) => ok(srv, 'CreateEndpoint', {
  NetworkID: NET, EndpointID: EP, Interface: { Address: '198.18.41.2/24', AddressIPv6: 'fd00:41::2/64', MacAddress: '' }, Options: {},
});
const program = (srv: RunningServer) => ok(srv, 'ProgramExternalConnectivity', {
  NetworkID: NET, EndpointID: EP, Options: { 'com.docker.network.portmap': [{ Proto: 6, Port: 80, HostPort: 18041 }] },
});

test('a stop with no network left removes every rule and chain of ours, in both families', async () => {
  const before = await saves();
  const srv = await start(join(dir, 'state-empty'));
  // A network and a published port came and went: the skeleton and the hooks stay until the stop.
  await createNet(srv);
  await createEp(srv);
  await program(srv);
  await ok(srv, 'DeleteEndpoint', { NetworkID: NET, EndpointID: EP });
  await ok(srv, 'DeleteNetwork', { NetworkID: NET });
  const running = await oursIn();
  assert.ok(running.some((l) => l.startsWith('-A FORWARD -j BB-FORWARD')), running.join('\n'));
  assert.ok(running.filter((l) => l.startsWith(':BB-DNAT-')).length >= 2 * 128, 'the DNAT buckets of both families exist while running');

  await srv.stop();
  assert.deepEqual(await oursIn(), [], 'nothing of ours in iptables-save / ip6tables-save after the stop');
  assert.deepEqual((await linkNames()).filter((n) => n !== 'lo'), [], 'no bridge or veth left');
  // Whatever was there before we started is still there (only our lines went).
  const kept = before.split('\n').filter((l) => !/BB-|bb:(net|ep)=/.test(l));
  const now = (await saves()).split('\n');
  for (const l of kept) if (l.startsWith('-A ')) assert.ok(now.includes(l), `rule not ours kept: ${l}`);
});

/** A sleeping process in a namespace of its own: the "container". */
async function containerNs(): Promise<{ pid: number; exec: (argv: string[]) => ReturnType<typeof run> }> {
  box = spawn('unshare', ['--net', 'sleep', '600'], { stdio: 'ignore' });
  const pid = box.pid as number;
  // Wait until unshare has exec'd sleep in its new namespace.
  for (let i = 0; i < 100; i++) {
    const r = await run(['readlink', `/proc/${pid}/ns/net`]);
    const self = await run(['readlink', '/proc/self/ns/net']);
    if (r.stdout !== self.stdout && r.stdout !== '') break;
    await new Promise((res) => setTimeout(res, 20));
  }
  return { pid, exec: (argv) => run(['nsenter', `--net=/proc/${pid}/ns/net`, ...argv], { timeoutMs: 20_000 }) };
}

test('a stop with a network left keeps everything; traffic flows while stopped and after a restart', async () => {
  const state = join(dir, 'state-kept');
  const s1 = await start(state);
  await createNet(s1);
  await createEp(s1);
  const joined = await ok(s1, 'Join', { NetworkID: NET, EndpointID: EP, SandboxKey: '/var/run/docker/netns/x', Options: {} });
  await program(s1);
  const src = (joined.InterfaceName as { SrcName: string }).SrcName;
  const ctr = await containerNs();
  await runOk(['ip', 'link', 'set', 'dev', src, 'netns', String(ctr.pid)]);
  for (const argv of [
    ['ip', 'link', 'set', 'lo', 'up'],
    ['ip', 'addr', 'add', '198.18.41.2/24', 'dev', src],
    ['ip', 'link', 'set', src, 'up'],
    ['ip', 'route', 'add', 'default', 'via', '198.18.41.1'],
  ]) {
    const r = await ctr.exec(argv);
    assert.equal(r.code, 0, `${argv.join(' ')}: ${r.stderr}`);
  }
  const ping = async (what: string): Promise<void> => {
    const r = await ctr.exec(['busybox', 'ping', '-c', '1', '-W', '3', '198.18.41.1']);
    assert.equal(r.code, 0, `${what}: the container reaches its gateway\n${r.stdout}${r.stderr}`);
  };
  await ping('plugin running');
  const links = await linkNames();
  const rules = await saves();
  assert.ok(rules.includes('--dport 18041'), 'the published port is programmed');

  await s1.stop();
  assert.equal(await saves(), rules, 'every rule kept (both families)');
  assert.deepEqual(await linkNames(), links, 'bridge and veth kept');
  await ping('no plugin running');

  const s2 = await start(state);
  assert.equal(await saves(), rules, 'the restarted plugin found its rules as they were');
  await ping('after the restart');
  // The restarted plugin removes what the first one made, and then stops clean.
  await ok(s2, 'RevokeExternalConnectivity', { NetworkID: NET, EndpointID: EP });
  await ok(s2, 'Leave', { NetworkID: NET, EndpointID: EP });
  await ok(s2, 'DeleteEndpoint', { NetworkID: NET, EndpointID: EP });
  await ok(s2, 'DeleteNetwork', { NetworkID: NET });
  await s2.stop();
  assert.deepEqual(await oursIn(), []);
  box?.kill('SIGKILL');
});
