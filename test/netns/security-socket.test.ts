// The plugin socket and the books are root's alone: socket 0600 owned by root, state files 0600.
import assert from 'node:assert/strict';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { assertPrivateNetns, cleanUpAfter, Client, startPlugin, tempDir, type PluginProc } from './crash-kit.js';

test('socket 0600 root-owned, books 0600, socket removed on SIGTERM', { timeout: 60_000 }, async (t) => {
  assertPrivateNetns();
  const dir = await tempDir('bbt-sec-');
  let plugin: PluginProc | null = null;
  const name = 'bbsec';
  const stateDir = join(dir.path, 'state');
  const socketDir = join(dir.path, 'sock');
  cleanUpAfter(t, dir, () => plugin);
  // A permissive umask in the caller must not loosen anything.
  plugin = await startPlugin({ name, stateDir, socketDir, logPath: join(dir.path, 'log'), env: {} });
  const sock = statSync(plugin.socketPath);
  assert.ok(sock.isSocket());
  assert.equal((sock.mode & 0o777).toString(8), '600', 'socket mode');
  assert.equal(sock.uid, 0, 'socket owner');
  const client = new Client(plugin.socketPath, 1000);
  const r = await client.call('CreateNetwork', { NetworkID: 'secnet00000001', Options: {}, IPv4Data: [{ Pool: '198.18.90.0/24' }], IPv6Data: [] });
  assert.equal(r.status, 200, r.text);
  await client.close();
  for (const f of readdirSync(stateDir)) {
    const st = statSync(join(stateDir, f));
    assert.equal((st.mode & 0o777).toString(8), '600', `${f} mode`);
    assert.equal(st.uid, 0);
  }
  assert.equal((statSync(stateDir).mode & 0o777).toString(8), '700', 'state dir mode');
  const stopped = await plugin.stop();
  plugin = null;
  assert.equal(stopped.code, 0);
  assert.throws(() => statSync(join(socketDir, `${name}.sock`)), 'socket removed on SIGTERM');
});
