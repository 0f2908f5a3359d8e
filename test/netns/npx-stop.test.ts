// The README's start command stops completely: SIGTERM to the top process of `npx batchbridge
// serve …` (npm → sh → node) ends the plugin, its helper processes and its socket within seconds.
// npm passes the signal only to sh, which dies without passing it on (src/cli/parent-watch.ts).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { processTree } from '../../scripts/load/run.js';
import { cmdlineOf, isAlive, pidsMentioning, signalPid, sleep } from '../helpers/proc.js';
import { assertPrivateNetns, cleanUpAfter, Client, REPO_ROOT, tail, tempDir } from './crash-kit.js';

test('SIGTERM to `npx batchbridge serve` ends the plugin and removes its socket', { timeout: 90_000 }, async (t) => {
  assertPrivateNetns();
  const dir = await tempDir('bbt-npx-');
  const name = 'bbnpx';
  const socketPath = join(dir.path, 'sock', `${name}.sock`);
  const logPath = join(dir.path, 'log');
  // Anything still mentioning our unique directory after the test is ours: kill it.
  cleanUpAfter(t, dir, () => null, async () => {
    for (const pid of pidsMentioning(dir.path)) signalPid(pid, 'SIGKILL');
  });

  const fd = openSync(logPath, 'a');
  const npx = spawn(
    'npx',
    ['--no-install', 'batchbridge', 'serve', '--name', name, '--socket-dir', join(dir.path, 'sock'), '--state-dir', join(dir.path, 'state'), '--log-level', 'info'],
    { cwd: REPO_ROOT, stdio: ['ignore', fd, fd], detached: true },
  );
  closeSync(fd);
  const npxExit = new Promise<void>((resolve) => npx.on('exit', () => resolve()));
  assert.ok(npx.pid !== undefined, 'npx started');

  const probe = new Client(socketPath, 0);
  try {
    const deadline = Date.now() + 45_000;
    for (;;) {
      if (existsSync(socketPath) && (await probe.call('Plugin.Activate', undefined)).status === 200) break;
      assert.ok(Date.now() < deadline, `plugin not ready under npx:\n${tail(logPath)}`);
      await sleep(100);
    }
  } finally {
    await probe.close();
  }
  const tree = processTree(npx.pid);
  const plugin = tree.find((pid) => cmdlineOf(pid).some((a) => a.endsWith('/batchbridge')) && cmdlineOf(pid).includes('serve') && cmdlineOf(pid)[0]?.endsWith('node') === true);
  assert.ok(plugin !== undefined, `the plugin in npx's process tree: ${tree.map((p) => cmdlineOf(p).join(' ')).join('\n')}`);
  // The shape that loses the signal: npm, then sh, then the plugin.
  assert.ok(tree.some((pid) => cmdlineOf(pid)[0] === 'sh'), 'npm runs the bin through sh');

  process.kill(npx.pid, 'SIGTERM');
  await npxExit;
  const deadline = Date.now() + 5_000;
  while (Date.now() < deadline && (tree.some(isAlive) || existsSync(socketPath))) await sleep(50);
  const left = tree.filter(isAlive).map((pid) => `${pid} ${cmdlineOf(pid).join(' ')}`);
  assert.deepEqual(left, [], `processes left 5 s after SIGTERM to npx:\n${tail(logPath)}`);
  assert.equal(existsSync(socketPath), false, 'socket removed');
  const log = readFileSync(logPath, 'utf8');
  assert.match(log, /npm parent exited/, 'stopped because its npm parent went away');
  assert.match(log, /"msg":"stopped"/, 'drained and stopped cleanly');
});
