// runToolDirect, the one function that starts a tool to completion (through the launcher or
// directly): what every caller relies on — stdin, stdout and stderr whole and unchanged, the exit
// status, a start failure or a timeout as spawnError, the environment.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runToolDirect } from '../../src/tools/spawn.js';

test('stdin in, stdout and stderr out unchanged (final newlines kept), exit status', async () => {
  const r = await runToolDirect('sh', ['-c', 'cat; printf "e1\\ne2\\n" >&2; exit 3'], 'line1\nline2\n');
  assert.deepEqual(r, { exitCode: 3, stdout: 'line1\nline2\n', stderr: 'e1\ne2\n', spawnError: null });
});

test('a large output and a tool that does not read its input', async () => {
  const big = await runToolDirect('sh', ['-c', 'head -c 3000000 /dev/zero | tr "\\0" x']);
  assert.equal(big.stdout.length, 3_000_000);
  const unread = await runToolDirect('true', [], 'x'.repeat(4 << 20));
  assert.deepEqual(unread, { exitCode: 0, stdout: '', stderr: '', spawnError: null });
});

test('a tool that cannot be started: spawnError, exit status -1', async () => {
  const r = await runToolDirect('/nonexistent/bbt-tool', []);
  assert.equal(r.exitCode, -1);
  assert.match(r.spawnError ?? '', /\/nonexistent\/bbt-tool: .*ENOENT/);
});

test('a timeout kills the tool and says so', async () => {
  const t0 = performance.now();
  const r = await runToolDirect('sleep', ['10'], undefined, 150);
  assert.ok(performance.now() - t0 < 5_000);
  assert.equal(r.exitCode, -1);
  assert.equal(r.spawnError, 'sleep killed by SIGTERM (timed out after 150 ms)');
});

test('environment: ours with LC_ALL=C, or exactly the one given', async () => {
  process.env.BBT_SPAWN_PROBE = 'ours';
  try {
    const ours = await runToolDirect('sh', ['-c', 'echo "$LC_ALL $BBT_SPAWN_PROBE"']);
    assert.equal(ours.stdout, 'C ours\n');
    const given = await runToolDirect('/bin/sh', ['-c', 'echo "${LC_ALL-unset} ${BBT_SPAWN_PROBE-unset} $X"'], undefined, 5_000, { X: 'given' });
    assert.equal(given.stdout, 'unset unset given\n');
  } finally {
    delete process.env.BBT_SPAWN_PROBE;
  }
});
