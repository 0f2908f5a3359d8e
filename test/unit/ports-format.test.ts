// `batchbridge ports` output: one binding per line, IPv6 host addresses in brackets.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatBinding } from '../../src/cli/ports.js';

test('binding lines', () => {
  const b = (m: Record<string, unknown>) => formatBinding({ networkId: 'n', endpointId: 'e', mapping: { proto: 'tcp', family: 4, hostIp: '0.0.0.0', hostPort: 18080, containerIp: '198.18.20.2', containerPort: 80, ...m } as never });
  assert.equal(b({}), 'tcp 0.0.0.0:18080 -> 198.18.20.2:80');
  assert.equal(b({ proto: 'udp', hostIp: '198.19.255.1', hostPort: 53, containerPort: 5353 }), 'udp 198.19.255.1:53 -> 198.18.20.2:5353');
  assert.equal(b({ family: 6, hostIp: '::', containerIp: 'fd00:20::2' }), 'tcp [::]:18080 -> [fd00:20::2]:80');
});
