// The unit `batchbridge install-service` writes passes `systemd-analyze verify`, and its ExecStart=
// line, run as systemd would run it (bare environment, capability bounding set and
// no_new_privs of the unit, applied with setpriv), is a working plugin: it programs links and
// firewall rules in this private namespace and stops on SIGTERM with its socket removed.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { randomHex, run, runOk, sleep } from '../helpers/proc.js';
import { assertPrivateNetns, BIN, cleanUpAfter, Client, tail, tempDir } from './crash-kit.js';

/** CapEff / NoNewPrivs of a process, from /proc. */
function privileges(pid: number): { capEff: bigint; nnp: string } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (k: string): string => status.match(new RegExp(`^${k}:\\s*(\\S+)`, 'm'))?.[1] ?? '';
  return { capEff: BigInt(`0x${field('CapEff')}`), nnp: field('NoNewPrivs') };
}

test('install-service: systemd-analyze verify passes and ExecStart= starts a working plugin', { timeout: 90_000 }, async (t) => {
  assertPrivateNetns();
  const dir = await tempDir('bbt-svc-');
  const id = randomHex(4);
  const name = `bbsvc${id}`;
  // Inside the paths the unit accepts (not /tmp: PrivateTmp=); removed after the test.
  const stateDir = `/var/lib/bbt-svc-${id}`;
  const socketDir = `/run/bbt-svc-${id}`;
  let pid = -1;
  cleanUpAfter(t, dir, () => null, async () => {
    if (pid > 0) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
    rmSync(stateDir, { recursive: true, force: true });
    rmSync(socketDir, { recursive: true, force: true });
  });

  // Its own CNI socket: serve's default, /run/batchbridge/cni.sock, belongs to the host.
  const cniSocket = `${socketDir}/cni.sock`;
  await runOk([process.execPath, BIN, 'install-service', '--unit-dir', dir.path, '--name', name, '--state-dir', stateDir, '--socket-dir', socketDir, '--cni-socket', cniSocket]);
  const unitPath = join(dir.path, `${name}.service`);
  const verify = await run(['systemd-analyze', 'verify', unitPath]);
  assert.equal(verify.code, 0, verify.stderr);
  assert.equal(`${verify.stdout}${verify.stderr}`.trim(), '', 'no warnings');

  const unit = readFileSync(unitPath, 'utf8');
  const exec = unit.match(/^ExecStart=(.*)$/m)?.[1]?.split(' ') ?? [];
  assert.deepEqual(exec.slice(-2), ['--cni-socket', cniSocket]);
  const caps = (unit.match(/^CapabilityBoundingSet=(.*)$/m)?.[1] ?? '').split(' ');
  assert.deepEqual(caps, ['CAP_NET_ADMIN', 'CAP_NET_RAW']);
  assert.match(unit, /^NoNewPrivileges=yes$/m);
  // What systemd does before exec: the directories, the bounding set, no_new_privs, a bare env.
  mkdirSync(stateDir, { mode: 0o700 });
  mkdirSync(socketDir, { mode: 0o755 });
  const bounding = `-all,${caps.map((c) => `+${c.slice(4).toLowerCase()}`).join(',')}`;
  const logPath = join(dir.path, 'log');
  const fd = openSync(logPath, 'a');
  const child = spawn('setpriv', [`--bounding-set=${bounding}`, '--inh-caps=-all', '--no-new-privs', ...exec], {
    stdio: ['ignore', fd, fd],
    env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8' },
  });
  closeSync(fd);
  pid = child.pid ?? -1;
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));

  const socketPath = join(socketDir, `${name}.sock`);
  const c = new Client(socketPath, 30_000);
  try {
    const deadline = Date.now() + 30_000;
    while (!existsSync(socketPath)) {
      assert.ok(Date.now() < deadline, `no socket:\n${tail(logPath)}`);
      await sleep(100);
    }
    assert.equal((await c.call('Plugin.Activate', undefined)).status, 200);
    assert.ok(statSync(cniSocket).isSocket(), 'serves CNI on the socket the unit names');
    // setpriv execs the unit's node: this pid is the plugin, with the unit's privileges only.
    assert.deepEqual(privileges(pid), { capEff: (1n << 12n) | (1n << 13n), nnp: '1' });

    const net = `d${'0'.repeat(55)}${id}`;
    const ep = `e${'0'.repeat(55)}${id}`;
    const ok = async (m: string, body: unknown): Promise<void> => {
      const r = await c.call(m, body);
      assert.equal(r.status, 200, `${m}: ${r.text}\n${tail(logPath)}`);
    };
    await ok('CreateNetwork', { NetworkID: net, Options: {}, IPv4Data: [{ AddressSpace: '', Pool: '198.18.77.0/24', Gateway: '198.18.77.1/24' }], IPv6Data: [] });
    await ok('CreateEndpoint', { NetworkID: net, EndpointID: ep, Interface: { Address: '198.18.77.2/24', MacAddress: '' }, Options: {} });
    await ok('ProgramExternalConnectivity', { NetworkID: net, EndpointID: ep, Options: { 'com.docker.network.portmap': [{ Proto: 6, Port: 80, HostPort: 18081 }] } });
    assert.match(await runOk(['iptables-save', '-t', 'nat']), /--dport 18081 .*DNAT --to-destination 198\.18\.77\.2:80/);
    assert.equal(readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim(), '1');
    await ok('RevokeExternalConnectivity', { NetworkID: net, EndpointID: ep });
    await ok('DeleteEndpoint', { NetworkID: net, EndpointID: ep });
    await ok('DeleteNetwork', { NetworkID: net });
  } finally {
    await c.close();
  }
  process.kill(pid, 'SIGTERM');
  assert.equal(await exited, 0, tail(logPath));
  pid = -1;
  assert.equal(existsSync(socketPath), false, 'socket removed');
  assert.equal(existsSync(cniSocket), false, 'CNI socket removed');
});
