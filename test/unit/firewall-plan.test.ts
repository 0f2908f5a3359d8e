// Golden tests: the exact text of every rule template the firewall planners emit.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { planHooks, readHookState } from '../../src/firewall/iptables/hooks.js';
import { baseChains, DNAT_BUCKETS, dnatBucketChain, HEADS } from '../../src/firewall/iptables/layout.js';
import { invertLines, renderRestorePayload } from '../../src/firewall/iptables/lines.js';
import { planEndpointPortsAdd, planEndpointPortsRemove, planNetworkAdd, planNetworkRemove } from '../../src/firewall/iptables/plan.js';
import type { PortMapping } from '../../src/state/records.js';
import { fwNetwork } from './fw-fixture.js';

const EP = 'eeeeeeeeeeee0123456789';

const net = fwNetwork;

const T = '-m comment --comment bb:net=aaaaaaaaaaaa';
const lines = (ch: { v4: readonly { table: string; line: string }[] }): string[] => ch.v4.map((l) => `${l.table} ${l.line}`);

test('default network (nat, icc, masquerade)', () => {
  assert.deepEqual(lines(planNetworkAdd(net())), [
    `filter -A BB-ISOLATION-1 -i bb-a ! -o bb-a ${T} -j BB-ISOLATION-2`,
    `filter -A BB-ISOLATION-2 -o bb-a ${T} -j DROP`,
    `filter -A BB-FORWARD -o bb-a -m conntrack --ctstate RELATED,ESTABLISHED ${T} -j ACCEPT`,
    `filter -A BB-FORWARD -o bb-a -m conntrack --ctstate DNAT ${T} -j ACCEPT`,
    `filter -A BB-FORWARD -i bb-a ! -o bb-a ${T} -j ACCEPT`,
    `filter -A BB-FORWARD -i bb-a -o bb-a ${T} -j ACCEPT`,
    `filter -A BB-FORWARD -o bb-a ${T} -j DROP`,
    `nat -A BB-POSTROUTING -s 198.18.20.0/24 ! -o bb-a ${T} -j MASQUERADE`,
    `nat -A BB-POSTROUTING -s 198.18.20.0/24 -o bb-a -m conntrack --ctstate DNAT ${T} -j MASQUERADE`,
    `nat -A BB-POSTROUTING -o bb-a -m addrtype --src-type LOCAL ${T} -j MASQUERADE`,
  ]);
  assert.deepEqual(planNetworkAdd(net()).v6, [], 'no ip6tables rules for an IPv4-only network');
});

test('removal deletes exactly the added rules, tolerantly', () => {
  for (const n of [net(), net({ internal: true }), net({ icc: false, masquerade: false }), net({ enableIpv6: true, subnet6: 'fd00:20::/64' })]) {
    const add = planNetworkAdd(n);
    const rm = planNetworkRemove(n);
    assert.equal(rm.tolerant, true);
    assert.deepEqual(rm.v4.map((l) => l.line), invertLines(add.v4).reverse().map((l) => l.line));
    assert.deepEqual(rm.v6.map((l) => l.line), invertLines(add.v6).reverse().map((l) => l.line));
  }
});

test('icc off drops bridge-internal traffic', () => {
  const l = lines(planNetworkAdd(net({ icc: false })));
  assert.ok(l.includes(`filter -A BB-FORWARD -i bb-a -o bb-a ${T} -j DROP`));
  assert.ok(!l.some((x) => x.includes('-i bb-a -o bb-a') && x.endsWith('ACCEPT')));
});

test('masquerade off: no outgoing masquerade, hairpin stays', () => {
  const l = lines(planNetworkAdd(net({ masquerade: false })));
  assert.ok(!l.some((x) => x.includes('! -o bb-a') && x.includes('MASQUERADE')));
  assert.ok(l.includes(`nat -A BB-POSTROUTING -o bb-a -m addrtype --src-type LOCAL ${T} -j MASQUERADE`));
});

test('host_ipv4: SNAT to that address', () => {
  const l = lines(planNetworkAdd(net({ hostIpv4: '198.19.255.1' })));
  assert.ok(l.includes(`nat -A BB-POSTROUTING -s 198.18.20.0/24 ! -o bb-a ${T} -j SNAT --to-source 198.19.255.1`));
  assert.ok(!l.some((x) => x.includes('! -o bb-a') && x.includes('MASQUERADE')));
});

test('internal network: drops above the DNAT RETURN, ICC only, no nat', () => {
  assert.deepEqual(lines(planNetworkAdd(net({ internal: true }))), [
    `filter -I BB-ISOLATION-1 1 -i bb-a ! -o bb-a ${T} -j DROP`,
    `filter -I BB-ISOLATION-1 1 -o bb-a ! -i bb-a ${T} -j DROP`,
    `filter -A BB-FORWARD -i bb-a -o bb-a ${T} -j ACCEPT`,
  ]);
  assert.ok(lines(planNetworkAdd(net({ internal: true, icc: false }))).includes(`filter -A BB-FORWARD -i bb-a -o bb-a ${T} -j DROP`));
});

test('routed gateway mode: no NAT, containers reachable directly', () => {
  const l = lines(planNetworkAdd(net({ gatewayModeIpv4: 'routed' })));
  assert.ok(l.includes(`filter -A BB-FORWARD -o bb-a ${T} -j ACCEPT`));
  assert.ok(!l.includes(`filter -A BB-FORWARD -o bb-a ${T} -j DROP`));
  assert.ok(!l.some((x) => x.includes('! -o bb-a') && /MASQUERADE|SNAT/.test(x)));
});

test('IPv6 network: the same rules in ip6tables with the v6 subnet', () => {
  const ch = planNetworkAdd(net({ enableIpv6: true, subnet6: 'fd00:20::/64', gatewayModeIpv6: 'routed' }));
  const v6 = ch.v6.map((l) => `${l.table} ${l.line}`);
  assert.ok(v6.includes(`filter -A BB-ISOLATION-1 -i bb-a ! -o bb-a ${T} -j BB-ISOLATION-2`));
  assert.ok(v6.includes(`nat -A BB-POSTROUTING -s fd00:20::/64 -o bb-a -m conntrack --ctstate DNAT ${T} -j MASQUERADE`));
  assert.ok(v6.includes(`filter -A BB-FORWARD -o bb-a ${T} -j ACCEPT`), 'v6 routed');
  assert.ok(!v6.some((x) => x.includes('! -o bb-a') && x.includes('MASQUERADE')), 'no v6 masquerade in routed mode');
  assert.ok(lines(ch).includes(`filter -A BB-FORWARD -o bb-a ${T} -j DROP`), 'v4 stays nat');
});

const M = (o: Partial<PortMapping>): PortMapping => ({ proto: 'tcp', family: 4, hostIp: '0.0.0.0', hostPort: 18080, containerIp: '198.18.20.2', containerPort: 80, ...o });
const E = '-m comment --comment bb:ep=eeeeeeeeeeee';

test('DNAT rules: any address, one address, IPv6, udp, sctp', () => {
  const ch = planEndpointPortsAdd(EP, [
    M({}),
    M({ hostIp: '198.19.255.1', hostPort: 511 }),
    M({ proto: 'udp', hostPort: 512, containerPort: 53 }),
    M({ family: 6, hostIp: '::', containerIp: 'fd00:20::2' }),
    M({ family: 6, hostIp: 'fd00:ff::1', hostPort: 65535, containerIp: 'fd00:20::2' }),
    M({ proto: 'sctp', hostPort: 9000, containerPort: 9 }),
  ]);
  assert.equal(ch.tolerant, false);
  assert.deepEqual(ch.v4.map((l) => `${l.table} ${l.line}`), [
    `nat -A BB-DNAT-35 -p tcp -m tcp --dport 18080 ${E} -j DNAT --to-destination 198.18.20.2:80`,
    `nat -A BB-DNAT-0 -d 198.19.255.1/32 -p tcp -m tcp --dport 511 ${E} -j DNAT --to-destination 198.18.20.2:80`,
    `nat -A BB-DNAT-1 -p udp -m udp --dport 512 ${E} -j DNAT --to-destination 198.18.20.2:53`,
    `nat -A BB-DNAT-SCTP -p sctp -m sctp --dport 9000 ${E} -j DNAT --to-destination 198.18.20.2:9`,
    `mangle -A BB-MANGLE -p sctp -m sctp --sport 9 ${E} -j CHECKSUM --checksum-fill`,
  ]);
  assert.deepEqual(ch.v6.map((l) => `${l.table} ${l.line}`), [
    `nat -A BB-DNAT-35 -p tcp -m tcp --dport 18080 ${E} -j DNAT --to-destination [fd00:20::2]:80`,
    `nat -A BB-DNAT-127 -d fd00:ff::1/128 -p tcp -m tcp --dport 65535 ${E} -j DNAT --to-destination [fd00:20::2]:80`,
  ]);
  const rm = planEndpointPortsRemove(EP, [M({})]);
  assert.equal(rm.tolerant, true);
  assert.deepEqual(rm.v4.map((l) => l.line), [`-D BB-DNAT-35 -p tcp -m tcp --dport 18080 ${E} -j DNAT --to-destination 198.18.20.2:80`]);
});

test('DNAT planner refuses values that are not canonical addresses or ports', () => {
  const p = (m: PortMapping): unknown => planEndpointPortsAdd(EP, [m]);
  assert.throws(() => p(M({ hostPort: 0 })));
  assert.throws(() => p(M({ containerPort: 65536 })));
  assert.throws(() => p(M({ hostPort: 1.5 })));
  assert.throws(() => p(M({ containerIp: '198.18.20.2 -j ACCEPT' })));
  assert.throws(() => p(M({ hostIp: '::' })), 'family mismatch');
  assert.throws(() => p(M({ proto: 'icmp' as 'tcp' })));
  assert.throws(() => planEndpointPortsAdd('bad id\n', [M({})]));
  // a non-canonical but valid address is re-rendered
  const ch = planEndpointPortsAdd(EP, [M({ family: 6, hostIp: 'FD00:00ff::0001', containerIp: 'fd00:20:0::2' })]);
  assert.match(ch.v6[0]?.line ?? '', / -d fd00:ff::1\/128 .* --to-destination \[fd00:20::2\]:80$/);
});

test('buckets: 128 chains of 512 ports', () => {
  assert.equal(DNAT_BUCKETS, 128);
  assert.equal(dnatBucketChain('tcp', 1), 'BB-DNAT-0');
  assert.equal(dnatBucketChain('udp', 32768), 'BB-DNAT-64');
  assert.equal(dnatBucketChain('tcp', 65535), 'BB-DNAT-127');
  assert.equal(dnatBucketChain('sctp', 80), 'BB-DNAT-SCTP');
});

test('base chains: declarations, heads, bucket jumps', () => {
  const b = baseChains().map((l) => `${l.table} ${l.line}`);
  for (const d of ['filter :BB-FORWARD - [0:0]', 'filter :BB-ISOLATION-1 - [0:0]', 'filter :BB-ISOLATION-2 - [0:0]', 'nat :BB-DNAT - [0:0]', 'nat :BB-DNAT-SCTP - [0:0]', 'nat :BB-POSTROUTING - [0:0]', 'mangle :BB-MANGLE - [0:0]', 'nat :BB-DNAT-0 - [0:0]', 'nat :BB-DNAT-127 - [0:0]']) {
    assert.ok(b.includes(d), d);
  }
  const rules = b.filter((l) => !l.includes(' :'));
  assert.deepEqual(rules.slice(0, 3), [
    'filter -A BB-FORWARD -j BB-ISOLATION-1',
    'filter -A BB-ISOLATION-1 -m conntrack --ctstate DNAT -j RETURN',
    'nat -A BB-DNAT -p tcp -m tcp --dport 0:511 -j BB-DNAT-0',
  ]);
  assert.ok(rules.includes('nat -A BB-DNAT -p udp -m udp --dport 65024:65535 -j BB-DNAT-127'));
  assert.equal(rules.at(-1), 'nat -A BB-DNAT -p sctp -j BB-DNAT-SCTP');
  assert.equal(rules.length, 2 + 2 * 128 + 1);
  assert.equal(HEADS.forward, 'filter -A BB-FORWARD -j BB-ISOLATION-1'.slice(7));
  assert.equal(`nat ${HEADS.dnat}`, rules[2]);
});

test('hooks: inserted when missing, below DOCKER-USER, duplicates removed', () => {
  const empty = readHookState('*filter\n:FORWARD ACCEPT [0:0]\nCOMMIT\n*nat\nCOMMIT\n');
  assert.deepEqual(planHooks(empty).map((l) => `${l.table} ${l.line}`), [
    'filter -I FORWARD 1 -j BB-FORWARD',
    'nat -I PREROUTING 1 -m addrtype --dst-type LOCAL -j BB-DNAT',
    'nat -I OUTPUT 1 -m addrtype --dst-type LOCAL -j BB-DNAT',
    'nat -I POSTROUTING 1 -j BB-POSTROUTING',
    'mangle -I POSTROUTING 1 -j BB-MANGLE',
  ]);
  const save = [
    '*mangle', '-A POSTROUTING -j BB-MANGLE', 'COMMIT',
    '*nat', '-A PREROUTING -m addrtype --dst-type LOCAL -j BB-DNAT', '-A OUTPUT -m addrtype --dst-type LOCAL -j BB-DNAT',
    '-A POSTROUTING -j BB-POSTROUTING', '-A POSTROUTING -j BB-POSTROUTING', 'COMMIT',
    '*filter', '-A FORWARD -j DOCKER-USER', 'COMMIT',
  ].join('\n');
  assert.deepEqual(planHooks(readHookState(save)).map((l) => `${l.table} ${l.line}`), [
    'filter -I FORWARD 2 -j BB-FORWARD',
    'nat -D POSTROUTING -j BB-POSTROUTING',
  ]);
});

test('restore payload: tables in order, declarations first, owners per line', () => {
  const r = renderRestorePayload([
    { owner: 1, lines: [{ table: 'filter', line: '-A X -j ACCEPT' }, { table: 'nat', line: '-A Y -j RETURN' }] },
    { owner: 2, lines: [{ table: 'filter', line: ':X - [0:0]' }, { table: 'mangle', line: '-A Z -j RETURN' }] },
  ]);
  assert.equal(r.text, '*mangle\n-A Z -j RETURN\nCOMMIT\n*nat\n-A Y -j RETURN\nCOMMIT\n*filter\n:X - [0:0]\n-A X -j ACCEPT\nCOMMIT\n');
  assert.deepEqual(r.owners, [null, 2, null, null, 1, null, null, 2, 1, null]);
});
