// Hostile input against a real plugin on the real kernel (in this private namespace): every
// hostile request is refused with {"Err"}, the process stays up, and neither the kernel (links,
// addresses, rules) nor the books change. Env BB_FUZZ_KERNEL_RUNS (default 300).
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { runOk } from '../helpers/proc.js';
import { badCidr4, badId, badIfName, badPortBinding, nastyString } from '../unit/fuzz-kit.js';
import { assertPrivateNetns, cleanUpAfter, Client, readBooks, startPlugin, tempDir, type PluginProc } from './crash-kit.js';

// Deterministic in CI (set BB_FUZZ_SEED to explore other inputs): some checks below assert that
// enough generated inputs passed validation, and a random seed made those fail now and then.
fc.configureGlobal({ seed: Number(process.env.BB_FUZZ_SEED ?? 20261127) });

const RUNS = Number(process.env.BB_FUZZ_KERNEL_RUNS ?? 300);
const NET = 'kfuzznet000001';
const EP = 'kfuzzep0000001';

async function kernelState(): Promise<string> {
  const links = JSON.parse(await runOk(['ip', '-j', '-d', 'addr', 'show'])) as Array<Record<string, unknown>>;
  const slim = links.map((l) => ({ n: l.ifname, m: l.master, f: l.flags, mtu: l.mtu, a: (l.addr_info as Array<{ local: string; prefixlen: number }>).map((a) => `${a.local}/${a.prefixlen}`) }));
  const rules = (await runOk(['iptables-save'])).split('\n').filter((l) => !l.startsWith('#')).map((l) => l.replace(/\[\d+:\d+\]/, ''));
  const rules6 = (await runOk(['ip6tables-save'])).split('\n').filter((l) => !l.startsWith('#')).map((l) => l.replace(/\[\d+:\d+\]/, ''));
  return JSON.stringify({ slim, rules, rules6 });
}

test('hostile requests change nothing in the kernel or the books', { timeout: 120_000 }, async (t) => {
  assertPrivateNetns();
  const dir = await tempDir('bbt-kfuzz-');
  const stateDir = join(dir.path, 'state');
  let plugin: PluginProc | null = null;
  cleanUpAfter(t, dir, () => plugin);
  plugin = await startPlugin({
    name: 'bbkfuzz', stateDir, socketDir: join(dir.path, 'sock'), logPath: join(dir.path, 'log'),
    extraArgs: ['--reconcile-interval-ms', '0', '--firewall-check-ms', '3600000'],
  });
  const client = new Client(plugin.socketPath, 2000);
  t.after(() => client.close());
  assert.equal((await client.call('CreateNetwork', { NetworkID: NET, Options: {}, IPv4Data: [{ Pool: '198.18.130.0/24' }], IPv6Data: [] })).status, 200);
  assert.equal((await client.call('CreateEndpoint', { NetworkID: NET, EndpointID: EP, Interface: { Address: '198.18.130.5/24' }, Options: {} })).status, 200);
  assert.equal((await client.call('ProgramExternalConnectivity', { NetworkID: NET, EndpointID: EP, Options: { 'com.docker.network.portmap': [{ Proto: 6, Port: 80, HostPort: 18100 }] } })).status, 200);
  const kernel0 = await kernelState();
  const books0 = JSON.stringify(readBooks(stateDir), (_k, v: unknown) => (v instanceof Map ? [...v.entries()] : v));
  let sent = 0;

  const hostile = fc.oneof(
    fc.record({ url: fc.constant('/NetworkDriver.CreateNetwork'), body: badIfName.map((b) => ({ NetworkID: 'kfuzznew00001', Options: { 'com.docker.network.generic': { 'com.docker.network.bridge.name': b } }, IPv4Data: [{ Pool: '198.18.131.0/24' }], IPv6Data: [] })) }),
    fc.record({ url: fc.constant('/NetworkDriver.CreateNetwork'), body: badCidr4.map((p) => ({ NetworkID: 'kfuzznew00001', Options: {}, IPv4Data: [{ Pool: p }], IPv6Data: [] })) }),
    fc.record({ url: fc.constant('/NetworkDriver.CreateNetwork'), body: badId.map((id) => ({ NetworkID: id, Options: {}, IPv4Data: [{ Pool: '198.18.131.0/24' }], IPv6Data: [] })) }),
    fc.record({ url: fc.constantFrom('/NetworkDriver.CreateEndpoint', '/NetworkDriver.Join', '/NetworkDriver.DeleteEndpoint', '/NetworkDriver.Leave', '/NetworkDriver.EndpointOperInfo', '/NetworkDriver.RevokeExternalConnectivity'), body: badId.map((id) => ({ NetworkID: NET, EndpointID: id, Interface: { Address: '198.18.130.9/24' }, Options: {} })) }),
    fc.record({ url: fc.constant('/NetworkDriver.CreateEndpoint'), body: nastyString(fc.constant('198.18.130.9/24')).map((a) => ({ NetworkID: NET, EndpointID: 'kfuzznewep001', Interface: { Address: a }, Options: {} })) }),
    fc.record({ url: fc.constant('/NetworkDriver.ProgramExternalConnectivity'), body: fc.array(badPortBinding, { minLength: 1, maxLength: 3 }).map((pm) => ({ NetworkID: NET, EndpointID: EP, Options: { 'com.docker.network.portmap': pm } })) }),
    fc.record({ url: fc.constantFrom('/NetworkDriver.CreateNetwork', '/NetworkDriver.CreateEndpoint', '/NetworkDriver.DeleteNetwork'), body: fc.string({ maxLength: 50 }) }),
  );
  await fc.assert(
    fc.asyncProperty(hostile, async ({ url, body }) => {
      sent++;
      const r = await client.raw(url, typeof body === 'string' ? body : JSON.stringify(body));
      assert.notEqual(r.status, 200, `${url} accepted ${JSON.stringify(body)}: ${r.text}`);
      assert.notEqual(r.status, 404);
      assert.notEqual(r.status, -1, `connection broke: ${r.text}`);
      assert.ok(typeof r.body.Err === 'string' && r.body.Err.length > 0, r.text);
    }),
    { numRuns: RUNS },
  );
  // Over the limit: 413 with Err (or, when the server answers before the body is written, the
  // connection closed under the writer); either way nothing happens and the plugin stays up.
  const huge = await client.raw('/NetworkDriver.CreateNetwork', JSON.stringify({ NetworkID: NET, pad: 'x'.repeat(2 * 1024 * 1024) }));
  if (huge.status === -1) assert.match(huge.text, /EPIPE|ECONNRESET|closed/, huge.text);
  else {
    assert.equal(huge.status, 413, huge.text);
    assert.match(String(huge.body.Err), /too large|body/i);
  }
  assert.equal(await kernelState(), kernel0, 'the kernel is unchanged');
  assert.equal(JSON.stringify(readBooks(stateDir), (_k, v: unknown) => (v instanceof Map ? [...v.entries()] : v)), books0, 'the books are unchanged');
  const alive = await client.call('Plugin.Activate', undefined);
  assert.equal(alive.status, 200, 'the plugin is still up');
  t.diagnostic(`hostile requests sent to the real plugin: ${sent + 1}`);
});
