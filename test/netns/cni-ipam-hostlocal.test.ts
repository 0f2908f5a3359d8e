// Delegated IPAM with the real host-local plugin (Debian's containernetworking-plugins), through
// runTool: an ADD allocates in host-local's dataDir, a DEL releases it, exhaustion passes
// host-local's own error on.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { cniErrorBody } from '../../src/cni/cni-error.js';
import { checkIpamResult, delegateAdd, delegateCallOf, delegateDel } from '../../src/cni/ipam-delegate.js';
import { parseInvocation } from '../../src/cni/invocation.js';

const PLUGINS = '/usr/lib/cni';
const root = mkdtempSync(join(tmpdir(), 'bbt-hostlocal-'));
after(() => rmSync(root, { recursive: true, force: true }));

function request(containerId: string) {
  const conf = { cniVersion: '1.0.0', name: 'hlnet', type: 'batchbridge-cni', isGateway: true, ipam: { type: 'host-local', dataDir: join(root, 'data'), ranges: [[{ subnet: '198.18.64.0/30' }]] } };
  const env = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: containerId, CNI_NETNS: '/run/netns/none', CNI_IFNAME: 'eth0', CNI_ARGS: '', CNI_PATH: `/nonexistent:${PLUGINS}` };
  const req = parseInvocation({ env, stdin: Buffer.from(JSON.stringify(conf)) });
  assert.ok(req.command === 'ADD');
  const call = delegateCallOf(req);
  assert.ok(call !== null);
  return { req, call };
}

test('host-local allocates through the delegation, DEL releases, exhaustion keeps host-local\'s words', async () => {
  assert.ok(existsSync(join(PLUGINS, 'host-local')), 'containernetworking-plugins is installed (scripts/install-deps.sh)');
  const a = request('ctr-a');
  const { result } = await delegateAdd(a.call);
  assert.deepEqual(result.ips, [{ address: '198.18.64.2/30', gateway: '198.18.64.1' }]);
  checkIpamResult(a.req.network, result, 'host-local');
  const store = join(root, 'data', 'hlnet');
  assert.ok(readdirSync(store).includes('198.18.64.2'), 'reserved in dataDir');

  // A /30 has one address for containers: the second ADD fails with host-local's error.
  const b = request('ctr-b');
  await assert.rejects(delegateAdd(b.call), (e: unknown) => {
    const body = cniErrorBody(e);
    assert.match(body.msg, /^IPAM plugin host-local failed \(ADD\): failed to allocate for range 0: no IP addresses available/);
    assert.ok(body.code !== 0);
    return true;
  });

  await delegateDel(a.call);
  assert.ok(!readdirSync(store).includes('198.18.64.2'), 'released');
  const again = await delegateAdd(b.call);
  assert.equal(again.result.ips[0]?.address, '198.18.64.2/30', 'the released address is free again');
  await delegateDel(b.call);
  await delegateDel(b.call); // DEL is idempotent in host-local too
});

test('CNI_NETNS naming the daemon\'s own namespace is refused (code 4); another or a gone one is not', async () => {
  const { refuseOwnNetns } = await import('../../src/cni/netns-check.js');
  assert.throws(() => refuseOwnNetns('/proc/self/ns/net'), (e: unknown) => cniErrorBody(e).code === 4 && /own network namespace/.test(cniErrorBody(e).msg));
  assert.throws(() => refuseOwnNetns(`/proc/${process.pid}/ns/net`), /own network namespace/);
  // A namespace of a child of our own is another one.
  const { spawn } = await import('node:child_process');
  const child = spawn('unshare', ['--net', 'sleep', '30'], { stdio: 'ignore' });
  try {
    const { readlinkSync } = await import('node:fs');
    const other = `/proc/${child.pid}/ns/net`;
    const deadline = Date.now() + 5000;
    while (readlinkSync(other) === readlinkSync('/proc/self/ns/net') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.notEqual(readlinkSync(other), readlinkSync('/proc/self/ns/net'));
    refuseOwnNetns(other);
  } finally {
    child.kill('SIGKILL');
  }
  refuseOwnNetns('/run/netns/gone-already');
});
