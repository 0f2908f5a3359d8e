// Kernel tests of the firewall runner and the conntrack flush, in this runner's private netns.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { RuleLine } from '../../src/firewall/types.js';
import { applyFirewallWork } from '../../src/firewall/iptables/apply.js';
import { flushConntrack } from '../../src/workers/conntrack.js';
import { toolEnv } from '../../src/tools/env.js';
import { run, runOk } from '../helpers/proc.js';

const nat = (line: string): RuleLine => ({ table: 'nat', line });
const rule = (i: number): string => `BBT-APPLY -p tcp -m tcp --dport ${40000 + i} -m comment --comment bb:ep=t${i} -j DNAT --to-destination 198.18.30.${i}:80`;

async function natRules(family: 4 | 6): Promise<string[]> {
  return (await runOk([family === 4 ? 'iptables' : 'ip6tables', '-t', 'nat', '-S', 'BBT-APPLY'])).split('\n').filter((l) => l.startsWith('-A '));
}

test('one bad operation in a batch fails alone; the others are applied', async () => {
  await runOk(['iptables', '-t', 'nat', '-N', 'BBT-APPLY']);
  await runOk(['ip6tables', '-t', 'nat', '-N', 'BBT-APPLY']);
  try {
    const works = [1, 2, 3, 4, 5, 6].map((i) => ({
      opId: i,
      change: {
        v4: [nat(`-A ${rule(i)}`)],
        // op 3: a target that does not exist; op 5: an IPv6 rule naming a chain that does not
        // exist (its IPv4 half must be taken back)
        v6: i === 5 ? [nat('-A BBT-MISSING -j RETURN')] : [],
        tolerant: false,
      },
    }));
    const bad = works[2];
    assert.ok(bad);
    works[2] = { opId: 3, change: { v4: [nat('-A BBT-APPLY -p tcp -m tcp --dport 1 -j BBT-NO-SUCH-CHAIN')], v6: [], tolerant: false } };
    const out = await applyFirewallWork(works, toolEnv());
    assert.deepEqual([...out.failed.keys()].sort(), [3, 5]);
    assert.deepEqual((await natRules(4)).map((l) => /--dport (\d+)/.exec(l)?.[1]), ['40001', '40002', '40004', '40006']);

    // Removals are tolerant: already-gone rules do not sink the batch.
    const rm = await applyFirewallWork(
      [1, 2, 3].map((i) => ({ opId: i, change: { v4: [nat(`-D ${rule(i)}`)], v6: [], tolerant: true } })),
      toolEnv(),
    );
    assert.equal(rm.failed.size, 0);
    assert.deepEqual((await natRules(4)).map((l) => /--dport (\d+)/.exec(l)?.[1]), ['40004', '40006']);
  } finally {
    await run(['iptables', '-t', 'nat', '-F', 'BBT-APPLY']);
    await run(['iptables', '-t', 'nat', '-X', 'BBT-APPLY']);
    await run(['ip6tables', '-t', 'nat', '-X', 'BBT-APPLY']);
  }
});

test('conntrack flush deletes the flows of an endpoint address, and only those', async () => {
  const add = (src: string, dst: string, sport: number): Promise<string> =>
    runOk(['conntrack', '-I', '-p', 'tcp', '-s', src, '-d', dst, '--sport', String(sport), '--dport', '80', '--state', 'ESTABLISHED', '-t', '120', '-u', 'SEEN_REPLY']);
  const list = async (): Promise<string> => (await run(['conntrack', '-L', '-p', 'tcp'])).stdout;
  await add('198.19.255.2', '198.18.31.2', 40001); // an inbound flow to the endpoint (reply src = endpoint)
  await add('198.18.31.2', '198.19.255.2', 40002); // a flow the endpoint opened (reply dst = endpoint)
  await add('198.18.31.3', '198.19.255.2', 40003); // another endpoint's flow
  assert.match(await list(), /198\.18\.31\.2/);
  await flushConntrack([{ family: 4, address: '198.18.31.2' }], toolEnv());
  const left = await list();
  assert.doesNotMatch(left, /198\.18\.31\.2 /);
  assert.match(left, /src=198\.18\.31\.3 /);
  await runOk(['conntrack', '-D', '-s', '198.18.31.3']);
});
