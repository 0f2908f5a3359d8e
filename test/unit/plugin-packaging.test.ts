// The managed plugin's pieces without Docker: the config it declares, ldd and lockfile parsing,
// the CLI's socket lookup (NAME:TAG, <socket-dir>/<id>/<name>.sock), the firewall teardown plan,
// and package-plugin's refusals (which must change nothing).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { baseChains, renderRestorePayload } from '../../src/batching/plan-firewall.js';
import { parseLdd, productionPackages } from '../../src/packaging/inputs.js';
import { pluginConfig, PLUGIN_PATHS } from '../../src/packaging/plugin-config.js';
import { resolvePluginSocket, socketBaseName } from '../../src/plugin-socket.js';
import { planTeardown } from '../../src/scheduler/firewall-teardown.js';

const BIN = fileURLToPath(new URL('../../../bin/batchbridge.js', import.meta.url));

test('config.json: network driver on host networking, CAP_NET_ADMIN only, node run directly', () => {
  const c = pluginConfig({ name: 'bbx', nodePath: '/usr/bin/node' });
  assert.deepEqual(c.interface, { types: ['docker.networkdriver/1.0'], socket: 'bbx.sock' });
  assert.deepEqual(c.network, { type: 'host' });
  assert.deepEqual(c.linux.capabilities, ['CAP_NET_ADMIN']);
  assert.equal(c.entrypoint[0], '/usr/bin/node', 'no shell between dockerd and node');
  const flag = (f: string): string | undefined => c.entrypoint[c.entrypoint.indexOf(f) + 1];
  assert.equal(flag('--name'), 'bbx');
  assert.equal(flag('--state-dir'), PLUGIN_PATHS.state);
  assert.equal(flag('--socket-dir'), '/run/docker/plugins');
  assert.equal(flag('--sysctl-dir'), PLUGIN_PATHS.sysctlDir);
  const mounts = new Map(c.mounts.map((m) => [m.name, m]));
  assert.deepEqual([...mounts.keys()].sort(), ['state', 'sysctl-net']);
  assert.deepEqual(mounts.get('state')?.settable, ['source'], 'the books can live in another host dir');
  assert.equal(mounts.get('state')?.destination, PLUGIN_PATHS.state);
  assert.equal(mounts.get('sysctl-net')?.source, '/proc/sys/net');
  assert.equal(mounts.get('sysctl-net')?.destination, `${PLUGIN_PATHS.sysctlDir}/net`);
  assert.deepEqual(c.env.map((e) => [e.name, e.value, e.settable]), [['BB_LOG_LEVEL', 'info', ['value']]]);
  assert.deepEqual(c.args.settable, ['value']);
});

test('parseLdd: libraries, the interpreter, the vdso, static binaries and missing libraries', () => {
  const out = [
    '\tlinux-vdso.so.1 (0x00007ffc8a5f2000)',
    '\tlibmnl.so.0 => /lib/x86_64-linux-gnu/libmnl.so.0 (0x00007f0e1c1d4000)',
    '\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0e1bff3000)',
    '\t/lib64/ld-linux-x86-64.so.2 (0x00007f0e1c1f6000)',
  ].join('\n');
  assert.deepEqual(parseLdd(out), { libs: ['/lib/x86_64-linux-gnu/libmnl.so.0', '/lib/x86_64-linux-gnu/libc.so.6', '/lib64/ld-linux-x86-64.so.2'], missing: [] });
  assert.deepEqual(parseLdd('\tnot a dynamic executable\n'), { libs: [], missing: [] });
  assert.deepEqual(parseLdd('\tlibfoo.so.1 => not found\n'), { libs: [], missing: ['libfoo.so.1'] });
});

test('productionPackages: dev-only entries left out, optional ones marked, bad paths refused', () => {
  const lock = {
    lockfileVersion: 3,
    packages: {
      '': { name: 'batchbridge' },
      'node_modules/fastify': {},
      'node_modules/typescript': { dev: true },
      'node_modules/@napi-rs/nice-linux-x64-gnu': { optional: true },
      'node_modules/a/node_modules/b': {},
      'node_modules/linked': { link: true },
    },
  };
  assert.deepEqual(productionPackages(lock), [
    { path: 'node_modules/@napi-rs/nice-linux-x64-gnu', optional: true },
    { path: 'node_modules/a/node_modules/b', optional: false },
    { path: 'node_modules/fastify', optional: false },
  ]);
  assert.throws(() => productionPackages({ packages: { 'node_modules/../../etc': {} } }), /bad package path/);
  assert.throws(() => productionPackages({ lockfileVersion: 1, dependencies: {} }), /lockfile version 2/);
});

test('socket lookup: NAME:TAG, a direct socket first, then <socket-dir>/<plugin id>/NAME.sock', () => {
  assert.equal(socketBaseName('batchbridge:latest'), 'batchbridge');
  assert.equal(socketBaseName('bb.x-1'), 'bb.x-1');
  for (const bad of ['', 'Upper', 'a/b', 'x:', '../x', 'a:b:c']) assert.equal(socketBaseName(bad), null, bad);

  const dir = mkdtempSync(join(tmpdir(), 'bbt-sock-'));
  try {
    assert.equal(resolvePluginSocket(dir, 'bb'), join(dir, 'bb.sock'), 'nothing there: the direct path, for the error message');
    const id1 = 'a'.repeat(64);
    mkdirSync(join(dir, id1));
    writeFileSync(join(dir, id1, 'bb.sock'), '');
    assert.equal(resolvePluginSocket(dir, 'bb'), join(dir, id1, 'bb.sock'));
    writeFileSync(join(dir, 'bb.sock'), '');
    assert.equal(resolvePluginSocket(dir, 'bb'), join(dir, 'bb.sock'), 'a hand-started plugin of that name wins');
    rmSync(join(dir, 'bb.sock'));
    mkdirSync(join(dir, 'b'.repeat(64)));
    writeFileSync(join(dir, 'b'.repeat(64), 'bb.sock'), '');
    assert.throws(() => resolvePluginSocket(dir, 'bb'), /several plugins have a socket named bb\.sock/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** iptables-save text of our skeleton as syncFirewall installs it, plus `extra` lines per table. */
function skeletonSave(extra: Record<string, string[]> = {}): string {
  const { text } = renderRestorePayload([{ owner: 0, lines: baseChains() }]);
  const hooks: Record<string, string[]> = {
    filter: ['-A FORWARD -j DOCKER-USER', '-A FORWARD -j BB-FORWARD'],
    nat: ['-A PREROUTING -m addrtype --dst-type LOCAL -j BB-DNAT', '-A OUTPUT -m addrtype --dst-type LOCAL -j BB-DNAT', '-A POSTROUTING -j BB-POSTROUTING', '-A POSTROUTING -j BB-POSTROUTING'],
    mangle: ['-A POSTROUTING -j BB-MANGLE'],
  };
  const out: string[] = [];
  let table = '';
  for (const l of text.split('\n')) {
    if (l.startsWith('*')) table = l.slice(1);
    if (l === 'COMMIT') out.push(...(hooks[table] ?? []), ...(extra[table] ?? []));
    out.push(l);
  }
  return out.join('\n');
}

test('planTeardown: every hook (duplicates too) and every chain of ours, nothing else', () => {
  const plan = planTeardown(skeletonSave());
  assert.notEqual(plan, 'in-use');
  const lines = (plan as Array<{ table: string; line: string }>).map((l) => `${l.table} ${l.line}`);
  assert.equal(lines.filter((l) => l === 'nat -D POSTROUTING -j BB-POSTROUTING').length, 2, 'a duplicated hook goes twice');
  assert.ok(lines.includes('filter -D FORWARD -j BB-FORWARD'));
  assert.ok(!lines.some((l) => l.includes('DOCKER-USER')), 'never touches what is not ours');
  assert.equal(lines.filter((l) => / -X BB-DNAT-\d+$/.test(l)).length, 128);
  const declared = lines.filter((l) => / :BB-/.test(l)).length;
  assert.equal(declared, lines.filter((l) => / -X BB-/.test(l)).length, 'each chain flushed (declared) then deleted');
  assert.equal(declared, baseChains().filter((l) => l.line.startsWith(':')).length);
  assert.deepEqual(planTeardown('*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\nCOMMIT\n'), [], 'nothing of ours: nothing to do');
});

test('planTeardown: a tagged rule left in our chains (another instance) keeps everything', () => {
  const save = skeletonSave({ nat: ['-A BB-POSTROUTING -s 198.18.5.0/24 ! -o bb-x -m comment --comment "bb:net=aaaaaaaaaaaa" -j MASQUERADE'] });
  assert.equal(planTeardown(save), 'in-use');
});

test('package-plugin refuses bad usage and a non-empty --out, and changes nothing', () => {
  const cli = (args: string[]) => spawnSync(process.execPath, [BIN, 'package-plugin', ...args], { encoding: 'utf8' });
  const help = cli(['--help']);
  assert.equal(help.status, 0);
  assert.match(help.stdout, /docker plugin create NAME DIR/);
  assert.equal(cli([]).status, 2);
  assert.match(cli([]).stderr, /--out DIR is required/);
  assert.match(cli(['--out', '/tmp/x', '--name', 'bridge']).stderr, /built-in Docker driver name/);
  assert.match(cli(['--out', '/tmp/x', '--name', 'Bad/Name']).stderr, /--name must be/);
  assert.equal(cli(['--out', '/tmp/x', '--bogus']).status, 2);
  const dir = mkdtempSync(join(tmpdir(), 'bbt-pkg-'));
  try {
    writeFileSync(join(dir, 'keep'), 'mine');
    const r = cli(['--out', dir]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /exists and is not empty; nothing was changed/);
    assert.deepEqual(readdirSync(dir), ['keep']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
