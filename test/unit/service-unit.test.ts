// The systemd unit: what it contains, which paths it refuses, the unit shipped in packaging/, and
// `batchbridge install-service` writing it (into a temp dir; systemctl replaced by a recorder).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { PACKAGED_PATHS, pathProblem, renderUnit, UNIT_DEFAULTS, type UnitSettings } from '../../src/cli/service-unit.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const BIN = realpathSync(join(ROOT, 'bin', 'batchbridge.js'));
const dir = mkdtempSync(join(tmpdir(), 'bbt-unit-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const base: UnitSettings = { name: 'batchbridge', node: '/usr/bin/node', bin: '/opt/bb/bin/batchbridge.js', stateDir: '/var/lib/batchbridge', socketDir: '/run/docker/plugins' };
const lines = (u: string): string[] => u.split('\n').filter((l) => !l.startsWith('#'));

test('the unit runs node directly, before docker, restarts on failure, keeps only the network capabilities', () => {
  const u = lines(renderUnit(base));
  assert.ok(u.includes('ExecStart=/usr/bin/node /opt/bb/bin/batchbridge.js serve --name batchbridge --state-dir /var/lib/batchbridge --socket-dir /run/docker/plugins'));
  for (const want of [
    'Before=docker.service', 'Restart=on-failure', 'KillMode=mixed',
    'StateDirectory=batchbridge', 'StateDirectoryMode=0700', 'RuntimeDirectory=docker/plugins', 'RuntimeDirectoryPreserve=yes',
    'CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW', 'NoNewPrivileges=yes', 'ProtectSystem=full', 'ProtectHome=yes', 'PrivateTmp=yes',
    'WantedBy=multi-user.target docker.service',
  ]) assert.ok(u.includes(want), want);
  assert.ok(!u.some((l) => /npx|npm/.test(l)), 'no npm in the unit');
  assert.ok(!u.some((l) => l.startsWith('ProtectKernelTunables')), 'sysctl writes stay possible');
});

test('paths outside /var/lib and /run get no systemd-managed directories; code under a home stays readable', () => {
  const u = lines(renderUnit({ ...base, stateDir: '/srv/bb', socketDir: '/srv/sock', bin: '/root/bb/bin/batchbridge.js' }));
  assert.ok(!u.some((l) => l.startsWith('StateDirectory') || l.startsWith('RuntimeDirectory')));
  assert.ok(u.includes('ProtectHome=read-only'));
});

test('paths the sandbox or systemd would misread are refused', () => {
  const bad: Array<[string, boolean, RegExp]> = [
    ['var/lib/bb', true, /absolute/],
    ['/var/lib/b b', true, /only letters/],
    ['/var/lib/%n', true, /only letters/],
    ['/var/lib/$X', true, /only letters/],
    ['/var/lib/bb/', true, /normalized/],
    ['/var/lib/../etc', true, /normalized/],
    ['/tmp/bb', true, /PrivateTmp/],
    ['/home/u/bb', true, /ProtectHome/],
    ['/root', true, /ProtectHome/],
    ['/etc/bb', true, /read-only/],
    ['/proc/bb', true, /kernel API/],
    ['/', true, /cannot be \//],
  ];
  for (const [p, w, re] of bad) assert.match(pathProblem('--state-dir', p, w) ?? 'accepted', re, p);
  for (const p of ['/var/lib/batchbridge', '/srv/bb', '/run/docker/plugins']) assert.equal(pathProblem('--state-dir', p, true), null, p);
  assert.equal(pathProblem('--bin', '/root/bb/bin/batchbridge.js', false), null, 'read-only paths may be under a home');
});

test('packaging/systemd/batchbridge.service is the unit for the defaults', () => {
  const shipped = readFileSync(join(ROOT, 'packaging', 'systemd', 'batchbridge.service'), 'utf8');
  assert.equal(shipped, renderUnit({ name: UNIT_DEFAULTS.name, stateDir: UNIT_DEFAULTS.stateDir, socketDir: UNIT_DEFAULTS.socketDir, ...PACKAGED_PATHS }));
});

function cli(args: string[], env: NodeJS.ProcessEnv = process.env): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test('install-service writes the unit, says how to start it, keeps an edited unit unless --force', () => {
  const unitDir = join(dir, 'units');
  const args = ['install-service', '--unit-dir', unitDir, '--name', 'bbtest', '--state-dir', '/var/lib/bbtest', '--socket-dir', '/run/docker/plugins'];
  const help = cli(['install-service', '--help']);
  assert.equal(help.code, 0);
  assert.match(help.out, /--unit-dir DIR/);
  assert.equal(cli(args).code, 1, 'a missing unit dir is an error');
  spawnSync('mkdir', [unitDir]);
  const r = cli(args);
  assert.equal(r.code, 0, r.err);
  const path = join(unitDir, 'bbtest.service');
  assert.match(r.out, /^wrote .*bbtest\.service$/m);
  assert.match(r.out, /^ {2}systemctl daemon-reload && systemctl enable --now bbtest\.service$/m);
  const want = renderUnit({ name: 'bbtest', node: process.execPath, bin: BIN, stateDir: '/var/lib/bbtest', socketDir: '/run/docker/plugins' });
  assert.equal(readFileSync(path, 'utf8'), want);
  assert.match(cli(args).out, /already up to date/);

  writeFileSync(path, `${want}# edited\n`);
  const kept = cli(args);
  assert.equal(kept.code, 1);
  assert.match(kept.err, /exists with other content; --force replaces it/);
  assert.equal(readFileSync(path, 'utf8'), `${want}# edited\n`, 'untouched');
  assert.equal(cli([...args, '--force']).code, 0);
  assert.equal(readFileSync(path, 'utf8'), want);

  const bad = cli(['install-service', '--unit-dir', unitDir, '--name', 'bbbad', '--state-dir', '/tmp/bb']);
  assert.equal(bad.code, 2);
  assert.match(bad.err, /--state-dir \/tmp\/bb is under \/tmp/);
  assert.equal(cli(['install-service', '--unit-dir', unitDir, '--name', 'bridge']).code, 2);
  assert.equal(existsSync(join(unitDir, 'bbbad.service')) || existsSync(join(unitDir, 'bridge.service')), false, 'nothing written on bad usage');

  // The CNI socket: serve's default unless given; --no-cni passed on; checked like the others.
  const cniArgs = ['install-service', '--unit-dir', unitDir, '--name', 'bbcni', '--state-dir', '/var/lib/bbcni'];
  const own = cli([...cniArgs, '--cni-socket', '/run/bbcni/cni.sock']);
  assert.equal(own.code, 0, own.err);
  assert.match(own.out, /runs: .* serve --name bbcni .*--cni-socket \/run\/bbcni\/cni\.sock$/m);
  assert.match(readFileSync(join(unitDir, 'bbcni.service'), 'utf8'), /^ExecStart=.* --cni-socket \/run\/bbcni\/cni\.sock$/m);
  assert.match(cli([...cniArgs, '--no-cni', '--force']).out, /runs: .* --no-cni$/m);
  assert.match(cli([...cniArgs, '--cni-socket', '/tmp/cni.sock', '--force']).err, /--cni-socket \/tmp\/cni\.sock is under \/tmp/);
  assert.match(cli([...cniArgs, '--cni-socket', '/run/x.sock', '--no-cni']).err, /exclude each other/);
  assert.doesNotMatch(readFileSync(join(unitDir, 'bbtest.service'), 'utf8'), /cni/, 'the default unit leaves it to serve');
});

test('install-service --enable runs daemon-reload, then enable --now, and fails when systemctl does', () => {
  const unitDir = mkdtempSync(join(dir, 'units-'));
  const fake = mkdtempSync(join(dir, 'bin-'));
  const record = join(fake, 'calls');
  writeFileSync(join(fake, 'systemctl'), `#!/bin/sh\necho "$*" >> ${record}\n[ "$1" != enable ] || exit "\${FAKE_ENABLE_RC:-0}"\n`);
  chmodSync(join(fake, 'systemctl'), 0o755);
  const env = { ...process.env, PATH: `${fake}:${process.env.PATH ?? ''}` };
  const r = cli(['install-service', '--unit-dir', unitDir, '--name', 'bben', '--enable'], env);
  assert.equal(r.code, 0, r.err);
  assert.equal(readFileSync(record, 'utf8'), 'daemon-reload\nenable --now bben.service\n');
  const f = cli(['install-service', '--unit-dir', unitDir, '--name', 'bben', '--enable'], { ...env, FAKE_ENABLE_RC: '1' });
  assert.equal(f.code, 1);
  assert.match(f.err, /systemctl failed/);
});
