// The managed plugin's pieces without Docker: the config it declares, ldd and lockfile parsing,
// the CLI's socket lookup (NAME:TAG, <socket-dir>/<id>/<name>.sock), and package-plugin's
// refusals (which must change nothing).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { parseLdd, productionPackages } from '../../src/cli/plugin-inputs.js';
import { pluginConfig, PLUGIN_PATHS } from '../../src/cli/plugin-config.js';
import { locatePluginSocket, resolvePluginSocket, socketBaseName } from '../../src/cli/socket-lookup.js';
import { isUsageError } from '../../src/cli/usage.js';

const BIN = fileURLToPath(new URL('../../../bin/batchbridge.js', import.meta.url));

test('config.json: network driver on host networking, CAP_NET_ADMIN only, node run directly', () => {
  const c = pluginConfig({ name: 'bbx', nodePath: '/usr/bin/node' });
  assert.deepEqual(c.interface, { types: ['docker.networkdriver/1.0'], socket: 'bbx.sock' });
  assert.deepEqual(c.network, { type: 'host' });
  assert.deepEqual(c.linux.capabilities, ['CAP_NET_ADMIN']);
  assert.equal(c.entrypoint[0], '/usr/bin/node', 'no shell between dockerd and node');
  assert.equal(c.entrypoint[1], '/opt/batchbridge/dist/src/cli/plugin-entry.js');
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
    // What every CLI command calls: the tag dropped, the managed plugin found.
    assert.equal(locatePluginSocket('bb:latest', dir), join(dir, id1, 'bb.sock'));
    assert.throws(() => locatePluginSocket('Bad/Name', dir), (e: unknown) => isUsageError(e) && /invalid --name "Bad\/Name"/.test((e as Error).message));
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
