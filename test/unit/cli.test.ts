// The command line as an operator meets it: every subcommand answers --help, --version prints
// the package's version, the version is the first thing serve logs, levels are named, and
// --log-format pretty prints readable lines. Spawns the real bin/batchbridge.js; serve is
// pointed at a state dir that is a file, so it stops right after its first log line, before it
// claims anything.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { prettyLine } from '../../src/log.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const BIN = join(ROOT, 'bin', 'batchbridge.js');
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

function cli(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('every subcommand answers --help with its own usage, exit 0', () => {
  for (const cmd of ['serve', 'status', 'ports', 'reconcile', 'cleanup', 'install-service', 'cni-install']) {
    const r = cli([cmd, '--help']);
    assert.equal(r.code, 0, `${cmd} --help: ${r.stderr}`);
    assert.match(r.stdout, new RegExp(`^Usage: batchbridge ${cmd}\\b`), `${cmd} --help prints its usage`);
  }
  const top = cli(['--help']);
  assert.equal(top.code, 0);
  for (const cmd of ['serve', 'status', 'ports', 'reconcile', 'cleanup', 'install-service', 'cni-install', '--version']) assert.ok(top.stdout.includes(`batchbridge ${cmd}`), `${cmd} in the overview`);
});

test('--version prints the package version; unknown commands and flags are usage errors', () => {
  const v = cli(['--version']);
  assert.equal(v.code, 0);
  assert.equal(v.stdout, `batchbridge ${VERSION}\n`);
  const bad = cli(['frobnicate']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /unknown command "frobnicate"/);
  const flag = cli(['status', '--bogus']);
  assert.equal(flag.code, 2);
  assert.match(flag.stderr, /Run 'batchbridge status --help' for usage/);
});

test('serve logs its version first, with named levels (json) or as readable lines (pretty)', (t) => {
  const dir = mkdtempSync('/tmp/bbt-cli-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const notADir = join(dir, 'state');
  writeFileSync(notADir, '');
  const json = cli(['serve', '--state-dir', notADir, '--socket-dir', dir, '--batch-max', '32']);
  assert.equal(json.code, 1, 'refuses the state dir');
  const first = JSON.parse(json.stderr.split('\n')[0] ?? '') as Record<string, unknown>;
  assert.equal(first.level, 'info', 'levels by name');
  assert.equal(first.msg, `batchbridge ${VERSION} starting`);
  assert.equal(first.version, VERSION);
  assert.match(String(first.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.deepEqual((first.settings as Record<string, string>)['batch-max'], '32 (command line)');
  const pretty = cli(['serve', '--state-dir', notADir, '--socket-dir', dir, '--log-format', 'pretty']);
  assert.match(pretty.stderr.split('\n')[0] ?? '', new RegExp(`^\\d\\d:\\d\\d:\\d\\d\\.\\d{3} INFO  batchbridge ${VERSION.replace(/\./g, '\\.')} starting version=${VERSION.replace(/\./g, '\\.')} `));
});

test('pretty lines: message, then fields as key=value, errors with their stack indented', () => {
  const line = prettyLine(JSON.stringify({ level: 'error', time: '2025-01-02T03:04:05.678Z', name: 'batchbridge', msg: 'request failed', networkId: 'n1', endpointId: 'e 2', err: { message: 'boom', stack: 'Error: boom\n    at x (y.js:1:1)' } }));
  assert.equal(line, '03:04:05.678 ERROR request failed networkId=n1 endpointId="e 2" err=boom\n    at x (y.js:1:1)\n');
  assert.equal(prettyLine('not json'), 'not json\n');
});
