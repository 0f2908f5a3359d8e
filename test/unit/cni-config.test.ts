// A CNI network config → the network: the mapping onto the Docker options (and so the same
// validation and texts as `docker network create`), what Docker has no words for, every error
// with its CNI code.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cniErrorBody } from '../../src/cni/cni-error.js';
import { networkIdFor, parseNetConfig } from '../../src/cni/net-config.js';
import { OPT, parseNetworkSpec } from '../../src/api/network-options.js';
import { parseNetworkId } from '../../src/domain/names.js';

const BASE = { cniVersion: '1.0.0', name: 'bbnet', type: 'batchbridge-cni', ipam: { ranges: [[{ subnet: '198.18.64.0/24' }]] } };
type Conf = Record<string, unknown>;

function fails(conf: Conf, code: number, re: RegExp): string {
  let msg = '';
  assert.throws(() => parseNetConfig(conf), (e: unknown) => {
    const b = cniErrorBody(e);
    msg = b.msg;
    assert.equal(b.code, code, `${JSON.stringify(conf).slice(0, 200)} → ${b.msg}`);
    assert.match(b.msg, re);
    return true;
  });
  return msg;
}

/** The text Docker's own validation gives for the same values. */
function dockerText(generic: Record<string, unknown>, v4: unknown[], v6: unknown[] = []): string {
  const id = networkIdFor('bbnet');
  try {
    parseNetworkSpec({ NetworkID: id, Options: { [OPT.generic]: { [OPT.masquerade]: false, [OPT.inhibitIpv4]: true, [OPT.enableIpv6]: v6.length > 0, ...generic } }, IPv4Data: v4, IPv6Data: v6 });
  } catch (e) {
    return (e as Error).message.split(id).join('"bbnet"');
  }
  assert.fail('Docker accepted it');
}

test("the issue's example config: every field lands where Docker's option would put it", () => {
  const n = parseNetConfig({
    cniVersion: '1.1.0', name: 'bbnet', type: 'batchbridge-cni', socket: '/run/batchbridge/cni.sock', bridge: 'bbcni0',
    isGateway: true, isDefaultGateway: true, ipMasq: true, mtu: 1400, hairpinMode: true,
    ipam: { type: 'batchbridge', ranges: [[{ subnet: '198.18.64.0/24', gateway: '198.18.64.254' }]], routes: [{ dst: '0.0.0.0/0' }] },
    capabilities: { portMappings: true, ips: true, mac: true },
  });
  assert.equal(n.spec.bridge, 'bbcni0');
  assert.equal(n.spec.mtu, 1400);
  assert.equal(n.spec.masquerade, true);
  assert.equal(n.spec.inhibitIpv4, false);
  assert.equal(n.spec.ipv4.ip, '198.18.64.254');
  assert.equal(n.spec.ipv4.network, '198.18.64.0/24');
  assert.equal(n.spec.gatewayIpv4, '198.18.64.254');
  assert.equal(n.spec.enableIpv6, false);
  assert.deepEqual([n.isGateway, n.isDefaultGateway, n.hairpinMode, n.socket], [true, true, true, '/run/batchbridge/cni.sock']);
  assert.deepEqual(n.capabilities, { portMappings: true, ips: true, mac: true });
  assert.deepEqual(n.routes, [{ dst: '0.0.0.0/0' }], 'the configured default route is kept as given');
  assert.equal(n.ipam.kind, 'daemon');
});

test('defaults are the reference bridge plugin\'s: no gateway, no masquerade, no hairpin; the bridge named from the id', () => {
  const n = parseNetConfig(BASE);
  assert.deepEqual([n.isGateway, n.isDefaultGateway, n.hairpinMode, n.spec.masquerade, n.spec.inhibitIpv4, n.spec.mtu], [false, false, false, false, true, 0]);
  assert.equal(n.spec.bridge, `bb-${n.id.slice(0, 12)}`);
  assert.deepEqual(n.routes, []);
  assert.deepEqual(n.capabilities, { portMappings: false, ips: false, mac: false });
  const gw = parseNetConfig({ ...BASE, isDefaultGateway: true, ipam: { ranges: [[{ subnet: '198.18.64.0/24' }], [{ subnet: 'fd00:64::/64' }]] } });
  assert.equal(gw.isGateway, true, 'isDefaultGateway implies isGateway');
  assert.deepEqual(gw.routes, [{ dst: '0.0.0.0/0', gw: '198.18.64.1' }, { dst: '::/0', gw: 'fd00:64::1' }]);
  assert.equal(gw.spec.enableIpv6, true);
});

test('the network id and bridge MAC are stable, valid and distinct per name', () => {
  const a = parseNetConfig(BASE);
  const b = parseNetConfig({ ...BASE, ipMasq: true });
  assert.equal(a.id, b.id);
  assert.equal(a.spec.bridgeMac, b.spec.bridgeMac);
  assert.match(a.id, /^[0-9a-f]{64}$/);
  assert.equal(parseNetworkId(a.id), a.id);
  assert.match(a.spec.bridgeMac, /^02:42(:[0-9a-f]{2}){4}$/);
  assert.notEqual(networkIdFor('bbnet'), networkIdFor('bbnet2'));
  assert.deepEqual(parseNetConfig(BASE).spec, a.spec, 'parsing is deterministic, so configs can be compared');
});

test('Docker-shaped values fail with the very text Docker gives (code 7)', () => {
  const v4 = [{ Pool: '198.18.64.0/24' }];
  const cases: [Conf, string][] = [
    [{ ...BASE, mtu: 20 }, dockerText({ [OPT.mtu]: 20 }, v4)],
    [{ ...BASE, mtu: 70000 }, dockerText({ [OPT.mtu]: 70000 }, v4)],
    [{ ...BASE, bridge: 'a-name-too-long-x' }, dockerText({ [OPT.bridgeName]: 'a-name-too-long-x' }, v4)],
    [{ ...BASE, bridge: 'br;rm' }, dockerText({ [OPT.bridgeName]: 'br;rm' }, v4)],
    [{ ...BASE, ipam: { ranges: [[{ subnet: '198.18.64.0/24', gateway: '198.18.65.1' }]] } }, dockerText({}, [{ Pool: '198.18.64.0/24', Gateway: '198.18.65.1' }])],
    [{ ...BASE, ipam: { ranges: [[{ subnet: '198.18.64.0/31' }]] } }, dockerText({}, [{ Pool: '198.18.64.0/31' }])],
    [{ ...BASE, ipam: { ranges: [[{ subnet: '224.1.0.0/24' }]] } }, dockerText({}, [{ Pool: '224.1.0.0/24' }])],
    [{ ...BASE, ipam: { ranges: [[{ subnet: '198.18.64.0/24' }], [{ subnet: '198.18.65.0/24' }]] } }, dockerText({}, [{ Pool: '198.18.64.0/24' }, { Pool: '198.18.65.0/24' }])],
    [{ ...BASE, isGateway: true, ipam: { ranges: [[{ subnet: '198.18.64.0/24' }], [{ subnet: 'fe80::/10' }]] } }, dockerText({}, v4, [{ Pool: 'fe80::/10' }])],
  ];
  for (const [conf, text] of cases) {
    assert.match(text, /\w/);
    const msg = fails(conf, 7, /./);
    assert.equal(msg, text);
  }
  assert.match(fails({ ...BASE, ipam: { ranges: [[{ subnet: '198.18.64.0/24', gateway: '198.18.65.1' }]] } }, 7, /./), /of network "bbnet"/, 'named, not by id');
});

test('host-local\'s older single-range form is the same as ranges', () => {
  const old = parseNetConfig({ ...BASE, ipam: { type: 'batchbridge', subnet: '198.18.64.0/24', gateway: '198.18.64.1', rangeStart: '198.18.64.10', rangeEnd: '198.18.64.20' } });
  const now = parseNetConfig({ ...BASE, ipam: { ranges: [[{ subnet: '198.18.64.0/24', gateway: '198.18.64.1', rangeStart: '198.18.64.10', rangeEnd: '198.18.64.20' }]] } });
  assert.deepEqual(old.ipam, now.ipam);
  assert.deepEqual(old.spec, now.spec);
  const r = now.ipam.ranges[0];
  assert.deepEqual([r?.rangeStart, r?.rangeEnd, r?.gateway], ['198.18.64.10', '198.18.64.20', '198.18.64.1']);
});

test('ipam errors: ranges, routes, types (codes 7 and 2)', () => {
  const ipam = (i: Conf): Conf => ({ ...BASE, ipam: i });
  fails(ipam({ ranges: [[{ subnet: '198.18.64.0/24', rangeStart: '198.18.65.1' }]] }), 7, /invalid ipam\.ranges\[0\]\[0\]\.rangeStart 198\.18\.65\.1: not in subnet 198\.18\.64\.0\/24/);
  fails(ipam({ ranges: [[{ subnet: '198.18.64.0/24', rangeStart: '198.18.64.20', rangeEnd: '198.18.64.10' }]] }), 7, /rangeStart 198\.18\.64\.20 is after rangeEnd/);
  fails(ipam({ ranges: [[{ subnet: '198.18.64.0/24', rangeEnd: 'fd00::1' }]] }), 7, /expected an IPv4 address/);
  fails(ipam({ ranges: [[{ gateway: '198.18.64.1' }]] }), 7, /subnet is required/);
  fails(ipam({ ranges: [[]] }), 7, /non-empty list of ranges/);
  fails(ipam({ ranges: 'x' }), 7, /list of range sets/);
  fails(ipam({ ranges: [[{ subnet: 'fd00:64::/64' }]] }), 7, /must give an IPv4 subnet/);
  fails({ ...BASE, ipam: undefined }, 7, /must give an IPv4 subnet/);
  fails(ipam({ ranges: [[{ subnet: '198.18.64.0/24' }]], routes: [{ dst: '0.0.0.0/0', gw: 'fd00::1' }] }), 7, /routes\[0\]\.gw.*expected an IPv4/);
  fails(ipam({ ranges: [[{ subnet: '198.18.64.0/24' }]], routes: [{ gw: '198.18.64.1' }] }), 7, /routes\[0\]\.dst is required/);
  fails(ipam({ ranges: [[{ subnet: '198.18.64.0/24' }]], routes: [{ dst: '0.0.0.0/0', mtu: 1400 }] }), 2, /unsupported field ipam\.routes\[0\]\.mtu: 1400/);
  fails(ipam({ ranges: [[{ subnet: '198.18.64.0/24' }]], dataDir: '/var/lib/x' }), 2, /unsupported field ipam\.dataDir: "\/var\/lib\/x"/);
  fails(ipam({ type: '../../bin/sh', ranges: [[{ subnet: '198.18.64.0/24' }]] }), 7, /invalid ipam\.type/);
  fails(ipam({ type: 'dhcp' }), 7, /ipam of type "dhcp" must list its IPv4 subnet/);
  fails({ ...BASE, ipam: [] }, 7, /ipam must be an object/);
});

test('a delegated IPAM keeps its own keys; its ranges still set up the network', () => {
  const n = parseNetConfig({ ...BASE, ipam: { type: 'host-local', dataDir: '/tmp/x', resolvConf: '/etc/resolv.conf', ranges: [[{ subnet: '198.18.64.0/24' }]], routes: [{ dst: '0.0.0.0/0', mtu: 1400 }] } });
  assert.equal(n.ipam.kind, 'delegated');
  assert.equal(n.ipam.kind === 'delegated' ? n.ipam.type : '', 'host-local');
  assert.equal(n.spec.ipv4.network, '198.18.64.0/24');
});

test('fields batchbridge-cni does not implement are code 2 and named with their value; off is fine', () => {
  fails({ ...BASE, vlan: 100 }, 2, /^unsupported field vlan: 100 /);
  fails({ ...BASE, promiscMode: true }, 2, /unsupported field promiscMode: true/);
  fails({ ...BASE, somethingElse: { a: 1 } }, 2, /unsupported field somethingElse: \{"a":1\}/);
  parseNetConfig({ ...BASE, vlan: 0, promiscMode: false, forceAddress: false, macspoofchk: false, 'cni.dev/future': 1, args: { cni: {} } });
  fails({ ...BASE, capabilities: { bandwidth: true } }, 2, /unsupported capability bandwidth: true \(batchbridge-cni implements portMappings, ips, mac\)/);
  assert.deepEqual(parseNetConfig({ ...BASE, capabilities: { aliases: false, mac: true } }).capabilities, { portMappings: false, ips: false, mac: true });
  fails({ ...BASE, capabilities: { mac: 'yes' } }, 7, /capabilities\.mac must be true or false/);
  fails({ ...BASE, isGateway: false, ipam: { ranges: [[{ subnet: '198.18.64.0/24' }], [{ subnet: 'fd00:64::/64' }]] } }, 2, /isGateway: false with an IPv6 range/);
});

test('the other config errors are code 7', () => {
  fails({ ...BASE, name: undefined }, 7, /missing network name/);
  fails({ ...BASE, name: '-bad' }, 7, /invalid network name "-bad"/);
  fails({ ...BASE, name: 'a/b' }, 7, /invalid network name/);
  fails({ ...BASE, type: '' }, 7, /missing plugin type/);
  fails({ ...BASE, ipMasq: 'true' }, 7, /ipMasq must be true or false, got "true"/);
  fails({ ...BASE, hairpinMode: 1 }, 7, /hairpinMode must be true or false/);
  fails({ ...BASE, mtu: 1400.5 }, 7, /mtu must be a whole number, got 1400\.5/);
  fails({ ...BASE, mtu: '1400' }, 7, /mtu must be a whole number/);
  fails({ ...BASE, bridge: 5 }, 7, /bridge must be a string/);
  fails({ ...BASE, socket: 'relative.sock' }, 7, /socket must be an absolute path/);
  fails({ ...BASE, dns: { nameservers: ['not-an-ip'] } }, 7, /invalid dns\.nameservers\[0\]/);
  fails({ ...BASE, dns: { servers: ['1.1.1.1'] } }, 2, /unsupported field dns\.servers/);
  assert.deepEqual(parseNetConfig({ ...BASE, dns: { nameservers: ['198.18.64.1'], search: ['svc.local'], domain: 'local', options: ['ndots:2'] } }).dns, {
    nameservers: ['198.18.64.1'], domain: 'local', search: ['svc.local'], options: ['ndots:2'],
  });
});
