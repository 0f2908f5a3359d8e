// One instance per state dir, per network namespace and per socket, and a safe state dir
// (issue 10, E and F). A refused start exits 1 with a message naming what holds the resource,
// before it has changed anything: the running plugin keeps serving, its socket, books, bridges
// and rules; an unsafe state dir and whatever its links point to stay as they were.
import assert from 'node:assert/strict';
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Server } from 'node:net';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { run, type RunResult } from '../helpers/proc.js';
import { assertPrivateNetns, BIN, checkConsistency, cleanUpAfter, Client, readBooks, startPlugin, tempDir, type PluginProc, type TempDir } from './crash-kit.js';

const NET = { NetworkID: 'instnet0000001', Options: {}, IPv4Data: [{ Pool: '198.18.130.0/24' }], IPv6Data: [] };

/** `batchbridge serve` that is expected to refuse: in this namespace, or in a fresh one of its own. */
function serve(o: { name: string; stateDir: string; socketDir: string; ownNetns?: boolean }): Promise<RunResult> {
  const argv = [process.execPath, BIN, 'serve', '--name', o.name, '--state-dir', o.stateDir, '--socket-dir', o.socketDir, '--log-level', 'warn', '--reconcile-interval-ms', '0', '--no-cni'];
  // A plugin that wrongly starts would run until killed: 15 s is ample for a refusal.
  return run(o.ownNetns === true ? ['unshare', '--net', ...argv] : argv, { timeoutMs: 15_000 });
}

function refused(r: RunResult, re: RegExp): void {
  assert.equal(r.code, 1, `refused with exit status 1 (got ${r.code})\n${r.stderr}`);
  assert.match(r.stderr, re);
  assert.match(r.stderr, /nothing was changed/);
}

function inode(path: string): number {
  return lstatSync(path).ino;
}

interface Running {
  readonly dir: TempDir;
  readonly plugin: PluginProc;
  readonly stateDir: string;
  readonly socketDir: string;
  readonly client: Client;
}

/** A plugin with one network (so a bridge and rules of its own exist to be harmed). */
async function firstPlugin(t: TestContext, name: string): Promise<Running> {
  const dir = await tempDir('bbt-inst-');
  const stateDir = join(dir.path, 'state');
  const socketDir = join(dir.path, 'sock');
  let plugin: PluginProc | null = null;
  const client = new Client(join(socketDir, `${name}.sock`), 2_000);
  cleanUpAfter(t, dir, () => plugin, () => client.close());
  plugin = await startPlugin({ name, stateDir, socketDir, logPath: join(dir.path, 'log'), extraArgs: ['--reconcile-interval-ms', '0'] });
  const r = await client.call('CreateNetwork', NET);
  assert.equal(r.status, 200, r.text);
  return { dir, plugin, stateDir, socketDir, client };
}

/** The first plugin is untouched: same socket, still answers, its bridge and rules in place. */
async function stillServing(p: Running, socketIno: number): Promise<void> {
  assert.equal(inode(p.plugin.socketPath), socketIno, 'the live socket was not replaced');
  assert.equal((await p.client.call('Plugin.Activate', undefined)).status, 200, 'the first plugin still answers');
  const books = readBooks(p.stateDir);
  assert.ok(books.networks.has(NET.NetworkID));
  assert.deepEqual(await checkConsistency(books), [], 'bridge and rules of the first plugin intact');
}

test('same name: a second instance is refused while the first keeps serving and keeps its socket', { timeout: 60_000 }, async (t) => {
  assertPrivateNetns();
  const p = await firstPlugin(t, 'bbinst');
  const ino = inode(p.plugin.socketPath);
  // Other books, its own namespace: only the live socket can stop it.
  let r = await serve({ name: 'bbinst', stateDir: join(p.dir.path, 'other'), socketDir: p.socketDir, ownNetns: true });
  refused(r, /bbinst\.sock is answered by another process/);
  await stillServing(p, ino);
  // Same books, same namespace.
  r = await serve({ name: 'bbinst', stateDir: p.stateDir, socketDir: p.socketDir });
  refused(r, new RegExp(`bbinst\\.sock is answered by batchbridge serve \\(pid ${p.plugin.pid}, name bbinst,`));
  await stillServing(p, ino);
  assert.equal((await p.plugin.stop()).code, 0);
  assert.throws(() => lstatSync(p.plugin.socketPath), 'its own socket removed at exit');
});

test('another name and another state dir in the same namespace: refused, the first one untouched', { timeout: 60_000 }, async (t) => {
  assertPrivateNetns();
  const p = await firstPlugin(t, 'bbinsta');
  const ino = inode(p.plugin.socketPath);
  const r = await serve({ name: 'bbinstb', stateDir: join(p.dir.path, 'other'), socketDir: p.socketDir });
  refused(r, new RegExp(`this network namespace is already served by batchbridge serve \\(pid ${p.plugin.pid}, name bbinsta, socket ${p.plugin.socketPath}`));
  await stillServing(p, ino);
  assert.equal(readdirSync(p.socketDir).length, 1, 'no second socket');
  assert.throws(() => lstatSync(join(p.dir.path, 'other')), 'the refused instance created no state dir');
});

test('same state dir from another socket dir (and another namespace): refused by the lock; the holder is known', { timeout: 60_000 }, async (t) => {
  assertPrivateNetns();
  const p = await firstPlugin(t, 'bbinstc');
  const ino = inode(p.plugin.socketPath);
  const before = readFileSync(join(p.stateDir, 'batchbridge.db'));
  const r = await serve({ name: 'bbinstd', stateDir: p.stateDir, socketDir: join(p.dir.path, 'sock2'), ownNetns: true });
  refused(r, new RegExp(`the state dir ${p.stateDir} is in use by batchbridge serve \\(pid ${p.plugin.pid}, name bbinstc`));
  await stillServing(p, ino);
  assert.throws(() => lstatSync(join(p.dir.path, 'sock2', 'bbinstd.sock')));
  assert.deepEqual(readFileSync(join(p.stateDir, 'batchbridge.db')), before, 'the books were not touched');

  // An offline reconcile named after a plugin that is not running asks the holder instead.
  const rec = await run([process.execPath, BIN, 'reconcile', '--state-dir', p.stateDir, '--name', 'bbnothere', '--socket-dir', p.socketDir], { timeoutMs: 30_000 });
  assert.equal(rec.code, 0, rec.stderr);
  assert.match(rec.stdout, new RegExp(`running plugin at ${p.plugin.socketPath} \\(it holds ${p.stateDir}\\)`));

  // The query other commands use: who serves from this state dir.
  const { stateDirHolder } = await import('../../src/state/instance-lock.js');
  const h = stateDirHolder(p.stateDir);
  assert.equal(h?.pid, p.plugin.pid);
  assert.equal(h?.role, 'serve');
  assert.equal(h?.name, 'bbinstc');
  assert.equal(h?.socketPath, p.plugin.socketPath);
  // The kernel drops the lock with the process, kill -9 included.
  await p.plugin.kill9();
  assert.equal(stateDirHolder(p.stateDir), null);
});

test('a stale socket is replaced; a path that is not a socket is refused before anything changes', { timeout: 60_000 }, async (t) => {
  assertPrivateNetns();
  const dir = await tempDir('bbt-inst-');
  const socketDir = join(dir.path, 'sock');
  let plugin: PluginProc | null = null;
  cleanUpAfter(t, dir, () => plugin);
  const opts = { name: 'bbinste', stateDir: join(dir.path, 'state'), socketDir, logPath: join(dir.path, 'log'), extraArgs: ['--reconcile-interval-ms', '0'] };
  plugin = await startPlugin(opts);
  await plugin.kill9();
  assert.ok(lstatSync(plugin.socketPath).isSocket(), 'a killed plugin leaves its socket behind');
  // As does one killed while binding, under its private name.
  const binding = join(socketDir, '.bbinste.sock.99999.binding');
  await run([process.execPath, '-e', `require('node:net').createServer().listen(${JSON.stringify(binding)}, () => process.kill(process.pid, 'SIGKILL'))`]);
  assert.ok(lstatSync(binding).isSocket());
  plugin = await startPlugin(opts); // waits until Plugin.Activate is answered at that path
  assert.equal(statSync(plugin.socketPath).mode & 0o777, 0o600);
  assert.deepEqual(readdirSync(socketDir), ['bbinste.sock'], 'no private name left behind');
  assert.equal((await plugin.stop()).code, 0);
  plugin = null;

  // A regular file where the socket goes: refused and kept, before the books were opened (so no
  // start-up work — firewall sync, reconcile — can have run).
  const path = join(socketDir, 'bbinstf.sock');
  writeFileSync(path, 'not a socket\n');
  const r = await serve({ name: 'bbinstf', stateDir: join(dir.path, 'state2'), socketDir });
  refused(r, /bbinstf\.sock exists and is not a socket/);
  assert.equal(readFileSync(path, 'utf8'), 'not a socket\n');
  assert.equal(existsSync(join(dir.path, 'state2', 'batchbridge.db')), false, 'the books were never opened');
});

test('at exit, a socket path that is no longer ours is left alone', { timeout: 60_000 }, async (t) => {
  assertPrivateNetns();
  const dir = await tempDir('bbt-inst-');
  let plugin: PluginProc | null = null;
  let other: Server | null = null;
  cleanUpAfter(t, dir, () => plugin, async () => {
    await new Promise<void>((res) => (other ? other.close(() => res()) : res()));
  });
  plugin = await startPlugin({ name: 'bbinstg', stateDir: join(dir.path, 'state'), socketDir: join(dir.path, 'sock'), logPath: join(dir.path, 'log') });
  const path = plugin.socketPath;
  // Someone moved our socket away and listens at the path now.
  renameSync(path, `${path}.moved`);
  const srv = createServer((c) => c.end('other\n'));
  other = srv;
  await new Promise<void>((res) => srv.listen(path, () => res()));
  const theirs = inode(path);
  assert.equal((await plugin.stop()).code, 0);
  plugin = null;
  assert.equal(inode(path), theirs, 'the other socket is still there');
  const answer = await new Promise<string>((res, rej) => {
    let s = '';
    connect(path).on('data', (d) => (s += String(d))).on('end', () => res(s)).on('error', rej);
  });
  assert.equal(answer, 'other\n', 'and still answers');
});

test('a symlinked batchbridge.db (or -wal) is refused and its target keeps its mode', { timeout: 60_000 }, async (t) => {
  assertPrivateNetns();
  const dir = await tempDir('bbt-inst-');
  cleanUpAfter(t, dir, () => null);
  const target = join(dir.path, 'precious');
  writeFileSync(target, 'precious\n');
  chmodSync(target, 0o644);
  for (const file of ['batchbridge.db', 'batchbridge.db-wal']) {
    const stateDir = join(dir.path, `state-${file}`);
    mkdirSync(stateDir, { mode: 0o700 });
    symlinkSync(target, join(stateDir, file));
    if (file !== 'batchbridge.db') writeFileSync(join(stateDir, 'batchbridge.db'), '', { mode: 0o600 }); // books, so reconcile gets that far
    const r = await serve({ name: 'bbinsth', stateDir, socketDir: join(dir.path, 'sock') });
    refused(r, new RegExp(`${file}: it is a symlink`));
    // The offline reconcile opens the books through the same checks.
    const rec = await run([process.execPath, BIN, 'reconcile', '--state-dir', stateDir, '--name', 'bbinsth', '--socket-dir', join(dir.path, 'sock')], { timeoutMs: 30_000 });
    assert.equal(rec.code, 1, rec.stderr);
    assert.match(rec.stderr, /symlink/);
    assert.equal(statSync(target).mode & 0o777, 0o644, `${file}: the link's target kept its mode`);
    assert.equal(readFileSync(target, 'utf8'), 'precious\n');
    assert.ok(lstatSync(join(stateDir, file)).isSymbolicLink(), 'the link itself is left as it was');
  }
});

test('a state dir writable by others or group, a symlink, or owned by another uid is refused and left as it was', { timeout: 60_000 }, async (t) => {
  assertPrivateNetns();
  const dir = await tempDir('bbt-inst-');
  cleanUpAfter(t, dir, () => null);
  const socketDir = join(dir.path, 'sock');
  const cases: Array<{ label: string; make: (p: string) => void; re: RegExp }> = [
    { label: 'world-writable', make: (p) => chmodSync(p, 0o777), re: /writable by its group and others \(mode 777\)/ },
    { label: 'group-writable', make: (p) => chmodSync(p, 0o770), re: /writable by its group \(mode 770\)/ },
    { label: 'other uid', make: (p) => chownSync(p, 65534, 65534), re: /owned by uid 65534, not root/ },
  ];
  for (const c of cases) {
    const stateDir = join(dir.path, c.label.replace(/ /g, '-'));
    mkdirSync(stateDir, { mode: 0o700 });
    c.make(stateDir);
    const st = statSync(stateDir);
    const r = await serve({ name: 'bbinsti', stateDir, socketDir });
    refused(r, c.re);
    const after = statSync(stateDir);
    assert.deepEqual([after.mode, after.uid, readdirSync(stateDir)], [st.mode, st.uid, []], `${c.label}: unchanged and empty`);
  }
  const real = join(dir.path, 'real');
  mkdirSync(real, { mode: 0o700 });
  symlinkSync(real, join(dir.path, 'link'));
  const r = await serve({ name: 'bbinsti', stateDir: join(dir.path, 'link'), socketDir });
  refused(r, /the state dir is a symlink/);
  assert.deepEqual(readdirSync(real), []);
});
