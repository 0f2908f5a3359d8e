// Delegated IPAM with a fake tool runner: what the plugin is given (found in CNI_PATH, the
// call's environment with CNI_COMMAND replaced, stdin unchanged), how its answers and failures
// are read.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { cniErrorBody } from '../../src/cni/cni-error.js';
import { checkIpamResult, delegateAdd, delegateDel, findPlugin, type DelegateCall, type ToolRunner } from '../../src/cni/ipam-delegate.js';
import { parseNetConfig } from '../../src/cni/net-config.js';
import type { ToolResult } from '../../src/tools/spawn.js';

const root = mkdtempSync(join(tmpdir(), 'bbt-ipamd-'));
after(() => rmSync(root, { recursive: true, force: true }));
for (const d of ['a', 'b']) mkdirSync(join(root, d));
writeFileSync(join(root, 'b', 'host-local'), '');
mkdirSync(join(root, 'a', 'dir-not-plugin'));

const STDIN = Buffer.from('{"cniVersion":"0.4.0","name":"bbnet","type":"batchbridge-cni","ipam":{"type":"host-local","ranges":[[{"subnet":"198.18.64.0/24"}]]}}');
const CALL: DelegateCall = { ipamType: 'host-local', cniPath: [join(root, 'a'), join(root, 'b')], env: { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_IFNAME: 'eth0', CNI_NETNS: '/run/netns/p', CNI_PATH: 'x', HOME: '/root' }, stdin: STDIN };

function fake(result: Partial<ToolResult>): { calls: { file: string; input: string; env: Readonly<Record<string, string>> }[]; run: ToolRunner } {
  const calls: { file: string; input: string; env: Readonly<Record<string, string>> }[] = [];
  return {
    calls,
    run: async (file, _args, input, _timeout, env) => {
      calls.push({ file, input, env });
      return { exitCode: 0, stdout: '', stderr: '', spawnError: null, ...result };
    },
  };
}

function code(e: unknown): { code: number; msg: string; details?: string } {
  return cniErrorBody(e);
}

test('the plugin gets the same environment and stdin, CNI_COMMAND set to the verb; its answer is read', async () => {
  const f = fake({ stdout: '{"cniVersion":"0.4.0","ips":[{"version":"4","address":"198.18.64.2/24","gateway":"198.18.64.1"}],"dns":{}}', stderr: 'note\n' });
  const { result, stderr } = await delegateAdd(CALL, f.run);
  assert.deepEqual(result.ips, [{ address: '198.18.64.2/24', gateway: '198.18.64.1' }]);
  assert.equal(stderr, 'note\n');
  await delegateDel({ ...CALL, env: { ...CALL.env, CNI_COMMAND: 'ADD' } }, f.run);
  assert.deepEqual(f.calls.map((c) => c.file), [join(root, 'b', 'host-local'), join(root, 'b', 'host-local')]);
  assert.deepEqual(f.calls.map((c) => c.env.CNI_COMMAND), ['ADD', 'DEL']);
  for (const c of f.calls) {
    assert.equal(c.input, STDIN.toString());
    assert.deepEqual({ ...c.env, CNI_COMMAND: 'ADD' }, CALL.env);
  }
});

test('found as libcni finds it: the first directory of CNI_PATH holding a regular file of that name', () => {
  assert.equal(findPlugin('host-local', CALL.cniPath), join(root, 'b', 'host-local'));
  for (const [type, dirs, re] of [['static', CALL.cniPath, /failed to find IPAM plugin "static" in CNI_PATH \[/], ['dir-not-plugin', CALL.cniPath, /failed to find/], ['host-local', [], /CNI_PATH is empty/]] as const) {
    assert.throws(() => findPlugin(type, dirs), (e: unknown) => code(e).code === 7 && re.test(code(e).msg));
  }
});

test('failures: the plugin\'s own code, msg and details; else its stderr; never lost', async () => {
  const cases: [Partial<ToolResult>, number, RegExp, string?][] = [
    [{ exitCode: 1, stdout: '{"code":999,"msg":"no IP addresses available in range set","details":"198.18.64.1-198.18.64.2"}' }, 999, /^IPAM plugin host-local failed \(ADD\): no IP addresses available/, '198.18.64.1-198.18.64.2'],
    [{ exitCode: 1, stdout: '{"code":7,"msg":"bad range"}' }, 7, /bad range/],
    [{ exitCode: 1, stdout: '', stderr: 'panic: oops' }, 107, /failed \(ADD\): panic: oops/],
    [{ exitCode: 2, stdout: '', stderr: '' }, 107, /with no error message \(exit status 2\)/],
    [{ exitCode: 1, stdout: 'not json' }, 107, /could not be read: not json/],
    [{ exitCode: -1, spawnError: '/x killed by SIGKILL' }, 107, /killed by SIGKILL/],
    [{ exitCode: 0, stdout: 'garbage' }, 107, /not JSON/],
    [{ exitCode: 0, stdout: '{"cniVersion":"0.4.0","dns":{}}' }, 107, /returned no IP configuration/],
    [{ exitCode: 0, stdout: '{"ips":[{"address":"bad"}]}' }, 6, /the result of IPAM plugin host-local\.ips\[0\]/],
  ];
  for (const [r, want, re, details] of cases) {
    await assert.rejects(delegateAdd(CALL, fake(r).run), (e: unknown) => {
      const b = code(e);
      assert.equal(b.code, want, b.msg);
      assert.match(b.msg, re);
      if (details !== undefined) assert.equal(b.details, details);
      return true;
    });
  }
  await assert.rejects(delegateDel(CALL, fake({ exitCode: 1, stdout: '{"code":11,"msg":"busy"}' }).run), (e: unknown) => code(e).code === 11 && /failed \(DEL\)/.test(code(e).msg));
});

test('what a delegated plugin gives must fit the network batchbridge set up', () => {
  const net = parseNetConfig({ cniVersion: '1.0.0', name: 'bbnet', type: 'batchbridge-cni', isGateway: true, ipam: { type: 'host-local', ranges: [[{ subnet: '198.18.64.0/24' }], [{ subnet: 'fd00:64::/64' }]] } });
  const ok = { interfaces: [], routes: [], dns: {} };
  checkIpamResult(net, { ...ok, ips: [{ address: '198.18.64.9/24' }, { address: 'fd00:64::9/64' }] }, 'host-local');
  const bad: [string[], RegExp][] = [
    [['10.0.0.9/24'], /gave 10\.0\.0\.9\/24, which is in none of the network's subnets \(198\.18\.64\.0\/24, fd00:64::\/64\)/],
    [['198.18.64.9/24', '198.18.64.10/24'], /more than one IPv4 address/],
    [['fd00:64::9/64'], /no IPv4 address/],
  ];
  for (const [ips, re] of bad) {
    assert.throws(() => checkIpamResult(net, { ...ok, ips: ips.map((address) => ({ address })) }, 'host-local'), (e: unknown) => code(e).code === 7 && re.test(code(e).msg));
  }
});
