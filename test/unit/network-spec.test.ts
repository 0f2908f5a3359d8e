// parseNetworkSpec: every option of spec section 2.1 and every error of 2.3, plus conflictReason.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseCidr } from '../../src/domain/addr.js';
import { parseNetworkId, type IfName } from '../../src/domain/names.js';
import { OPT, parseGoBool, parseNetworkSpec } from '../../src/api/network-options.js';
import { conflictReason, type ConflictCandidate, type NetworkSpec } from '../../src/domain/network-spec.js';
import { BbError, InvalidAddressError, InvalidOptionError, InvalidRequestError, NotSupportedError } from '../../src/errors.js';

const ID = parseNetworkId('0123456789abcdef0123');

interface Req {
  generic?: Record<string, unknown>;
  top?: Record<string, unknown>;
  v4?: unknown[];
  v6?: unknown[];
}

function spec(r: Req = {}): NetworkSpec {
  const Options: Record<string, unknown> = { ...(r.top ?? {}) };
  if (r.generic !== undefined) Options[OPT.generic] = r.generic;
  return parseNetworkSpec({
    NetworkID: ID,
    Options,
    IPv4Data: r.v4 ?? [{ Pool: '198.18.20.0/24', Gateway: '198.18.20.1/24' }],
    IPv6Data: r.v6 ?? [],
  });
}

/** Asserts that fn throws `cls` with exactly `message` (or matching it). */
function throwsBb(fn: () => unknown, cls: abstract new (...a: never[]) => BbError, message: string | RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof cls, `expected ${cls.name}, got ${String(err)}`);
    if (typeof message === 'string') assert.equal(err.message, message);
    else assert.match(err.message, message);
    return true;
  });
}

describe('parseNetworkSpec defaults', () => {
  test('a plain request gives the built-in driver defaults', () => {
    const s = spec();
    assert.equal(s.id, ID);
    assert.equal(s.bridge, 'bb-0123456789ab');
    assert.match(s.bridgeMac, /^02:42(:[0-9a-f]{2}){4}$/);
    assert.equal(s.mtu, 0);
    assert.equal(s.icc, true);
    assert.equal(s.masquerade, true);
    assert.equal(s.hostBindingIpv4, '0.0.0.0');
    assert.equal(s.hostIpv4, null);
    assert.equal(s.inhibitIpv4, false);
    assert.equal(s.ifacePrefix, 'eth');
    assert.equal(s.internal, false);
    assert.equal(s.enableIpv6, false);
    assert.equal(s.gatewayModeIpv4, 'nat');
    assert.equal(s.gatewayModeIpv6, 'nat');
    assert.deepEqual(s.ipv4, { family: 4, ip: '198.18.20.1', prefix: 24, network: '198.18.20.0/24' });
    assert.equal(s.gatewayIpv4, '198.18.20.1');
    assert.equal(s.ipv6, null);
    assert.equal(s.gatewayIpv6, '');
  });

  test('no gateway from IPAM: the first host of the pool', () => {
    const s = spec({ v4: [{ Pool: '198.18.64.0/20' }] });
    assert.equal(`${s.ipv4.ip}/${s.ipv4.prefix}`, '198.18.64.1/20');
  });

  test('a gateway without a mask gets the pool prefix; a gateway with another mask too', () => {
    assert.equal(spec({ v4: [{ Pool: '198.18.20.0/24', Gateway: '198.18.20.254' }] }).ipv4.prefix, 24);
    const s = spec({ v4: [{ Pool: '198.18.20.0/24', Gateway: '198.18.20.9/32' }] });
    assert.equal(s.ipv4.ip, '198.18.20.9');
    assert.equal(s.ipv4.prefix, 24);
    assert.equal(s.ipv4.network, '198.18.20.0/24');
  });

  test('aux DefaultGatewayIPv4 becomes the Join gateway', () => {
    const s = spec({ v4: [{ Pool: '198.18.20.0/24', Gateway: '198.18.20.1/24', AuxAddresses: { DefaultGatewayIPv4: '198.18.20.254' } }] });
    assert.equal(s.gatewayIpv4, '198.18.20.254');
    assert.equal(s.ipv4.ip, '198.18.20.1');
    throwsBb(
      () => spec({ v4: [{ Pool: '198.18.20.0/24', AuxAddresses: { DefaultGatewayIPv4: '198.18.21.1' } }] }),
      InvalidAddressError,
      'default gateway ip must be part of the network',
    );
  });

  test('two networks get different bridge MACs', () => {
    assert.notEqual(spec().bridgeMac, spec().bridgeMac);
  });
});

describe('MTU', () => {
  test('valid values, 0 means kernel default', () => {
    assert.equal(spec({ generic: { [OPT.mtu]: '1400' } }).mtu, 1400);
    assert.equal(spec({ generic: { [OPT.mtu]: '0' } }).mtu, 0);
    assert.equal(spec({ generic: { [OPT.mtu]: '68' } }).mtu, 68);
    assert.equal(spec({ generic: { [OPT.mtu]: '65535' } }).mtu, 65535);
    assert.equal(spec({ generic: { [OPT.mtu]: 9000 } }).mtu, 9000);
  });

  test('negative MTU: the built-in driver wording', () => {
    throwsBb(() => spec({ generic: { [OPT.mtu]: '-2' } }), InvalidOptionError, 'invalid MTU number: -2');
  });

  test('non-numeric MTU: strconv.Atoi wording', () => {
    throwsBb(
      () => spec({ generic: { [OPT.mtu]: 'abc' } }),
      InvalidOptionError,
      'failed to parse com.docker.network.driver.mtu value: abc (strconv.Atoi: parsing "abc": invalid syntax)',
    );
    throwsBb(() => spec({ generic: { [OPT.mtu]: '1500.5' } }), InvalidOptionError, /strconv\.Atoi: parsing "1500\.5": invalid syntax/);
    throwsBb(() => spec({ generic: { [OPT.mtu]: '' } }), InvalidOptionError, /strconv\.Atoi/);
  });

  test('MTU a veth cannot take', () => {
    throwsBb(() => spec({ generic: { [OPT.mtu]: '67' } }), InvalidOptionError, /^invalid MTU number: 67 /);
    throwsBb(() => spec({ generic: { [OPT.mtu]: '65536' } }), InvalidOptionError, /^invalid MTU number: 65536 /);
    // IPv6 needs at least 1280
    throwsBb(() => spec({ top: { [OPT.enableIpv6]: true }, generic: { [OPT.mtu]: '1279' } }), InvalidOptionError, /^invalid MTU number: 1279 /);
    assert.equal(spec({ top: { [OPT.enableIpv6]: true }, generic: { [OPT.mtu]: '1280' } }).mtu, 1280);
  });
});

describe('boolean options', () => {
  const boolKeys = [OPT.icc, OPT.masquerade, OPT.inhibitIpv4] as const;

  test('Go ParseBool accepts exactly its twelve spellings', () => {
    for (const t of ['1', 't', 'T', 'TRUE', 'true', 'True']) assert.equal(parseGoBool('k', t), true, t);
    for (const f of ['0', 'f', 'F', 'FALSE', 'false', 'False']) assert.equal(parseGoBool('k', f), false, f);
    assert.equal(parseGoBool('k', true), true);
    assert.equal(parseGoBool('k', false), false);
  });

  test('a non-boolean: failed to parse … (strconv.ParseBool …)', () => {
    throwsBb(
      () => spec({ generic: { [OPT.icc]: 'yes' } }),
      InvalidOptionError,
      'failed to parse com.docker.network.bridge.enable_icc value: yes (strconv.ParseBool: parsing "yes": invalid syntax)',
    );
    for (const key of boolKeys) {
      for (const bad of ['yes', 'no', 'TrUe', '2', '', 'on']) {
        throwsBb(
          () => spec({ generic: { [key]: bad } }),
          InvalidOptionError,
          `failed to parse ${key} value: ${bad} (strconv.ParseBool: parsing ${JSON.stringify(bad)}: invalid syntax)`,
        );
      }
    }
    throwsBb(() => spec({ top: { [OPT.internal]: 'maybe' } }), InvalidOptionError, /^failed to parse com\.docker\.network\.internal value: maybe \(strconv\.ParseBool/);
    throwsBb(() => spec({ top: { [OPT.enableIpv6]: 'si' } }), InvalidOptionError, /^failed to parse com\.docker\.network\.enable_ipv6 value: si/);
  });

  test('enable_icc and enable_ip_masquerade', () => {
    assert.equal(spec({ generic: { [OPT.icc]: 'false' } }).icc, false);
    assert.equal(spec({ generic: { [OPT.icc]: 'T' } }).icc, true);
    assert.equal(spec({ generic: { [OPT.masquerade]: '0' } }).masquerade, false);
    assert.equal(spec({ generic: { [OPT.masquerade]: 'True' } }).masquerade, true);
  });

  test('inhibit_ipv4', () => {
    assert.equal(spec({ generic: { [OPT.inhibitIpv4]: 'true' } }).inhibitIpv4, true);
    assert.equal(spec({ generic: { [OPT.inhibitIpv4]: 'false' } }).inhibitIpv4, false);
  });

  test('default_bridge=true is refused, false is accepted', () => {
    throwsBb(() => spec({ generic: { [OPT.defaultBridge]: 'true' } }), NotSupportedError, /default_bridge is not supported/);
    assert.equal(spec({ generic: { [OPT.defaultBridge]: 'false' } }).bridge, 'bb-0123456789ab');
  });

  test('internal (top level)', () => {
    assert.equal(spec({ top: { [OPT.internal]: true } }).internal, true);
    assert.equal(spec({ top: { [OPT.internal]: 'true' } }).internal, true);
    assert.equal(spec({ top: { [OPT.internal]: false } }).internal, false);
  });

  test('enable_ipv6: the top-level value overrides the generic one', () => {
    assert.equal(spec({ generic: { [OPT.enableIpv6]: 'true' } }).enableIpv6, true);
    assert.equal(spec({ generic: { [OPT.enableIpv6]: 'true' }, top: { [OPT.enableIpv6]: false } }).enableIpv6, false);
    assert.equal(spec({ generic: { [OPT.enableIpv6]: 'false' }, top: { [OPT.enableIpv6]: true } }).enableIpv6, true);
    assert.equal(spec({ top: { [OPT.enableIpv6]: true } }).enableIpv6, true);
  });
});

describe('string options', () => {
  test('bridge name: accepted', () => {
    assert.equal(spec({ generic: { [OPT.bridgeName]: 'br-user' } }).bridge, 'br-user');
    assert.equal(spec({ generic: { [OPT.bridgeName]: 'a23456789012345' } }).bridge, 'a23456789012345'); // 15 bytes
    assert.equal(spec({ generic: { [OPT.bridgeName]: 'br_x.1-2' } }).bridge, 'br_x.1-2');
    assert.equal(spec({ generic: { [OPT.bridgeName]: '' } }).bridge, 'bb-0123456789ab');
  });

  test('bridge name: more than 15 bytes or a bad character is refused', () => {
    const bad = ['a234567890123456', 'br\nlink del x', 'br 0', 'br"0', "br'0", 'br/0', 'brü', 'bré', '.', '..', 'br\t0', 'br;x'];
    for (const name of bad) {
      throwsBb(() => spec({ generic: { [OPT.bridgeName]: name } }), InvalidOptionError, /^invalid bridge name .*: must be 1 to 15 characters of \[A-Za-z0-9_.-\]$/);
    }
  });

  test('an unknown generic option is refused', () => {
    throwsBb(
      () => spec({ generic: { 'com.docker.network.bridge.enable_sth': 'true' } }),
      InvalidOptionError,
      'unknown option "com.docker.network.bridge.enable_sth" for the batchbridge driver',
    );
  });

  test('generic must be an object', () => {
    throwsBb(() => spec({ top: { [OPT.generic]: 'x' } }), InvalidOptionError, `${OPT.generic} must be an object`);
    throwsBb(() => spec({ top: { [OPT.generic]: [] } }), InvalidOptionError, `${OPT.generic} must be an object`);
  });

  test('gateway modes', () => {
    const s = spec({ generic: { [OPT.gatewayModeIpv4]: 'routed', [OPT.gatewayModeIpv6]: 'routed' } });
    assert.equal(s.gatewayModeIpv4, 'routed');
    assert.equal(s.gatewayModeIpv6, 'routed');
    assert.equal(spec({ generic: { [OPT.gatewayModeIpv4]: 'nat' } }).gatewayModeIpv4, 'nat');
    throwsBb(
      () => spec({ generic: { [OPT.gatewayModeIpv4]: 'isolated' } }),
      InvalidOptionError,
      `unknown gateway mode "isolated" in ${OPT.gatewayModeIpv4} (nat, routed)`,
    );
    throwsBb(() => spec({ generic: { [OPT.gatewayModeIpv6]: 'NAT' } }), InvalidOptionError, /^unknown gateway mode "NAT"/);
  });

  test('host_binding_ipv4: any IP, canonicalised', () => {
    assert.equal(spec({ generic: { [OPT.hostBindingIpv4]: '198.18.0.5' } }).hostBindingIpv4, '198.18.0.5');
    assert.equal(spec({ generic: { [OPT.hostBindingIpv4]: 'fd00:0::5' } }).hostBindingIpv4, 'fd00::5');
    assert.equal(spec({ generic: { [OPT.hostBindingIpv4]: '' } }).hostBindingIpv4, '0.0.0.0');
    throwsBb(
      () => spec({ generic: { [OPT.hostBindingIpv4]: '1.2.3' } }),
      InvalidOptionError,
      'failed to parse com.docker.network.bridge.host_binding_ipv4 value: 1.2.3 (nil ip)',
    );
    throwsBb(() => spec({ generic: { [OPT.hostBindingIpv4]: '198.18.0.5 -j ACCEPT' } }), InvalidOptionError, /\(nil ip\)$/);
  });

  test('host_ipv4: an IPv4 address for SNAT', () => {
    assert.equal(spec({ generic: { [OPT.hostIpv4]: '198.19.0.7' } }).hostIpv4, '198.19.0.7');
    throwsBb(() => spec({ generic: { [OPT.hostIpv4]: 'fd00::1' } }), InvalidOptionError, /^failed to parse com\.docker\.network\.host_ipv4 value: fd00::1/);
    throwsBb(() => spec({ generic: { [OPT.hostIpv4]: 'nope' } }), InvalidOptionError, /host_ipv4 value: nope/);
  });

  test('container_iface_prefix', () => {
    assert.equal(spec({ generic: { [OPT.ifacePrefix]: 'cbr' } }).ifacePrefix, 'cbr');
    assert.equal(spec({ generic: { [OPT.ifacePrefix]: '' } }).ifacePrefix, 'eth');
    assert.equal(spec({ generic: { [OPT.ifacePrefix]: 'a23456789012' } }).ifacePrefix, 'a23456789012');
    for (const bad of ['a234567890123', '1eth', 'et h', 'eth\n', 'eth/', 'é']) {
      throwsBb(() => spec({ generic: { [OPT.ifacePrefix]: bad } }), InvalidOptionError, /^invalid com\.docker\.network\.container_iface_prefix/);
    }
  });

  test('a non-string value where a string is needed', () => {
    throwsBb(() => spec({ generic: { [OPT.bridgeName]: { a: 1 } } }), InvalidOptionError, `failed to parse ${OPT.bridgeName} value: expected a string`);
  });
});

describe('IPAM data', () => {
  test('no IPv4 data', () => {
    throwsBb(() => spec({ v4: [] }), InvalidRequestError, `bridge network ${ID} requires ipv4 configuration`);
    throwsBb(() => spec({ v4: [{ Pool: '' }] }), InvalidRequestError, 'ipv4 pool is empty');
    throwsBb(() => spec({ v4: [{ Pool: '0.0.0.0/0' }] }), InvalidRequestError, 'ipv4 pool is empty');
  });

  test('more than one subnet per family', () => {
    const two4 = [{ Pool: '198.18.20.0/24' }, { Pool: '198.18.21.0/24' }];
    throwsBb(() => spec({ v4: two4 }), InvalidRequestError, "bridge driver doesn't support multiple subnets");
    const two6 = [{ Pool: 'fd00:1::/64' }, { Pool: 'fd00:2::/64' }];
    throwsBb(() => spec({ top: { [OPT.enableIpv6]: true }, v6: two6 }), InvalidRequestError, "bridge driver doesn't support multiple subnets");
  });

  test('gateway outside the subnet', () => {
    throwsBb(
      () => spec({ v4: [{ Pool: '198.18.20.0/24', Gateway: '198.18.21.1/24' }] }),
      InvalidAddressError,
      `invalid IPv4 gateway 198.18.21.1: not in subnet 198.18.20.0/24 of network ${ID}`,
    );
    throwsBb(
      () => spec({ top: { [OPT.enableIpv6]: true }, v6: [{ Pool: 'fd00:1::/64', Gateway: 'fd00:2::1/64' }] }),
      InvalidAddressError,
      /^invalid IPv6 gateway fd00:2::1: not in subnet fd00:1::\/64/,
    );
  });

  test('gateway equal to the network address', () => {
    throwsBb(() => spec({ v4: [{ Pool: '198.18.20.0/24', Gateway: '198.18.20.0' }] }), InvalidAddressError, /it is the subnet's network address/);
  });

  test('a subnet too small for a gateway and a container', () => {
    throwsBb(() => spec({ v4: [{ Pool: '198.18.20.0/31' }] }), InvalidAddressError, /too small/);
    assert.equal(spec({ v4: [{ Pool: '198.18.20.0/30' }] }).ipv4.ip, '198.18.20.1');
  });

  test('malformed addresses', () => {
    throwsBb(() => spec({ v4: [{ Pool: '198.18.20.0' }] }), InvalidAddressError, /expected CIDR notation/);
    throwsBb(() => spec({ v4: [{ Pool: '198.18.20.0/33' }] }), InvalidAddressError, /bad prefix length/);
    throwsBb(() => spec({ v4: [{ Pool: '198.018.20.0/24x' }] }), InvalidAddressError, /./);
    throwsBb(() => spec({ v4: [{ Pool: 'fd00::/64' }] }), InvalidAddressError, /expected an IPv4 address/);
  });

  test('multicast subnets are refused (v4 224.0.0.0/4 and v6 ff00::/8)', () => {
    for (const pool of ['224.0.0.0/4', '239.1.0.0/16', '224.0.0.0/24']) {
      throwsBb(() => spec({ v4: [{ Pool: pool }] }), InvalidAddressError, /multicast subnets are not allowed/);
    }
    for (const pool of ['ff00::/8', 'ff02::/16', 'ff05::/64']) {
      throwsBb(() => spec({ top: { [OPT.enableIpv6]: true }, v6: [{ Pool: pool }] }), InvalidAddressError, /multicast subnets are not allowed/);
    }
  });

  test('IPv6 subnets overlapping fe80::/64 are refused, fe80::/64 itself is accepted', () => {
    const v6 = (Pool: string) => spec({ top: { [OPT.enableIpv6]: true }, v6: [{ Pool }] });
    throwsBb(() => v6('fe80::/48'), InvalidAddressError, "'fe80::/48' clashes with the Link-Local prefix 'fe80::/64'");
    throwsBb(() => v6('fe80::/10'), InvalidAddressError, /clashes with the Link-Local prefix/);
    throwsBb(() => v6('fe80::1:0/112'), InvalidAddressError, "'fe80::1:0/112' clashes with the Link-Local prefix 'fe80::/64'");
    const s = v6('fe80::/64');
    assert.equal(s.ipv6?.network, 'fe80::/64');
    // neighbours of fe80::/64 do not overlap it
    assert.equal(v6('fe80:0:0:1::/64').ipv6?.network, 'fe80:0:0:1::/64');
  });

  test('IPv6: gateway, aux gateway, link-local default', () => {
    const s = spec({ top: { [OPT.enableIpv6]: true }, v6: [{ Pool: 'fd00:20::/64', Gateway: 'fd00:20::1/64' }] });
    assert.equal(s.ipv6?.ip, 'fd00:20::1');
    assert.equal(s.ipv6?.prefix, 64);
    assert.equal(s.gatewayIpv6, 'fd00:20::1');
    const aux = spec({ top: { [OPT.enableIpv6]: true }, v6: [{ Pool: 'fd00:20::/64', AuxAddresses: { DefaultGatewayIPv6: 'fd00:20::fe' } }] });
    assert.equal(aux.ipv6?.ip, 'fd00:20::1');
    assert.equal(aux.gatewayIpv6, 'fd00:20::fe');
    const noV6 = spec({ top: { [OPT.enableIpv6]: true } });
    assert.equal(noV6.ipv6, null);
    assert.equal(noV6.gatewayIpv6, 'fe80::1');
  });

  test('an IPv6 subnet with IPv6 disabled', () => {
    throwsBb(() => spec({ v6: [{ Pool: 'fd00:20::/64' }] }), InvalidRequestError, /IPv6 subnet was given but com\.docker\.network\.enable_ipv6 is false/);
  });

  test('IPAM data of the wrong shape', () => {
    throwsBb(() => spec({ v4: [null] }), InvalidRequestError, 'IPv4Data[0] must be an object');
    throwsBb(() => spec({ v4: [{ Pool: '198.18.20.0/24', Gateway: 5 }] }), InvalidRequestError, 'IPv4Data[0].Gateway must be a string');
    throwsBb(() => spec({ v4: [{ Pool: '198.18.20.0/24', AuxAddresses: [] }] }), InvalidRequestError, /AuxAddresses must be an object/);
    throwsBb(
      () => parseNetworkSpec({ NetworkID: ID, Options: [] as unknown as Record<string, unknown>, IPv4Data: [], IPv6Data: [] }),
      InvalidRequestError,
      'Options must be an object',
    );
  });
});

describe('conflictReason', () => {
  const cand = (id: string, bridge: string, v4: string, v6: string | null = null): ConflictCandidate => ({
    id: parseNetworkId(id),
    bridge: bridge as IfName,
    ipv4: parseCidr(v4, 'test', 4),
    ipv6: v6 === null ? null : parseCidr(v6, 'test', 6),
  });

  test('same bridge name', () => {
    assert.equal(conflictReason(cand('a', 'br0', '198.18.1.1/24'), cand('b', 'br0', '198.18.2.1/24')), 'networks have same bridge name');
  });

  test('overlapping IPv4, in either direction', () => {
    assert.equal(conflictReason(cand('a', 'br0', '198.18.1.1/24'), cand('b', 'br1', '198.18.1.7/24')), 'networks have overlapping IPv4');
    assert.equal(conflictReason(cand('a', 'br0', '198.18.0.1/16'), cand('b', 'br1', '198.18.1.1/24')), 'networks have overlapping IPv4');
    assert.equal(conflictReason(cand('a', 'br0', '198.18.1.1/24'), cand('b', 'br1', '198.18.0.1/16')), 'networks have overlapping IPv4');
  });

  test('overlapping IPv6', () => {
    assert.equal(
      conflictReason(cand('a', 'br0', '198.18.1.1/24', 'fd00:1::1/64'), cand('b', 'br1', '198.18.2.1/24', 'fd00:1::/48')),
      'networks have overlapping IPv6',
    );
  });

  test('no conflict', () => {
    assert.equal(conflictReason(cand('a', 'br0', '198.18.1.1/24', 'fd00:1::1/64'), cand('b', 'br1', '198.18.2.1/24', 'fd00:2::1/64')), null);
    assert.equal(conflictReason(cand('a', 'br0', '198.18.1.1/24', 'fd00:1::1/64'), cand('b', 'br1', '198.18.2.1/24')), null);
  });
});
