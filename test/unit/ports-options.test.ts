// parsePortOptions: com.docker.network.portmap / exposedports → validated bindings.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parsePortOptions } from '../../src/api/port-options.js';

const PM = 'com.docker.network.portmap';
const EX = 'com.docker.network.endpoint.exposedports';
const one = (b: Record<string, unknown>) => parsePortOptions({ [PM]: [b] });

test('single port, range, ephemeral, host IPs (normalised)', () => {
  assert.deepEqual(one({ Proto: 6, Port: 80, HostPort: 18080 }).requested, [{ proto: 'tcp', containerPort: 80, hostIp: '', hostPort: 18080, hostPortEnd: 18080 }]);
  assert.deepEqual(one({ Proto: 17, Port: 53, HostIP: '198.19.255.1', HostPort: 8000, HostPortEnd: 8010 }).requested, [
    { proto: 'udp', containerPort: 53, hostIp: '198.19.255.1', hostPort: 8000, hostPortEnd: 8010 },
  ]);
  assert.deepEqual(one({ Proto: 132, Port: 9 }).requested, [{ proto: 'sctp', containerPort: 9, hostIp: '', hostPort: 0, hostPortEnd: 0 }]);
  assert.equal(one({ Proto: 'tcp', Port: 80, HostIP: 'FD00:0::1' }).requested[0]?.hostIp, 'fd00::1');
  assert.deepEqual(parsePortOptions({ [EX]: [{ Proto: 6, Port: 80 }, { Proto: 17, Port: 53 }] }).exposed, [
    { proto: 'tcp', port: 80 },
    { proto: 'udp', port: 53 },
  ]);
  assert.deepEqual(parsePortOptions({}), { requested: [], exposed: [] });
});

test('ports out of range are refused', () => {
  for (const b of [
    { Proto: 6, Port: 0 },
    { Proto: 6, Port: 65536 },
    { Proto: 6, Port: -1 },
    { Proto: 6, Port: 80, HostPort: 65536 },
    { Proto: 6, Port: 80, HostPort: 1, HostPortEnd: 70000 },
    { Proto: 6, Port: 1.5 },
    { Proto: 6, Port: '80' },
    { Proto: 6 },
  ]) {
    assert.throws(() => one(b), { code: 'BB_ERR_INVALID_PORT' }, JSON.stringify(b));
  }
});

test('reversed and ephemeral-with-end ranges are refused', () => {
  assert.throws(() => one({ Proto: 6, Port: 80, HostPort: 8010, HostPortEnd: 8000 }), { code: 'BB_ERR_INVALID_PORT', message: 'invalid port range: 8010-8000' });
  assert.throws(() => one({ Proto: 6, Port: 80, HostPort: 0, HostPortEnd: 8000 }), { code: 'BB_ERR_INVALID_PORT', message: 'invalid port range: 0-8000' });
});

test('bad protocols are refused', () => {
  for (const p of [1, 0, 'icmp', 'TCP', null, undefined, 6.5]) {
    assert.throws(() => one({ Proto: p, Port: 80 }), { code: 'BB_ERR_INVALID_PORT' }, String(p));
    assert.throws(() => parsePortOptions({ [EX]: [{ Proto: p, Port: 80 }] }), { code: 'BB_ERR_INVALID_PORT' }, String(p));
  }
});

test('malformed lists and addresses are refused', () => {
  assert.throws(() => parsePortOptions({ [PM]: 'x' }), { code: 'BB_ERR_INVALID_REQUEST' });
  assert.throws(() => parsePortOptions({ [PM]: [null] }), { code: 'BB_ERR_INVALID_REQUEST' });
  assert.throws(() => parsePortOptions({ [EX]: {} }), { code: 'BB_ERR_INVALID_REQUEST' });
  assert.throws(() => one({ Proto: 6, Port: 80, HostIP: 5 }), { code: 'BB_ERR_INVALID_REQUEST' });
  for (const ip of ['198.19.255.1 -j ACCEPT', '300.1.1.1', '::ffff:198.19.255.1', 'fe80::1%eth0', 'localhost']) {
    assert.throws(() => one({ Proto: 6, Port: 80, HostIP: ip }), { code: 'BB_ERR_INVALID_ADDRESS' }, ip);
  }
});
