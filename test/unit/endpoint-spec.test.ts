// MAC and IPv6 derivation (spec 3.3 steps 6 and 8) and what CreateEndpoint answers with (spec 0.3).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseCidr } from '../../src/domain/addr.js';
import { resolveEndpointAddresses } from '../../src/api/endpoint-request.js';
import { OPT, parseNetworkSpec } from '../../src/api/network-options.js';
import { ipv6FromMac, macFromIpv4, parseMac } from '../../src/domain/endpoint-spec.js';
import { parseNetworkId } from '../../src/domain/names.js';
import type { NetworkSpec } from '../../src/domain/network-spec.js';
import { InvalidAddressError, InvalidRequestError, NotSupportedError } from '../../src/errors.js';

const ID = parseNetworkId('feedfacecafe0001');

function net(opts: { v6?: string; enableIpv6?: boolean; inhibit?: boolean } = {}): NetworkSpec {
  const generic: Record<string, unknown> = {};
  if (opts.inhibit === true) generic[OPT.inhibitIpv4] = 'true';
  return parseNetworkSpec({
    NetworkID: ID,
    Options: { [OPT.generic]: generic, [OPT.enableIpv6]: opts.enableIpv6 ?? opts.v6 !== undefined },
    IPv4Data: [{ Pool: '198.18.20.0/24', Gateway: '198.18.20.1/24' }],
    IPv6Data: opts.v6 === undefined ? [] : [{ Pool: opts.v6 }],
  });
}

describe('macFromIpv4', () => {
  test('02:42 followed by the four address bytes', () => {
    assert.equal(macFromIpv4('198.18.20.2'), '02:42:c6:12:14:02');
    assert.equal(macFromIpv4('172.18.0.2'), '02:42:ac:12:00:02');
    assert.equal(macFromIpv4('198.19.255.254'), '02:42:c6:13:ff:fe');
  });
});

describe('ipv6FromMac', () => {
  test('the spec example: /80 network + MAC', () => {
    const r = ipv6FromMac(parseCidr('2001:db8:2600:2700:2800::/80', 'n', 6), 'aa:bb:cc:dd:ee:ff', ID);
    assert.equal(r.ip, '2001:db8:2600:2700:2800:aabb:ccdd:eeff');
    assert.equal(r.prefix, 80);
    assert.equal(r.network, '2001:db8:2600:2700:2800::/80');
  });

  test('the network address is used, not the gateway host bits', () => {
    const r = ipv6FromMac(parseCidr('fd00:1:2:3::1/64', 'n', 6), '02:42:c6:12:14:02', ID);
    assert.equal(r.ip, 'fd00:1:2:3:0:242:c612:1402');
    assert.equal(r.prefix, 64);
  });

  test('prefixes longer than /80 are refused with the built-in wording', () => {
    for (const p of ['fd00::/81', 'fd00::/96', 'fd00::/120']) {
      assert.throws(
        () => ipv6FromMac(parseCidr(p, 'n', 6), 'aa:bb:cc:dd:ee:ff', ID),
        (e: unknown) =>
          e instanceof NotSupportedError &&
          e.message === `Cannot self generate an IPv6 address on network ${ID}: At least 48 host bits are needed.`,
      );
    }
  });
});

describe('parseMac', () => {
  test('lower-cases, refuses multicast, zero and malformed', () => {
    assert.equal(parseMac('AA:BB:CC:DD:EE:F0'), 'aa:bb:cc:dd:ee:f0');
    assert.throws(() => parseMac('01:00:5e:00:00:01'), InvalidAddressError);
    assert.throws(() => parseMac('00:00:00:00:00:00'), InvalidAddressError);
    assert.throws(() => parseMac('aa:bb:cc:dd:ee'), InvalidAddressError);
    assert.throws(() => parseMac('aa-bb-cc-dd-ee-ff'), InvalidAddressError);
    assert.throws(() => parseMac('aa:bb:cc:dd:ee:ff\n'), InvalidAddressError);
  });
});

describe('resolveEndpointAddresses', () => {
  test('IPv4 only, no MAC: the MAC is derived and returned; Address is never echoed', () => {
    const r = resolveEndpointAddresses(net(), { Address: '198.18.20.2/24' }, undefined);
    assert.equal(r.ipv4.ip, '198.18.20.2');
    assert.equal(r.mac, '02:42:c6:12:14:02');
    assert.equal(r.ipv6, null);
    assert.deepEqual(r.reply, { MacAddress: '02:42:c6:12:14:02' });
    assert.equal('Address' in r.reply, false);
  });

  test('a MAC given in the request is not returned', () => {
    const r = resolveEndpointAddresses(net(), { Address: '198.18.20.2/24', MacAddress: 'AA:BB:CC:DD:EE:F0' }, undefined);
    assert.equal(r.mac, 'aa:bb:cc:dd:ee:f0');
    assert.deepEqual(r.reply, {});
  });

  test('an empty MacAddress counts as none', () => {
    const r = resolveEndpointAddresses(net(), { Address: '198.18.20.3/24', MacAddress: '' }, undefined);
    assert.deepEqual(r.reply, { MacAddress: '02:42:c6:12:14:03' });
  });

  test('the endpoint macaddress option (base64 net.HardwareAddr) wins over derivation, and is returned', () => {
    const b64 = Buffer.from([0x02, 0x11, 0x22, 0x33, 0x44, 0x55]).toString('base64');
    const r = resolveEndpointAddresses(net(), { Address: '198.18.20.2/24' }, b64);
    assert.equal(r.mac, '02:11:22:33:44:55');
    assert.deepEqual(r.reply, { MacAddress: '02:11:22:33:44:55' });
    assert.throws(() => resolveEndpointAddresses(net(), { Address: '198.18.20.2/24' }, 'not-base64!'), InvalidAddressError);
  });

  test('IPv6 enabled without a v6 subnet: derived from fe80::/64 and returned', () => {
    const r = resolveEndpointAddresses(net({ enableIpv6: true }), { Address: '198.18.20.2/24' }, undefined);
    assert.equal(r.ipv6?.ip, 'fe80::242:c612:1402');
    assert.equal(r.ipv6?.prefix, 64);
    assert.deepEqual(r.reply, { MacAddress: '02:42:c6:12:14:02', AddressIPv6: 'fe80::242:c612:1402/64' });
  });

  test('IPv6 derived from the network v6 subnet, with a given MAC', () => {
    const r = resolveEndpointAddresses(net({ v6: '2001:db8:2600:2700:2800::/80' }), { Address: '198.18.20.2/24', MacAddress: 'aa:bb:cc:dd:ee:ff' }, undefined);
    assert.deepEqual(r.reply, { AddressIPv6: '2001:db8:2600:2700:2800:aabb:ccdd:eeff/80' });
  });

  test('a v6 subnet longer than /80 cannot self-generate', () => {
    assert.throws(() => resolveEndpointAddresses(net({ v6: 'fd00:1::/96' }), { Address: '198.18.20.2/24' }, undefined), NotSupportedError);
  });

  test('an IPv6 address given by IPAM is used and not echoed', () => {
    const r = resolveEndpointAddresses(net({ v6: 'fd00:20::/64' }), { Address: '198.18.20.2/24', AddressIPv6: 'fd00:20::2/64' }, undefined);
    assert.equal(r.ipv6?.ip, 'fd00:20::2');
    assert.deepEqual(r.reply, { MacAddress: '02:42:c6:12:14:02' });
    assert.equal('AddressIPv6' in r.reply, false);
  });

  test('IPv6 disabled: no IPv6, and a given one is refused', () => {
    assert.equal(resolveEndpointAddresses(net(), { Address: '198.18.20.2/24' }, undefined).ipv6, null);
    assert.throws(() => resolveEndpointAddresses(net(), { Address: '198.18.20.2/24', AddressIPv6: 'fd00:20::2/64' }, undefined), InvalidAddressError);
  });

  test('a given IPv6 address outside the v6 subnet', () => {
    assert.throws(
      () => resolveEndpointAddresses(net({ v6: 'fd00:20::/64' }), { Address: '198.18.20.2/24', AddressIPv6: 'fd00:21::2/64' }, undefined),
      /not in subnet fd00:20::\/64/,
    );
  });

  test('request errors', () => {
    assert.throws(() => resolveEndpointAddresses(net(), null, undefined), InvalidRequestError);
    assert.throws(() => resolveEndpointAddresses(net(), undefined, undefined), InvalidRequestError);
    assert.throws(() => resolveEndpointAddresses(net(), {}, undefined), InvalidRequestError);
    assert.throws(() => resolveEndpointAddresses(net(), { Address: '' }, undefined), InvalidRequestError);
    assert.throws(() => resolveEndpointAddresses(net(), { Address: '198.18.21.2/24' }, undefined), /not in subnet 198\.18\.20\.0\/24/);
    assert.throws(() => resolveEndpointAddresses(net(), { Address: '198.18.20.1/24' }, undefined), /it is the network's gateway/);
    // No IPAM hands these out (found by the scale fuzzer):
    assert.throws(() => resolveEndpointAddresses(net(), { Address: '198.18.20.0/24' }, undefined), /network or broadcast address/);
    assert.throws(() => resolveEndpointAddresses(net(), { Address: '198.18.20.255/24' }, undefined), /network or broadcast address/);
    assert.throws(() => resolveEndpointAddresses(net(), { Address: '198.18.20.7/25' }, undefined), /the network's prefix is \/24/);
    assert.throws(() => resolveEndpointAddresses(net(), { Address: 'fd00::2/64' }, undefined), InvalidAddressError);
    assert.throws(() => resolveEndpointAddresses(net(), { Address: '198.18.20.2/24', MacAddress: 5 }, undefined), InvalidRequestError);
    assert.throws(() => resolveEndpointAddresses(net({ v6: 'fd00:20::/64' }), { Address: '198.18.20.2/24', AddressIPv6: 6 }, undefined), InvalidRequestError);
  });

  test('with inhibit_ipv4 the gateway address may be given to a container', () => {
    const r = resolveEndpointAddresses(net({ inhibit: true }), { Address: '198.18.20.1/24' }, undefined);
    assert.equal(r.ipv4.ip, '198.18.20.1');
  });
});
