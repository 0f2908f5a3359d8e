// dockerd resends a create whose answer was lost without its body (src/api/retry-memo.ts): the
// memo answers that retry as the one recent create it can only be, and refuses when it cannot tell.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RetryMemo } from '../../src/api/retry-memo.js';

test('the one recent create of a kind is replayed once; a later call about it means dockerd has the answer', () => {
  let now = 1_000_000;
  const m = new RetryMemo(() => now);
  assert.deepEqual(m.replay('network'), { ambiguous: 0 });
  m.remember('network', 'n1', {});
  m.remember('endpoint', 'e1', { Interface: { MacAddress: '02:42:c6:12:14:02' } });
  assert.deepEqual(m.replay('endpoint'), { reply: { Interface: { MacAddress: '02:42:c6:12:14:02' } } });
  assert.deepEqual(m.replay('endpoint'), { ambiguous: 0 }, 'replayed once');
  m.forget('n1');
  assert.ok('ambiguous' in m.replay('network'), 'a call naming the network confirmed it');
  m.remember('endpoint', 'e2', {});
  now += 36_000;
  assert.ok('ambiguous' in m.replay('endpoint'), 'dockerd stops retrying after ~31 s');
});

test('two recent creates of a kind: a retry cannot be told apart, and is refused', () => {
  const m = new RetryMemo(() => 5);
  m.remember('network', 'n1', {});
  m.remember('network', 'n2', {});
  assert.deepEqual(m.replay('network'), { ambiguous: 2 });
});
