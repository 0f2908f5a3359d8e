// CNI_ARGS by libcni's rules, and every error with its CNI code (4: an invalid variable).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseCniArgs } from '../../src/cni/cni-args.js';
import { cniErrorBody } from '../../src/cni/cni-error.js';

function code4(text: string, re: RegExp): void {
  assert.throws(() => parseCniArgs(text), (e: unknown) => {
    const body = cniErrorBody(e);
    assert.equal(body.code, 4, `${text}: ${body.msg}`);
    assert.match(body.msg, re, text);
    assert.match(body.msg, /CNI_ARGS/, 'the spec wants the variable named');
    return true;
  });
}

test("containerd's CNI_ARGS: K8S_* kept, IgnoreUnknown honoured", () => {
  const a = parseCniArgs('K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=1-2;IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0');
  assert.equal(a.ignoreUnknown, true);
  assert.deepEqual(a.k8s, { K8S_POD_INFRA_CONTAINER_ID: 'abc', K8S_POD_UID: '1-2', K8S_POD_NAMESPACE: 'default', K8S_POD_NAME: 'web-0' });
  assert.deepEqual([a.ips, a.mac, a.ignored], [[], null, []]);
  assert.deepEqual(parseCniArgs(''), { ignoreUnknown: false, ips: [], mac: null, k8s: {}, ignored: [] });
});

test('IP= (one address per family, prefix allowed) and MAC=', () => {
  assert.deepEqual(parseCniArgs('IP=198.18.64.9').ips, [{ family: 4, ip: '198.18.64.9' }]);
  assert.deepEqual(parseCniArgs('IP=198.18.64.9/24,fd00:0::9').ips, [{ family: 4, ip: '198.18.64.9' }, { family: 6, ip: 'fd00::9' }]);
  assert.equal(parseCniArgs('MAC=02:AA:bb:cc:dd:ee').mac, '02:aa:bb:cc:dd:ee');
  assert.equal(parseCniArgs('IP=198.18.64.1;IP=198.18.64.2').ips[0]?.ip, '198.18.64.2', 'the later pair wins');
});

test('unknown keys: refused without IgnoreUnknown, collected with it (in any position, any case of true)', () => {
  code4('FOO=bar', /unknown CNI_ARGS "FOO=bar".*IgnoreUnknown=1/);
  code4('IgnoreUnknown=0;FOO=bar', /unknown CNI_ARGS/);
  assert.deepEqual(parseCniArgs('FOO=bar;IgnoreUnknown=TRUE').ignored, ['FOO=bar']);
  assert.deepEqual(parseCniArgs('IgnoreUnknown=true;k8s_lower=x').ignored, ['k8s_lower=x'], 'K8S_ keys are upper case');
});

test('every malformed CNI_ARGS is code 4 and names CNI_ARGS', () => {
  code4('FOO', /pair "FOO": expected KEY=VALUE/);
  code4('A=1=2', /pair "A=1=2"/);
  code4('IP=1.2.3.4;', /pair ""/);
  code4('IgnoreUnknown=yes', /expected 1, true, 0 or false/);
  code4('IP=300.1.1.1', /invalid CNI_ARGS IP/);
  code4('IP=198.18.0.1,198.18.0.2', /more than one IPv4 address/);
  code4('IP=::ffff:1.2.3.4', /IPv4-mapped/);
  code4('MAC=01:00:5e:00:00:01', /multicast/);
  code4('MAC=zz', /invalid MAC address/);
  code4(`K8S_POD_NAME=${'x'.repeat(70_000)}`, /longer than 65536 bytes/);
});
