// planIpBatch: exact `ip -force -batch` scripts; parseIpErrors / attributeIpFailures on stderr as
// ip prints it.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { classifyIpError, parseIpErrors } from '../../src/ip/errors.js';
import type { IpOp } from '../../src/ip/ops.js';
import { attributeIpFailures, planIpBatch, type IpWork } from '../../src/ip/plan.js';

const G = 0x62620005; // a link group as the batcher hands them out
const g = String(G);

const vc = (host: string, peer: string, mtu = 0, bridge = 'br0'): IpOp => ({ kind: 'veth-create', host, peer, bridge, mtu });
const vd = (host: string): IpOp => ({ kind: 'veth-delete', host });

describe('planIpBatch scripts', () => {
  test('veth-create without MTU', () => {
    const p = planIpBatch([{ opId: 1, ops: [vc('veth0000001', 'veth0000002')] }], G);
    assert.equal(p.text, 'link add name veth0000001 txqueuelen 0 master br0 up type veth peer name veth0000002 txqueuelen 0\n');
    assert.deepEqual(p.owners, [{ opId: 1, tolerate: [] }]);
    assert.deepEqual(p.groupMembers, []);
  });

  test('veth-create with MTU on both ends', () => {
    const p = planIpBatch([{ opId: 7, ops: [vc('veth0000001', 'veth0000002', 1400)] }], G);
    assert.equal(p.text, 'link add name veth0000001 mtu 1400 txqueuelen 0 master br0 up type veth peer name veth0000002 mtu 1400 txqueuelen 0\n');
  });

  test('many veth-creates: one line each, in order', () => {
    const works: IpWork[] = [1, 2, 3].map((i) => ({ opId: i, ops: [vc(`veth000000${i}`, `veth100000${i}`)] }));
    const p = planIpBatch(works, G);
    assert.equal(
      p.text,
      [
        'link add name veth0000001 txqueuelen 0 master br0 up type veth peer name veth1000001 txqueuelen 0',
        'link add name veth0000002 txqueuelen 0 master br0 up type veth peer name veth1000002 txqueuelen 0',
        'link add name veth0000003 txqueuelen 0 master br0 up type veth peer name veth1000003 txqueuelen 0',
        '',
      ].join('\n'),
    );
    assert.deepEqual(p.owners.map((o) => o.opId), [1, 2, 3]);
  });

  test('veth-delete batch: each veth into the link group, then one group delete', () => {
    const p = planIpBatch([{ opId: 1, ops: [vd('vethaaaaaa1')] }, { opId: 2, ops: [vd('vethaaaaaa2')] }, { opId: 3, ops: [vd('vethaaaaaa3')] }], G);
    assert.equal(
      p.text,
      `link set dev vethaaaaaa1 group ${g}\nlink set dev vethaaaaaa2 group ${g}\nlink set dev vethaaaaaa3 group ${g}\nlink del group ${g}\n`,
    );
    assert.deepEqual(p.owners, [
      { opId: 1, tolerate: ['no-device'] },
      { opId: 2, tolerate: ['no-device'] },
      { opId: 3, tolerate: ['no-device'] },
      { opId: -1, tolerate: ['no-device'], shared: true },
    ]);
    assert.deepEqual(p.groupMembers, [1, 2, 3]);
  });

  test('one op deleting several veths is listed once as a group member', () => {
    const p = planIpBatch([{ opId: 4, ops: [vd('vethaaaaaa1'), vd('vethaaaaaa2')] }], G);
    assert.deepEqual(p.groupMembers, [4]);
    assert.equal(p.text.split('\n').filter((l) => l.startsWith('link del group')).length, 1);
  });

  test('bridge create, with and without MTU', () => {
    assert.equal(
      planIpBatch([{ opId: 1, ops: [{ kind: 'bridge-create', bridge: 'bb-0123', mac: '02:42:0a:0b:0c:0d', mtu: 1400 }] }], G).text,
      'link add name bb-0123 address 02:42:0a:0b:0c:0d mtu 1400 type bridge\n',
    );
    assert.equal(
      planIpBatch([{ opId: 1, ops: [{ kind: 'bridge-create', bridge: 'bb-0123', mac: '02:42:0a:0b:0c:0d', mtu: 0 }] }], G).text,
      'link add name bb-0123 address 02:42:0a:0b:0c:0d type bridge\n',
    );
  });

  test('bridge addresses and up', () => {
    const p = planIpBatch([{ opId: 2, ops: [{ kind: 'bridge-addrs', bridge: 'bb-0123', addrs: ['198.18.20.1/24', 'fe80::1/64', 'fd00:20::1/64'], up: true }] }], G);
    assert.equal(
      p.text,
      'address add 198.18.20.1/24 dev bb-0123\naddress add fe80::1/64 dev bb-0123\naddress add fd00:20::1/64 dev bb-0123\nlink set dev bb-0123 up\n',
    );
    assert.deepEqual(p.owners, [
      { opId: 2, tolerate: ['exists'] },
      { opId: 2, tolerate: ['exists'] },
      { opId: 2, tolerate: ['exists'] },
      { opId: 2, tolerate: [] },
    ]);
    assert.equal(planIpBatch([{ opId: 2, ops: [{ kind: 'bridge-addrs', bridge: 'b', addrs: [], up: false }] }], G).text, '');
  });

  test('bridge delete', () => {
    const p = planIpBatch([{ opId: 3, ops: [{ kind: 'bridge-delete', bridge: 'bb-0123' }] }], G);
    assert.equal(p.text, 'link del dev bb-0123\n');
    assert.deepEqual(p.owners, [{ opId: 3, tolerate: ['no-device'] }]);
  });

  test('a network teardown: veths into the group, group delete, then the bridge', () => {
    const p = planIpBatch(
      [
        { opId: 9, ops: [{ kind: 'bridge-delete', bridge: 'bb-0123' }, vd('vethaaaaaa1')] },
        { opId: 10, ops: [vd('vethaaaaaa2')] },
      ],
      G,
    );
    assert.equal(p.text, `link set dev vethaaaaaa1 group ${g}\nlink set dev vethaaaaaa2 group ${g}\nlink del group ${g}\nlink del dev bb-0123\n`);
  });

  test('removing addresses from a user bridge runs after the group delete', () => {
    const p = planIpBatch(
      [
        { opId: 1, ops: [{ kind: 'bridge-addrs-remove', bridge: 'br-user', addrs: ['198.18.30.1/24'] }] },
        { opId: 2, ops: [vd('vethaaaaaa1')] },
      ],
      G,
    );
    assert.equal(p.text, `link set dev vethaaaaaa1 group ${g}\nlink del group ${g}\naddress del 198.18.30.1/24 dev br-user\n`);
    assert.deepEqual(p.owners[2], { opId: 1, tolerate: ['no-address', 'no-device'] });
  });

  test('creation before deletion in one mixed batch', () => {
    const p = planIpBatch(
      [
        { opId: 1, ops: [vd('vethaaaaaa1')] },
        { opId: 2, ops: [vc('vethbbbbbb1', 'vethbbbbbb2', 1500)] },
        { opId: 3, ops: [{ kind: 'bridge-create', bridge: 'bb-x', mac: '02:42:00:00:00:01', mtu: 0 }] },
      ],
      G,
    );
    assert.equal(
      p.text,
      [
        `link set dev vethaaaaaa1 group ${g}`,
        'link add name vethbbbbbb1 mtu 1500 txqueuelen 0 master br0 up type veth peer name vethbbbbbb2 mtu 1500 txqueuelen 0',
        'link add name bb-x address 02:42:00:00:00:01 type bridge',
        `link del group ${g}`,
        '',
      ].join('\n'),
    );
    assert.deepEqual(p.owners.map((o) => o.opId), [1, 2, 3, -1]);
  });

  test('nothing to do: an empty script', () => {
    const p = planIpBatch([], G);
    assert.equal(p.text, '');
    assert.deepEqual(p.owners, []);
  });
});

describe('parseIpErrors', () => {
  test('each message belongs to the Command failed line after it', () => {
    const r = parseIpErrors('RTNETLINK answers: File exists\nCommand failed -:2\nCannot find device "vethx"\nCommand failed -:3\n');
    assert.deepEqual(r.failures, [
      { line: 2, message: 'RTNETLINK answers: File exists' },
      { line: 3, message: 'Cannot find device "vethx"' },
    ]);
    assert.equal(r.unattributed, '');
  });

  test('a multi-line message is joined; a file name instead of "-" is understood', () => {
    const r = parseIpErrors('Error: argument "x" is wrong\nsecond line\nCommand failed /tmp/script:12\n');
    assert.deepEqual(r.failures, [{ line: 12, message: 'Error: argument "x" is wrong; second line' }]);
  });

  test('a failure line without text', () => {
    assert.deepEqual(parseIpErrors('Command failed -:5\n').failures, [{ line: 5, message: 'failed' }]);
  });

  test('text after the last Command failed is unattributed (ip stopped early)', () => {
    const r = parseIpErrors('RTNETLINK answers: File exists\nCommand failed -:1\nError: either "dev" is duplicate, or "x" is a garbage.\n');
    assert.equal(r.failures.length, 1);
    assert.equal(r.unattributed, 'Error: either "dev" is duplicate, or "x" is a garbage.');
  });

  test('empty stderr', () => {
    assert.deepEqual(parseIpErrors(''), { failures: [], unattributed: '' });
  });
});

describe('classifyIpError', () => {
  test('the three tolerable classes', () => {
    assert.equal(classifyIpError('Cannot find device "vethx"'), 'no-device');
    assert.equal(classifyIpError('RTNETLINK answers: No such device'), 'no-device');
    assert.equal(classifyIpError('Device "vethx" does not exist.'), 'no-device');
    assert.equal(classifyIpError('RTNETLINK answers: File exists'), 'exists');
    assert.equal(classifyIpError('RTNETLINK answers: Cannot assign requested address'), 'no-address');
    // the kernel's own (extended ack) wording, as ip prints it on Linux 6.x
    assert.equal(classifyIpError('Error: ipv4: Address already assigned.'), 'exists');
    assert.equal(classifyIpError('Error: ipv6: address already assigned.'), 'exists');
    assert.equal(classifyIpError('Error: ipv4: Address not found.'), 'no-address');
    assert.equal(classifyIpError('Error: ipv6: address not found.'), 'no-address');
    assert.equal(classifyIpError('RTNETLINK answers: Operation not permitted'), null);
  });
});

describe('attributeIpFailures', () => {
  test('no-device on a veth delete is tolerated', () => {
    const plan = planIpBatch([{ opId: 1, ops: [vd('vethaaaaaa1')] }, { opId: 2, ops: [vd('vethaaaaaa2')] }], G);
    const v = attributeIpFailures(plan, parseIpErrors('Cannot find device "vethaaaaaa1"\nCommand failed -:1\n').failures);
    assert.equal(v.failedOps.size, 0);
    assert.equal(v.groupDeleteFailed, false);
  });

  test('File exists on an address add is tolerated, on a veth create it is not', () => {
    const plan = planIpBatch(
      [
        { opId: 1, ops: [{ kind: 'bridge-addrs', bridge: 'br0', addrs: ['198.18.20.1/24'], up: true }] },
        { opId: 2, ops: [vc('vethaaaaaa1', 'vethaaaaaa2')] },
        { opId: 3, ops: [vc('vethaaaaaa3', 'vethaaaaaa4')] },
      ],
      G,
    );
    const stderr = 'RTNETLINK answers: File exists\nCommand failed -:1\nRTNETLINK answers: File exists\nCommand failed -:4\n';
    const v = attributeIpFailures(plan, parseIpErrors(stderr).failures);
    assert.deepEqual([...v.failedOps], [[3, 'RTNETLINK answers: File exists']]);
  });

  test('a failing group delete is flagged, not blamed on one op', () => {
    const plan = planIpBatch([{ opId: 1, ops: [vd('vethaaaaaa1')] }, { opId: 2, ops: [vd('vethaaaaaa2')] }], G);
    const v = attributeIpFailures(plan, parseIpErrors('RTNETLINK answers: Operation not permitted\nCommand failed -:3\n').failures);
    assert.equal(v.failedOps.size, 0);
    assert.equal(v.groupDeleteFailed, true);
  });

  test('a group delete that finds nothing is fine', () => {
    const plan = planIpBatch([{ opId: 1, ops: [vd('vethaaaaaa1')] }], G);
    const v = attributeIpFailures(plan, parseIpErrors('Cannot find device "vethaaaaaa1"\nCommand failed -:1\nRTNETLINK answers: No such device\nCommand failed -:2\n').failures);
    assert.equal(v.failedOps.size, 0);
    assert.equal(v.groupDeleteFailed, false);
  });

  test('the first message of an op is kept; lines out of range are ignored', () => {
    const plan = planIpBatch([{ opId: 5, ops: [{ kind: 'bridge-addrs', bridge: 'br0', addrs: ['198.18.20.1/24'], up: true }] }], G);
    const v = attributeIpFailures(plan, [
      { line: 1, message: 'RTNETLINK answers: Permission denied' },
      { line: 2, message: 'Cannot find device "br0"' },
      { line: 99, message: 'whatever' },
    ]);
    assert.deepEqual([...v.failedOps], [[5, 'RTNETLINK answers: Permission denied']]);
  });

  test('a bridge that cannot be created fails its op', () => {
    const plan = planIpBatch([{ opId: 1, ops: [{ kind: 'bridge-create', bridge: 'br0', mac: '02:42:00:00:00:01', mtu: 0 }] }], G);
    const v = attributeIpFailures(plan, parseIpErrors('RTNETLINK answers: File exists\nCommand failed -:1\n').failures);
    assert.equal(v.failedOps.get(1), 'RTNETLINK answers: File exists');
  });
});
