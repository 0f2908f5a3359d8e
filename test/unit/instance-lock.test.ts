// The state dir's checks and lock, in process (the kernel tests run the real plugin:
// test/netns/instance-guard.test.ts). Another process's view is taken with a child `node`.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { serverTimeoutOptions } from '../../src/api/http-timeouts.js';
import { InstanceConflictError, StateDirUnsafeError } from '../../src/errors.js';
import { instanceInfo, lockHolderPid, OWNER_FILE, stateDirHolder, StateDirLock } from '../../src/state/instance-lock.js';
import { SqliteStateStore } from '../../src/state/sqlite-store.js';

const LOCK_MODULE = new URL('../../src/state/instance-lock.js', import.meta.url).href;

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'bbt-lock-'));
}

/** stateDirHolder as another process sees it. */
function holderFromChild(stateDir: string): { pid: number; name: string | null } | null {
  const code = `import(${JSON.stringify(LOCK_MODULE)}).then((m) => process.stdout.write(JSON.stringify(m.stateDirHolder(${JSON.stringify(stateDir)}))))`;
  const r = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as { pid: number; name: string | null } | null;
}

test('the lock: held, named, refused to a second taker in this process without being dropped, released', () => {
  const parent = tmp();
  try {
    const dir = join(parent, 'state');
    const lock = StateDirLock.acquire(instanceInfo({ role: 'serve', name: 'bbu', socketPath: '/x/bbu.sock' }, dir));
    assert.equal(statSync(dir).mode & 0o777, 0o700, 'created 0700');
    assert.equal(stateDirHolder(dir)?.name, 'bbu');
    assert.equal(lockHolderPid(join(dir, 'batchbridge.lock')), process.pid, '/proc/locks names the holder');
    assert.deepEqual(holderFromChild(dir), { ...lock.info }, 'another process sees the holder');
    // A second acquire here must neither succeed nor open the lock file (closing any descriptor
    // of it would drop this process's POSIX lock).
    assert.throws(() => StateDirLock.acquire(instanceInfo({ role: 'reconcile', name: null, socketPath: null }, dir)), InstanceConflictError);
    assert.equal(holderFromChild(dir)?.pid, process.pid, 'still held after the refusal');
    lock.release();
    assert.equal(existsSync(join(dir, OWNER_FILE)), false);
    assert.equal(stateDirHolder(dir), null);
    assert.equal(holderFromChild(dir), null);
    // Held again, by a new taker.
    StateDirLock.acquire(instanceInfo({ role: 'reconcile', name: null, socketPath: null }, dir)).release();
  } finally {
    rmSync(parent, { recursive: true, force: true });
  }
});

test('refusals change nothing: symlinked lock file, symlinked -shm, group-writable state dir', () => {
  const parent = tmp();
  try {
    const target = join(parent, 'target');
    writeFileSync(target, 'keep\n', { mode: 0o644 });
    chmodSync(target, 0o644);
    const lockDir = mkdtempSync(join(parent, 'l-'));
    symlinkSync(target, join(lockDir, 'batchbridge.lock'));
    assert.throws(() => StateDirLock.acquire(instanceInfo({ role: 'serve', name: 'x', socketPath: null }, lockDir)), /batchbridge\.lock: it is a symlink/);
    const shmDir = mkdtempSync(join(parent, 's-'));
    symlinkSync(target, join(shmDir, 'batchbridge.db-shm'));
    assert.throws(() => new SqliteStateStore(shmDir), (e: unknown) => e instanceof StateDirUnsafeError && /batchbridge\.db-shm: it is a symlink/.test(e.message));
    assert.equal(existsSync(join(shmDir, 'batchbridge.db')), false, 'no books created');
    assert.equal(statSync(target).mode & 0o777, 0o644);
    assert.equal(readFileSync(target, 'utf8'), 'keep\n');
    const g = mkdtempSync(join(parent, 'g-'));
    chmodSync(g, 0o720);
    assert.throws(() => new SqliteStateStore(g), /writable by its group \(mode 720\)/);
    assert.equal(statSync(g).mode & 0o777, 0o720);
    assert.equal(existsSync(join(g, 'batchbridge.db')), false);
  } finally {
    rmSync(parent, { recursive: true, force: true });
  }
});

test('server timeouts: a received request is never timed; checks follow the shortest limit', () => {
  const o = serverTimeoutOptions({ headersMs: 1000, requestMs: 1500, idleMs: 2000 });
  assert.equal(o.connectionTimeout, 0, 'no inactivity timeout: requests wait for batches');
  assert.deepEqual([o.http.headersTimeout, o.requestTimeout, o.keepAliveTimeout], [1000, 1500, 2000]);
  assert.equal(o.http.connectionsCheckingInterval, 250);
  assert.equal(serverTimeoutOptions({ headersMs: 10_000, requestMs: 30_000, idleMs: 60_000 }).http.connectionsCheckingInterval, 1000);
  assert.equal(serverTimeoutOptions({ headersMs: 100, requestMs: 100, idleMs: 100 }).http.connectionsCheckingInterval, 25);
});
