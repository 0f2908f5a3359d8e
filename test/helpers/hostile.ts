// Hostile values for the protocol's fields (fast-check generators), shared by the unit fuzz tests
// (test/unit/fuzz-*.test.ts), the kernel fuzz test and the scale fuzzer (scripts/fuzz). Every
// value here must be refused by the plugin with a clear {"Err"} and change nothing.
import fc from 'fast-check';
/** Characters that must never reach a script: separators, quotes, shell and iptables syntax. */
export const NASTY_CHARS = ['\n', '\r', ' ', '\t', '"', "'", '`', '$', ';', '&', '|', '>', '<', '(', ')', '{', '}', '\\', '/', '*', '?', '!', '#', '%', '\0', 'é', 'ü', '∂', '😀', '\u202e', ',', ':', '=', '+', '@', '~'];

/** A string with at least one nasty character somewhere in otherwise plausible text. */
export const nastyString = (base: fc.Arbitrary<string> = fc.string({ maxLength: 20 })): fc.Arbitrary<string> =>
  fc.tuple(base, fc.constantFrom(...NASTY_CHARS), base, fc.nat(40)).map(([a, c, b, i]) => {
    const s = a + b;
    const at = i % (s.length + 1);
    return s.slice(0, at) + c + s.slice(at);
  });

/** Ids that are not valid network/endpoint ids. */
export const badId: fc.Arbitrary<unknown> = fc.oneof(
  nastyString(fc.stringMatching(/^[a-f0-9]{0,30}$/)),
  fc.constant(''),
  fc.stringMatching(/^[a-f0-9]{129,200}$/),
  fc.integer(),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.string(), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 5 }), fc.string({ maxLength: 5 }), { maxKeys: 2 }),
  fc.constantFrom('-leading-dash', '_x', 'a b', 'a\nb', '../../etc', 'x;reboot', '$(id)'),
);

/** Interface names the kernel (or we) must refuse. */
export const badIfName: fc.Arbitrary<unknown> = fc.oneof(
  nastyString(fc.stringMatching(/^[a-z0-9]{0,12}$/)),
  fc.stringMatching(/^[a-z0-9]{16,40}$/),
  fc.constantFrom('.', '..', 'br0 up', 'br0\nlink del dev eth0', 'bräcke', 'verylongbridgename', 'a/b'),
  fc.integer({ min: -5, max: 5 }).map((n) => ({ n })),
  fc.array(fc.nat(), { maxLength: 2 }),
);

/** CIDRs that must be refused as IPv4 pools. */
export const badCidr4: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(
    '224.0.0.0/24', '239.1.2.0/24', // multicast
    '::ffff:198.18.0.0/120', '::ffff:c612:0/120', // IPv4-mapped
    '198.18.0.0', '198.18.0.0/33', '198.18.0.0/-1', '198.18.0.0/24/1', '198.18.0.256/24', '198.018.0.0/24', '0x10.0.0.0/8',
    '198.18.0.0/24\n-A INPUT -j ACCEPT', '198.18.0.0/24 dev lo', '198.18.0.0/ 24', ' 198.18.0.0/24', '198.18.0.0/24;id',
    'fd00::/64', '0.0.0.0/0', '198.18.0.0/31', '198.18.0.0/32', '', '/24', 'localhost/24',
  ),
  nastyString(fc.constant('198.18.40.0/24')),
  fc.integer(),
  fc.constant(null),
);

/** Host ports and container ports out of range, and reversed ranges. */
export const badPortBinding: fc.Arbitrary<Record<string, unknown>> = fc.oneof(
  fc.record({ Proto: fc.constant(6), Port: fc.oneof(fc.integer({ min: 65536, max: 1e9 }), fc.integer({ max: 0 }), fc.constant(1.5), fc.constant('80')), HostPort: fc.constant(8080) }),
  fc.record({ Proto: fc.constant(6), Port: fc.constant(80), HostPort: fc.oneof(fc.integer({ min: 65536, max: 1e9 }), fc.integer({ max: -1 }), fc.constant(80.5), fc.constant('8080')) }),
  fc.integer({ min: 2, max: 65535 }).chain((hi) => fc.record({ Proto: fc.constant(17), Port: fc.constant(53), HostPort: fc.constant(hi), HostPortEnd: fc.integer({ min: 1, max: hi - 1 }) })),
  fc.record({ Proto: fc.oneof(fc.integer({ min: 200, max: 300 }), fc.constantFrom('icmp', 'tcp;', '', 'TCP ', null)), Port: fc.constant(80), HostPort: fc.constant(8080) }),
  fc.record({ Proto: fc.constant(6), Port: fc.constant(80), HostPort: fc.constant(8080), HostIP: fc.oneof(nastyString(fc.constant('198.18.0.1')), fc.constantFrom('::ffff:198.18.0.1', '198.18.0.1/32', '1.2.3', 'localhost', '198.18.0.1 -j ACCEPT')) }),
);

/** Generic driver options (com.docker.network.generic) the plugin must refuse. */
export const badGenericOption: fc.Arbitrary<Record<string, unknown>> = fc.oneof(
  badIfName.map((v) => ({ 'com.docker.network.bridge.name': v })),
  fc.oneof(fc.integer({ max: -1 }), fc.integer({ min: 65536 }), fc.constantFrom('1500 ', '15OO', '1e3', '0x5dc', '', '67', '9999999999'), nastyString(fc.constant('1500'))).map((v) => ({ 'com.docker.network.driver.mtu': v })),
  nastyString(fc.constant('true')).map((v) => ({ 'com.docker.network.bridge.enable_icc': v })),
  fc.constantFrom('yes', 'on', 'TRUE ', 'tRue', '2').map((v) => ({ 'com.docker.network.bridge.enable_ip_masquerade': v })),
  nastyString(fc.constant('eth')).map((v) => ({ 'com.docker.network.container_iface_prefix': v })),
  nastyString(fc.constant('198.18.0.1')).map((v) => ({ 'com.docker.network.bridge.host_binding_ipv4': v })),
  nastyString(fc.constant('nat')).map((v) => ({ 'com.docker.network.bridge.gateway_mode_ipv4': v })),
  fc.tuple(nastyString(fc.constant('com.docker.network.x')), fc.string()).map(([k, v]) => ({ [k]: v })),
  fc.constantFrom({ 'com.docker.network.bridge.default_bridge': 'true' }, { 'com.docker.network.unknown_option': '1' }),
);

/** Endpoint addresses that must be refused on a network whose subnet is `subnet24` (e.g. "198.18.20"). */
export const badEndpointAddress = (subnet24: string): fc.Arbitrary<unknown> => fc.oneof(
  nastyString(fc.constant(`${subnet24}.5/24`)),
  fc.constantFrom(`${subnet24}.1/24`, `${subnet24}.0/24`, `${subnet24}.255/24`, `::ffff:${subnet24}.5/120`, `${subnet24}.5`, '224.0.0.5/24', `${subnet24}.5/24 dev lo`, `${subnet24}.5/33`, '', 5, null),
);

/** MAC addresses that must be refused (multicast, zero, malformed). */
export const badMac: fc.Arbitrary<unknown> = fc.oneof(
  nastyString(fc.constant('02:42:c6:12:14:05')),
  fc.constantFrom('01:00:5e:00:00:01', '00:00:00:00:00:00', '02:42:c6:12:14', 'zz:42:c6:12:14:05', 'ff:ff:ff:ff:ff:ff', 7),
);

/** Whole request bodies of any shape: text, JSON values, bytes and a few classic traps. */
export const garbageBody: fc.Arbitrary<string | Buffer> = fc.oneof(
  fc.string({ maxLength: 200 }),
  fc.json({ maxDepth: 3 }),
  fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)),
  fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)),
  fc.constantFrom('{', '{"NetworkID":', '[]', 'null', '"x"', '1e999', '{"__proto__":{"x":1}}', '{"constructor":{"prototype":{}}}', '\u0000', '{"NetworkID":"a","NetworkID":"b"}'),
);

/** Content types a client might send (dockerd 20.10 sends none). */
export const anyContentType: fc.Arbitrary<string | undefined> = fc.constantFrom(
  undefined, 'application/json', 'application/vnd.docker.plugins.v1.2+json', 'text/plain', 'multipart/form-data; boundary=x', 'application/x-www-form-urlencoded',
);
