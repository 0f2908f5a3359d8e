// Kernel tests of the firewall through a real plugin (startServer in this process, requests by
// app.inject). The runner is already inside a private network namespace (`unshare --net`).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { pino } from 'pino';
import { startServer, type RunningServer } from '../../src/server.js';
import { readEnvironment } from '../../src/config/environment.js';
import { DEFAULT_TUNING } from '../../src/scheduler/pipelines.js';
import { eventually, run, runOk } from '../helpers/proc.js';

let srv: RunningServer;
let dir: string;

before(async () => {
  await runOk(['ip', 'link', 'set', 'lo', 'up']);
  dir = mkdtempSync(join(tmpdir(), 'bbt-fw-'));
  srv = await startServer(
    {
      name: 'bbfwtest',
      stateDir: join(dir, 'state'),
      socketDir: join(dir, 'sock'),
      tuning: { ...DEFAULT_TUNING, batchMax: 64 },
      workers: 2,
      maxQueue: 4096,
      firewallCheckMs: 200,
      ...readEnvironment({}),
    },
    pino({ level: 'silent' }),
  );
});

after(async () => {
  await srv?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function call(path: string, body: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  // The plugin shares this process's event loop here, so its load shedding (503 "overloaded")
  // can trigger on the test's own work: retry those, as a client of an overloaded plugin would.
  for (let attempt = 0; ; attempt++) {
    const r = await srv.app.inject({ method: 'POST', url: `/NetworkDriver.${path}`, payload: JSON.stringify(body) });
    if (r.statusCode === 503 && attempt < 50) {
      await new Promise((res) => setTimeout(res, 100));
      continue;
    }
    return { status: r.statusCode, body: JSON.parse(r.body) as Record<string, unknown> };
  }
}

async function ok(path: string, body: unknown): Promise<Record<string, unknown>> {
  const r = await call(path, body);
  assert.equal(r.status, 200, `${path}: ${JSON.stringify(r.body)}`);
  return r.body;
}

/** iptables-save without counters and comment lines: what we compare to a baseline. */
async function save(family: 4 | 6 = 4): Promise<string> {
  const out = await runOk([family === 4 ? 'iptables-save' : 'ip6tables-save']);
  return out
    .split('\n')
    .filter((l) => !l.startsWith('#'))
    .map((l) => l.replace(/ \[\d+:\d+\]$/, ' [0:0]'))
    .join('\n');
}

const hex = (n: number, w = 64): string => n.toString(16).padStart(w, '0');
const netId = (n: number): string => `a${hex(n, 63)}`;
const epId = (n: number): string => `e${hex(n, 63)}`;

async function createNet(n: number, extra: { generic?: Record<string, unknown>; ipv6?: boolean; internal?: boolean } = {}): Promise<string> {
  const id = netId(n);
  const options: Record<string, unknown> = { 'com.docker.network.generic': { 'com.docker.network.bridge.name': `bbt${n}`, ...(extra.generic ?? {}) } };
  if (extra.ipv6) options['com.docker.network.enable_ipv6'] = true;
  if (extra.internal) options['com.docker.network.internal'] = true;
  await ok('CreateNetwork', {
    NetworkID: id,
    Options: options,
    IPv4Data: [{ AddressSpace: '', Pool: `198.18.${n}.0/24`, Gateway: `198.18.${n}.1/24` }],
    IPv6Data: extra.ipv6 ? [{ AddressSpace: '', Pool: `fd00:${n}::/64`, Gateway: `fd00:${n}::1/64` }] : [],
  });
  return id;
}

async function createEp(n: number, net: number, i: number, ipv6 = false): Promise<string> {
  const id = epId(n);
  await ok('CreateEndpoint', {
    NetworkID: netId(net),
    EndpointID: id,
    Interface: { Address: `198.18.${net}.${i}/24`, ...(ipv6 ? { AddressIPv6: `fd00:${net}::${i.toString(16)}/64` } : {}), MacAddress: '' },
    Options: {},
  });
  return id;
}

const portmap = (list: Array<Record<string, unknown>>) => ({ 'com.docker.network.portmap': list });

test('program/revoke: exact rules, idempotent, back to baseline', async () => {
  const base4 = await save(4);
  const base6 = await save(6);
  await createNet(20, { ipv6: true });
  const ep = await createEp(1, 20, 2, true);
  const netRules = await save(4);
  const prog = { NetworkID: netId(20), EndpointID: ep, Options: portmap([{ Proto: 6, Port: 80, HostPort: 18080 }, { Proto: 17, Port: 53, HostIP: '127.0.0.1', HostPort: 5353 }]) };
  await ok('ProgramExternalConnectivity', prog);
  const s4 = await save(4);
  const s6 = await save(6);
  const E = '-m comment --comment "bb:ep=e00000000000"';
  assert.ok(s4.includes(`-A BB-DNAT-35 -p tcp -m tcp --dport 18080 ${E} -j DNAT --to-destination 198.18.20.2:80`), s4);
  assert.ok(s4.includes(`-A BB-DNAT-10 -d 127.0.0.1/32 -p udp -m udp --dport 5353 ${E} -j DNAT --to-destination 198.18.20.2:53`), s4);
  assert.ok(s6.includes(`-A BB-DNAT-35 -p tcp -m tcp --dport 18080 ${E} -j DNAT --to-destination [fd00:20::2]:80`), s6);
  assert.equal(s4.split('\n').filter((l) => l.includes('bb:ep=')).length, 2);
  // The plugin holds the ports (like Docker without its userland proxy).
  const ss = await runOk(['ss', '-Htlnu']);
  assert.match(ss, /0\.0\.0\.0:18080/);
  assert.match(ss, /\[::\]:18080/);
  assert.match(ss, /127\.0\.0\.1:5353/);
  const bindings = (await srv.app.inject({ method: 'POST', url: '/BatchBridge.Ports', payload: '{}' })).json<{ Bindings: unknown[] }>();
  assert.equal(bindings.Bindings.length, 3);

  await ok('ProgramExternalConnectivity', prog); // twice: same rules, no duplicates
  assert.equal(await save(4), s4);
  assert.equal(await save(6), s6);

  await ok('RevokeExternalConnectivity', { NetworkID: netId(20), EndpointID: ep });
  assert.equal(await save(4), netRules);
  await ok('RevokeExternalConnectivity', { NetworkID: netId(20), EndpointID: ep }); // twice
  const other = await createEp(2, 20, 3);
  await ok('RevokeExternalConnectivity', { NetworkID: netId(20), EndpointID: other }); // never programmed
  assert.doesNotMatch(await runOk(['ss', '-Htlnu']), /:18080|:5353/, 'ports released');
  // Program → delete the endpoint without a revoke: DeleteEndpoint removes the rules too.
  await ok('ProgramExternalConnectivity', { NetworkID: netId(20), EndpointID: other, Options: portmap([{ Proto: 6, Port: 80 }]) });
  assert.equal((await save(4)).split('\n').filter((l) => l.includes('bb:ep=')).length, 1);
  await ok('DeleteEndpoint', { NetworkID: netId(20), EndpointID: other });
  await ok('DeleteEndpoint', { NetworkID: netId(20), EndpointID: ep });
  await ok('DeleteNetwork', { NetworkID: netId(20) });
  assert.equal(await save(4), base4);
  assert.equal(await save(6), base6);
});

test('N endpoints come and go in batches: the ruleset returns exactly to its baseline', async () => {
  const base4 = await save(4);
  const base6 = await save(6);
  await createNet(21, { ipv6: true, generic: { 'com.docker.network.bridge.enable_icc': 'false' } });
  await createNet(22, { internal: true });
  const N = 60;
  const eps = await Promise.all(Array.from({ length: N }, (_, i) => createEp(100 + i, 21, 10 + i, i % 2 === 0)));
  await Promise.all(
    eps.map((ep, i) =>
      ok('ProgramExternalConnectivity', {
        NetworkID: netId(21),
        EndpointID: ep,
        Options: portmap([{ Proto: 6, Port: 80, HostPort: 20000 + i }, { Proto: 17, Port: 53 }, ...(i === 0 ? [{ Proto: 132, Port: 9, HostPort: 9999 }] : [])]),
      }),
    ),
  );
  const s4 = await save(4);
  assert.equal(s4.split('\n').filter((l) => l.includes('bb:ep=') && l.includes('-j DNAT')).length, 2 * N + 1);
  assert.ok(s4.includes('-j CHECKSUM --checksum-fill'), 'sctp checksum rule');
  assert.equal((await save(6)).split('\n').filter((l) => l.includes('bb:ep=')).length, 2 * N + 2, 'IPv6 copies (tcp, udp, sctp + its checksum rule): every endpoint of an IPv6 network has an IPv6 address');
  // half revoked, the rest deleted with their network
  await Promise.all(eps.slice(0, N / 2).map((ep) => ok('RevokeExternalConnectivity', { NetworkID: netId(21), EndpointID: ep })));
  await Promise.all(eps.slice(0, N / 2).map((ep) => ok('DeleteEndpoint', { NetworkID: netId(21), EndpointID: ep })));
  await ok('DeleteNetwork', { NetworkID: netId(21) });
  await ok('DeleteNetwork', { NetworkID: netId(22) });
  assert.equal(await save(4), base4);
  assert.equal(await save(6), base6);
});

test('an impossible mapping fails only its own request, and leaves nothing', async () => {
  await createNet(23);
  const eps = await Promise.all([1, 2, 3, 4, 5].map((i) => createEp(200 + i, 23, 10 + i)));
  const squatter: Server = createServer();
  await new Promise<void>((r) => squatter.listen(31001, '0.0.0.0', r));
  try {
    const reqs = [
      [{ Proto: 6, Port: 80, HostPort: 31000 }],
      [{ Proto: 6, Port: 80, HostPort: 31001 }], // taken by a program on the host
      [{ Proto: 6, Port: 80, HostPort: 31002 }, { Proto: 6, Port: 81, HostIP: '198.19.9.9', HostPort: 31003 }], // address not on this host
      [{ Proto: 6, Port: 80, HostPort: 31004 }],
      [{ Proto: 6, Port: 80, HostPort: 31000 }], // taken by endpoint 1 (they race; one wins)
    ];
    const res = await Promise.all(eps.map((ep, i) => call('ProgramExternalConnectivity', { NetworkID: netId(23), EndpointID: ep, Options: portmap(reqs[i] ?? []) })));
    assert.equal(res[1]?.status !== 200 && /Bind for 0\.0\.0\.0:31001 failed/.test(String(res[1]?.body.Err)), true, JSON.stringify(res[1]));
    assert.match(String(res[2]?.body.Err), /198\.19\.9\.9/);
    assert.equal(res[3]?.status, 200);
    const clash = [res[0], res[4]];
    assert.equal(clash.filter((r) => r?.status === 200).length, 1);
    assert.match(String(clash.find((r) => r?.status !== 200)?.body.Err), /Bind for 0\.0\.0\.0:31000 failed: port is already allocated/);
    const s4 = await save(4);
    const dnat = s4.split('\n').filter((l) => l.includes('-j DNAT') && l.includes('bb:ep='));
    assert.deepEqual(dnat.map((l) => /--dport (\d+)/.exec(l)?.[1]).sort(), ['31000', '31004']);
    // nothing half-installed: 31002 was allocated for endpoint 3 before its second binding failed
    assert.doesNotMatch(await runOk(['ss', '-Htln']), /:31002 /);
  } finally {
    squatter.close();
  }
  await ok('DeleteNetwork', { NetworkID: netId(23) });
});

test('ephemeral ports and ranges (Docker semantics)', async () => {
  await createNet(24);
  const eps = await Promise.all([1, 2, 3].map((i) => createEp(300 + i, 24, 10 + i)));
  const p = async (ep: string, pm: Array<Record<string, unknown>>): Promise<number[]> => {
    await ok('ProgramExternalConnectivity', { NetworkID: netId(24), EndpointID: ep, Options: portmap(pm) });
    const b = (await srv.app.inject({ method: 'POST', url: '/BatchBridge.Ports', payload: '{}' })).json<{ Bindings: Array<{ endpointId: string; mapping: { hostPort: number } }> }>();
    return b.Bindings.filter((x) => x.endpointId === ep).map((x) => x.mapping.hostPort);
  };
  const [lo, hi] = (await runOk(['cat', '/proc/sys/net/ipv4/ip_local_port_range'])).trim().split(/\s+/).map(Number) as [number, number];
  const [e1] = await p(eps[0] as string, [{ Proto: 6, Port: 80 }]);
  assert.ok(e1 !== undefined && e1 >= lo && e1 <= hi, `ephemeral ${e1} in ${lo}-${hi}`);
  assert.deepEqual(await p(eps[1] as string, [{ Proto: 6, Port: 80, HostPort: 32000, HostPortEnd: 32001 }, { Proto: 6, Port: 81, HostPort: 32000, HostPortEnd: 32001 }]), [32000, 32001]);
  const r = await call('ProgramExternalConnectivity', { NetworkID: netId(24), EndpointID: eps[2], Options: portmap([{ Proto: 6, Port: 80, HostPort: 32000, HostPortEnd: 32001 }]) });
  assert.match(String(r.body.Err), /all ports are allocated/);
  await ok('DeleteNetwork', { NetworkID: netId(24) });
});

test('watchdog: after iptables -F and -t nat -F every rule comes back', async () => {
  await createNet(25, { ipv6: true });
  await createNet(26, { internal: true });
  const ep = await createEp(400, 25, 2, true);
  await ok('ProgramExternalConnectivity', { NetworkID: netId(25), EndpointID: ep, Options: portmap([{ Proto: 6, Port: 80, HostPort: 18081 }, { Proto: 132, Port: 9, HostPort: 99 }]) });
  const want4 = await save(4);
  const want6 = await save(6);
  await runOk(['iptables', '-F']);
  await runOk(['iptables', '-t', 'nat', '-F']);
  await runOk(['ip6tables', '-t', 'nat', '-F']);
  await eventually(async () => assert.equal(await save(4), want4), { timeoutMs: 5000 });
  await eventually(async () => assert.equal(await save(6), want6), { timeoutMs: 5000 });
  // a single chain of ours flushed is noticed too
  await runOk(['iptables', '-t', 'nat', '-F', 'BB-DNAT']);
  await eventually(async () => assert.equal(await save(4), want4), { timeoutMs: 5000 });
  await runOk(['iptables', '-t', 'mangle', '-F']);
  await eventually(async () => assert.equal(await save(4), want4), { timeoutMs: 5000 });
  // chains deleted outright: in one transaction (iptables -F then -X would race the watchdog,
  // which may restore a jump in between and make -X fail with "resource busy")
  await runOk(['iptables-restore'], { input: '*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n' });
  await eventually(async () => assert.equal(await save(4), want4), { timeoutMs: 5000 });
  await ok('DeleteNetwork', { NetworkID: netId(25) });
  await ok('DeleteNetwork', { NetworkID: netId(26) });
  assert.equal((await run(['iptables', '-t', 'nat', '-C', 'PREROUTING', '-m', 'addrtype', '--dst-type', 'LOCAL', '-j', 'BB-DNAT'])).code, 0);
});
