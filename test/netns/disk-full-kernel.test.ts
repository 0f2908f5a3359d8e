// A full disk under the books (issue 10 G): teardown still removes the kernel objects and
// answers success (dockerd only logs a failed DeleteEndpoint and forgets the endpoint, so an
// error would leak its veth for good); creation fails cleanly; the books catch up once there is
// space again. The state dir is a 1 MiB tmpfs mounted for this test.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { eventually, run, runOk } from '../helpers/proc.js';
import { assertPrivateNetns, cleanUpAfter, Client, kernelLinks, readBooks, startPlugin, tempDir, type PluginProc } from './crash-kit.js';

/** Fill the filesystem of `dir` until it reports ENOSPC. */
function fill(path: string): void {
  const chunk = Buffer.alloc(16 * 1024);
  for (let i = 0; ; i++) {
    try {
      writeFileSync(`${path}.${i}`, chunk);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOSPC') return;
      throw err;
    }
  }
}

test('disk full: DeleteEndpoint removes the veth and succeeds; CreateEndpoint fails cleanly; the books catch up', { timeout: 60_000 }, async (t) => {
  assertPrivateNetns();
  const dir = await tempDir('bbt-full-');
  const mnt = join(dir.path, 'mnt');
  await mkdir(mnt);
  await runOk(['mount', '-t', 'tmpfs', '-o', 'size=1m,mode=0700', 'tmpfs', mnt]);
  const stateDir = join(mnt, 'state');
  const opts = { name: 'bbfull', stateDir, socketDir: join(dir.path, 'sock'), logPath: join(dir.path, 'plugin.log'), extraArgs: ['--reconcile-interval-ms', '0'] };
  let plugin: PluginProc | null = null;
  const client = new Client(join(opts.socketDir, 'bbfull.sock'), 10_000);
  cleanUpAfter(t, dir, () => plugin, async () => {
    await client.close();
    await plugin?.kill9();
    await run(['umount', mnt]);
  });
  plugin = await startPlugin(opts);
  const ok = async (m: string, b: unknown): Promise<void> => {
    const r = await client.call(m, b);
    assert.equal(r.status, 200, `${m}: ${r.text}`);
  };
  await ok('CreateNetwork', { NetworkID: 'full00000000001', Options: {}, IPv4Data: [{ Pool: '198.18.96.0/24', Gateway: '198.18.96.1/24' }], IPv6Data: [] });
  for (const [i, ep] of ['e1', 'e2'].entries()) await ok('CreateEndpoint', { NetworkID: 'full00000000001', EndpointID: ep, Interface: { Address: `198.18.96.${10 + i}/24` }, Options: {} });
  await ok('ProgramExternalConnectivity', { NetworkID: 'full00000000001', EndpointID: 'e1', Options: { 'com.docker.network.portmap': [{ Proto: 6, Port: 80, HostPort: 18196 }] } });
  const e1 = readBooks(stateDir).endpoints.get('e1');
  assert.ok(e1);

  fill(join(mnt, 'filler'));
  await ok('RevokeExternalConnectivity', { NetworkID: 'full00000000001', EndpointID: 'e1' });
  await ok('DeleteEndpoint', { NetworkID: 'full00000000001', EndpointID: 'e1' });
  assert.equal((await kernelLinks()).has(e1.host), false, 'the veth is gone although the books could not be written');
  assert.equal((await runOk(['iptables-save', '-t', 'nat'])).includes('--dport 18196'), false, 'and its published port');
  assert.ok(readBooks(stateDir).endpoints.has('e1'), 'on disk the books still hold it (no space)');
  const refused = await client.call('CreateEndpoint', { NetworkID: 'full00000000001', EndpointID: 'e3', Interface: { Address: '198.18.96.30/24' }, Options: {} });
  assert.notEqual(refused.status, 200, 'creation fails while the books cannot be written');
  assert.match(String(refused.body.Err), /could not write the books/);
  const links = await kernelLinks();
  assert.equal([...links.keys()].filter((n) => n.startsWith('veth')).length, 2, 'only e2 has a veth pair in our namespace (its two ends)');

  await rm(join(mnt, 'filler.0'));
  for (let i = 1; ; i++) {
    try {
      await rm(`${join(mnt, 'filler')}.${i}`);
    } catch {
      break;
    }
  }
  await eventually(async () => assert.equal(readBooks(stateDir).endpoints.has('e1'), false, 'the books caught up'), { timeoutMs: 8000, intervalMs: 100 });
  await ok('CreateEndpoint', { NetworkID: 'full00000000001', EndpointID: 'e3', Interface: { Address: '198.18.96.30/24' }, Options: {} });
  await ok('DeleteNetwork', { NetworkID: 'full00000000001' });
  const stopped = await plugin.stop();
  plugin = null;
  assert.equal(stopped.code, 0);
});
