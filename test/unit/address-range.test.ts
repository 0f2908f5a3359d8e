// Choosing free addresses (CNI's daemon IPAM): bounds, the gateway, wrap-around, exhaustion,
// IPv6; and the in-pod ip lines and command (src/ip/sandbox.ts).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseCidr } from '../../src/domain/addr.js';
import { pickAddress, rangeBounds, rangeText, type AddressRange } from '../../src/domain/address-range.js';
import { renderIpScript } from '../../src/ip/lines.js';
import { parseIpRoutes } from '../../src/ip/read.js';
import { ipInNetns, sandboxLines } from '../../src/ip/sandbox.js';
import { DEFAULT_TOOLS } from '../../src/tools/paths.js';

const v4 = (subnet: string, o: Partial<AddressRange> = {}): AddressRange => ({ subnet: parseCidr(subnet, 's'), start: null, end: null, avoid: [], ...o });

test('an IPv4 range leaves out the network and broadcast addresses; /31 and /32 keep them', () => {
  assert.equal(rangeText(v4('198.18.64.0/24')), '198.18.64.1-198.18.64.254');
  assert.equal(rangeText(v4('198.18.64.0/31')), '198.18.64.0-198.18.64.1');
  assert.equal(rangeText(v4('198.18.64.0/24', { start: '198.18.64.100', end: '198.18.64.110' })), '198.18.64.100-198.18.64.110');
  const b = rangeBounds(v4('198.18.64.0/24', { start: '198.18.63.1', end: '198.18.65.1' }));
  assert.equal(b.last - b.first, 253n, 'start/end outside the subnet are clipped to it');
});

test('the search skips the gateway and taken addresses, starts after the last one, wraps, and gives up when full', () => {
  const r = v4('198.18.64.0/29', { avoid: ['198.18.64.1'] });
  const taken = new Set(['198.18.64.2', '198.18.64.4']);
  assert.equal(pickAddress(r, (a) => taken.has(a), null), '198.18.64.3');
  assert.equal(pickAddress(r, (a) => taken.has(a), '198.18.64.3'), '198.18.64.5');
  assert.equal(pickAddress(r, (a) => taken.has(a), '198.18.64.6'), '198.18.64.3', 'wraps to the start');
  assert.equal(pickAddress(r, () => true, null), null);
  assert.equal(pickAddress(v4('198.18.64.0/24', { start: '198.18.64.9', end: '198.18.64.8' }), () => false, null), null, 'an empty range');
});

test('IPv6: the subnet router anycast address (the network address) is never handed out; huge ranges stay cheap', () => {
  const r: AddressRange = { subnet: parseCidr('fd00:bb::/64', 's'), start: null, end: null, avoid: ['fd00:bb::1'] };
  assert.equal(pickAddress(r, () => false, null), 'fd00:bb::2');
  let probes = 0;
  assert.equal(pickAddress(r, (a) => (probes++, a !== 'fd00:bb::3e9'), null), 'fd00:bb::3e9');
  assert.ok(probes <= 1000);
});

test('in-pod lines: addresses (IPv6 without DAD), link up, then routes; the namespace by name or through nsenter', () => {
  const lines = sandboxLines({ dev: 'eth0', addrs: ['198.18.64.2/24', 'fd00:bb::2/64'], routes: [{ dst: '0.0.0.0/0', via: '198.18.64.1' }, { dst: '::/0', via: 'fd00:bb::1' }] });
  assert.equal(
    renderIpScript(lines),
    'address add 198.18.64.2/24 dev eth0\naddress add fd00:bb::2/64 dev eth0 nodad\nlink set dev eth0 up\nroute add 0.0.0.0/0 via 198.18.64.1 dev eth0\nroute add ::/0 via fd00:bb::1 dev eth0\n',
  );
  assert.deepEqual(ipInNetns(DEFAULT_TOOLS, '/var/run/netns/cni-1234', ['-force', '-batch', '-']), { file: 'ip', args: ['-n', 'cni-1234', '-force', '-batch', '-'] });
  assert.deepEqual(ipInNetns(DEFAULT_TOOLS, '/proc/42/ns/net', ['-j', 'route', 'show']), { file: 'nsenter', args: ['--net=/proc/42/ns/net', '--', 'ip', '-j', 'route', 'show'] });
  assert.throws(() => renderIpScript([{ op: 'route-add', dst: '0.0.0.0/0', via: 'fd00::1', dev: 'eth0' }]), /expected an IPv4 address/);
});

test('routes read back: "default" and host routes become CIDRs', () => {
  const r = parseIpRoutes('[{"dst":"default","gateway":"198.18.64.1","dev":"eth0"},{"dst":"198.18.64.0/24","dev":"eth0"},{"dst":"198.18.9.9","dev":"eth0"}]', 4);
  assert.deepEqual(r, [
    { dst: '0.0.0.0/0', gateway: '198.18.64.1', dev: 'eth0' },
    { dst: '198.18.64.0/24', gateway: null, dev: 'eth0' },
    { dst: '198.18.9.9/32', gateway: null, dev: 'eth0' },
  ]);
});
