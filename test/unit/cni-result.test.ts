// Results in the shape of each version: the key sets are the spec's (SPEC.md at spec-v0.3.1,
// spec-v0.4.0, spec-v1.0.0, spec-v1.1.0), decoding takes any of them back.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cniErrorBody } from '../../src/cni/cni-error.js';
import { buildAddResult, decodeResult, encodeResult, resultObject, type CniResult } from '../../src/cni/result.js';
import { SUPPORTED_VERSIONS, type CniVersion } from '../../src/cni/version.js';

// The spec's field sets, by version.
const SPEC: Record<CniVersion, { top: string[]; iface: string[]; ip: string[]; route: string[] }> = {
  '0.3.0': { top: ['cniVersion', 'interfaces', 'ips', 'routes', 'dns'], iface: ['name', 'mac', 'sandbox'], ip: ['version', 'interface', 'address', 'gateway'], route: ['dst', 'gw'] },
  '0.3.1': { top: ['cniVersion', 'interfaces', 'ips', 'routes', 'dns'], iface: ['name', 'mac', 'sandbox'], ip: ['version', 'interface', 'address', 'gateway'], route: ['dst', 'gw'] },
  '0.4.0': { top: ['cniVersion', 'interfaces', 'ips', 'routes', 'dns'], iface: ['name', 'mac', 'sandbox'], ip: ['version', 'interface', 'address', 'gateway'], route: ['dst', 'gw'] },
  '1.0.0': { top: ['cniVersion', 'interfaces', 'ips', 'routes', 'dns'], iface: ['name', 'mac', 'sandbox'], ip: ['interface', 'address', 'gateway'], route: ['dst', 'gw'] },
  '1.1.0': { top: ['cniVersion', 'interfaces', 'ips', 'routes', 'dns'], iface: ['name', 'mac', 'mtu', 'sandbox', 'socketPath', 'pciID'], ip: ['interface', 'address', 'gateway'], route: ['dst', 'gw', 'mtu', 'advmss', 'priority', 'table', 'scope'] },
};

/** Every field set, so that each version's encoder shows which it keeps. */
const FULL: CniResult = {
  interfaces: [
    { name: 'bbcni0', mac: '02:42:aa:bb:cc:dd', mtu: 1400 },
    { name: 'veth1234567', mac: '5e:00:00:00:00:01', mtu: 1400 },
    { name: 'eth0', mac: '02:42:c6:12:40:05', mtu: 1400, sandbox: '/var/run/netns/cni-1', socketPath: '/run/x.sock', pciID: '0000:00:01.0' },
  ],
  ips: [
    { address: '198.18.64.5/24', gateway: '198.18.64.1', interface: 2 },
    { address: 'fd00:64::5/64', gateway: 'fd00:64::1', interface: 2 },
  ],
  routes: [{ dst: '0.0.0.0/0', gw: '198.18.64.1', mtu: 1400, advmss: 1360, priority: 10, table: 0, scope: 0 }],
  dns: { nameservers: ['198.18.64.1'], domain: 'local', search: ['svc'], options: ['ndots:2'] },
};

const keys = (o: unknown): string[] => Object.keys(o as object).sort();

test('each version gets exactly its own field set', () => {
  for (const v of SUPPORTED_VERSIONS) {
    const o = resultObject(FULL, v) as { interfaces: object[]; ips: object[]; routes: object[]; cniVersion: string };
    const spec = SPEC[v];
    assert.equal(o.cniVersion, v);
    assert.deepEqual(keys(o), [...spec.top].sort(), `${v} top`);
    assert.deepEqual(keys(o.interfaces[2]), [...spec.iface].sort(), `${v} container interface`);
    for (const ip of o.ips) assert.deepEqual(keys(ip), [...spec.ip].sort(), `${v} ip`);
    assert.deepEqual(keys(o.routes[0]), [...spec.route].sort(), `${v} route`);
    assert.ok(!('sandbox' in (o.interfaces[0] as object)), 'host interfaces have no sandbox');
  }
  const old = resultObject(FULL, '0.3.1') as { ips: { version: string }[] };
  assert.deepEqual(old.ips.map((i) => i.version), ['4', '6']);
});

test('empty lists and an empty dns are left out; table/scope 0 kept in 1.1.0', () => {
  const bare: CniResult = { interfaces: [], ips: [], routes: [], dns: {} };
  for (const v of SUPPORTED_VERSIONS) assert.equal(encodeResult(bare, v), `{"cniVersion":"${v}"}\n`);
  const r = resultObject({ ...bare, routes: [{ dst: '0.0.0.0/0', table: 0, scope: 0, mtu: 0 }] }, '1.1.0') as { routes: object[] };
  assert.deepEqual(r.routes[0], { dst: '0.0.0.0/0', table: 0, scope: 0 });
});

test('the ADD result is the reference bridge plugin\'s: bridge, host veth, container interface with sandbox; ips on interface 2', () => {
  const r = buildAddResult({
    bridge: { name: 'bbcni0', mac: '02:42:aa:bb:cc:dd' },
    hostVeth: { name: 'veth1234567', mac: '5e:00:00:00:00:01' },
    container: { name: 'eth0', mac: '02:42:c6:12:40:05', sandbox: '/proc/4242/ns/net' },
    ips: [{ address: '198.18.64.5/24', gateway: '198.18.64.1' }],
    routes: [{ dst: '0.0.0.0/0', gw: '198.18.64.1' }],
    dns: {},
  });
  assert.deepEqual(JSON.parse(encodeResult(r, '0.4.0')), {
    cniVersion: '0.4.0',
    interfaces: [{ name: 'bbcni0', mac: '02:42:aa:bb:cc:dd' }, { name: 'veth1234567', mac: '5e:00:00:00:00:01' }, { name: 'eth0', mac: '02:42:c6:12:40:05', sandbox: '/proc/4242/ns/net' }],
    ips: [{ version: '4', interface: 2, address: '198.18.64.5/24', gateway: '198.18.64.1' }],
    routes: [{ dst: '0.0.0.0/0', gw: '198.18.64.1' }],
  });
});

test('decoding takes every version\'s shape back to the same result', () => {
  for (const v of SUPPORTED_VERSIONS) {
    const back = decodeResult(JSON.parse(encodeResult(FULL, v)), 'prevResult');
    const again = resultObject(back, v);
    assert.deepEqual(again, resultObject(FULL, v), v);
  }
  // What an IPAM plugin answers: no interfaces, no interface index.
  const ipam = decodeResult({ cniVersion: '0.4.0', ips: [{ version: '4', address: '198.18.64.9/24', gateway: '198.18.64.1' }], dns: {} }, 'IPAM result');
  assert.deepEqual(ipam, { interfaces: [], ips: [{ address: '198.18.64.9/24', gateway: '198.18.64.1' }], routes: [], dns: {} });
  assert.deepEqual(decodeResult({ ips: [{ address: 'fd00:64:0::9/64' }], routes: [{ dst: '198.18.0.0/15' }], extra: 1 }, 'x').ips, [{ address: 'fd00:64::9/64' }], 'canonical text; unknown keys ignored');
});

test('an unreadable result is code 6 and says where', () => {
  const bad: [unknown, RegExp][] = [
    ['x', /prevResult must be an object/],
    [{ interfaces: 'x' }, /prevResult\.interfaces must be a list/],
    [{ interfaces: [{}] }, /interfaces\[0\]\.name is required/],
    [{ ips: [{ address: '198.18.64.5' }] }, /ips\[0\]: invalid address .*CIDR/],
    [{ ips: [{ address: '198.18.64.5/24', gateway: 'fd00::1' }] }, /ips\[0\]: invalid gateway/],
    [{ ips: [{ address: '198.18.64.5/24', interface: 3 }] }, /ips\[0\]\.interface 3 is not an index/],
    [{ routes: [{ gw: '198.18.64.1' }] }, /routes\[0\]\.dst is required/],
    [{ routes: [{ dst: '0.0.0.0/0', mtu: -1 }] }, /routes\[0\]\.mtu must be a whole number/],
    [{ dns: { nameservers: ['x'] } }, /dns\.nameservers\[0\]/],
  ];
  for (const [raw, re] of bad) {
    assert.throws(() => decodeResult(raw, 'prevResult'), (e: unknown) => {
      const b = cniErrorBody(e);
      assert.equal(b.code, 6, b.msg);
      assert.match(b.msg, re);
      return true;
    });
  }
});
