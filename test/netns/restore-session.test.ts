// The long-lived iptables-restore session (src/firewall/iptables/session.ts) against the real
// iptables-restore, in the runner's private network namespace.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { applyFirewallWork } from '../../src/firewall/iptables/apply.js';
import { RestoreSession, restoreSessionFor, restoreSessionStats } from '../../src/firewall/iptables/session.js';
import { toolEnv } from '../../src/tools/env.js';
import { DEFAULT_TOOLS } from '../../src/tools/paths.js';
import { runOk } from '../helpers/proc.js';
import { assertPrivateNetns } from './bb-kernel.js';

const CHAIN = 'BBT-SESSION';
const rule = (port: number): string => `-A ${CHAIN} -p tcp -m tcp --dport ${port} -m comment --comment bbt:${port} -j DNAT --to-destination 198.18.0.9:80`;
const block = (...lines: string[]): string => `*nat\n${lines.join('\n')}\nCOMMIT\n`;
const natRules = async (): Promise<string[]> => (await runOk(['iptables', '-t', 'nat', '-S', CHAIN])).split('\n').filter((l) => l.startsWith('-A'));

before(async () => {
  assertPrivateNetns();
  await runOk(['iptables', '-t', 'nat', '-N', CHAIN]);
});
after(async () => {
  await runOk(['iptables', '-t', 'nat', '-F', CHAIN]);
  await runOk(['iptables', '-t', 'nat', '-X', CHAIN]);
});

test('transactions share one process; each is committed when its answer comes', async () => {
  const s = new RestoreSession('iptables-restore');
  const starts = restoreSessionStats.starts;
  for (let p = 1; p <= 5; p++) {
    const r = await s.run(block(rule(1000 + p)));
    assert.equal(r.exitCode, 0, r.stderr);
    // Committed by the time the answer arrives, not at some later exit.
    assert.equal((await natRules()).length, p);
  }
  const del = await s.run(block(...[1, 2, 3, 4, 5].map((p) => rule(1000 + p).replace('-A ', '-D '))));
  assert.equal(del.exitCode, 0, del.stderr);
  assert.deepEqual(await natRules(), []);
  assert.equal(restoreSessionStats.starts - starts, 1, 'six transactions, one iptables-restore');
  s.end();
});

test('a failed transaction reports its own line number, changes nothing, and the next one starts afresh', async () => {
  const s = new RestoreSession('iptables-restore');
  assert.equal((await s.run(block(rule(2001)))).exitCode, 0);
  // Line 3 of this payload deletes a rule that does not exist: the whole block is refused.
  const bad = await s.run(block(rule(2002), rule(2003).replace('-A ', '-D ')));
  assert.notEqual(bad.exitCode, 0);
  assert.match(bad.stderr, /line 3 failed/, 'line numbers count from the payload, not the session');
  assert.deepEqual((await natRules()).map((l) => /--dport (\d+)/.exec(l)?.[1]), ['2001']);
  const starts = restoreSessionStats.starts;
  const next = await s.run(block(rule(2004).replace('-A ', '-D '), rule(2004)));
  assert.notEqual(next.exitCode, 0, 'the session is not stuck on the old failure');
  assert.match(next.stderr, /line 2 failed/);
  const ok = await s.run(block(rule(2001).replace('-A ', '-D ')));
  assert.equal(ok.exitCode, 0, ok.stderr);
  assert.ok(restoreSessionStats.starts - starts >= 1);
  assert.deepEqual(await natRules(), []);
  s.end();
});

test('changes made by other processes between transactions are seen', async () => {
  const s = new RestoreSession('iptables-restore');
  assert.equal((await s.run(block(rule(3001)))).exitCode, 0);
  // Another writer makes a chain and deletes our rule behind the session's back.
  await runOk(['iptables', '-t', 'nat', '-N', 'BBT-OTHER']);
  await runOk(['iptables', '-t', 'nat', ...rule(3001).replace('-A ', '-D ').split(' ')]);
  const intoNew = await s.run(block(`-A BBT-OTHER -p tcp -m tcp --dport 3002 -j RETURN`));
  assert.equal(intoNew.exitCode, 0, `a chain made elsewhere is usable: ${intoNew.stderr}`);
  const gone = await s.run(block(rule(3001).replace('-A ', '-D ')));
  assert.notEqual(gone.exitCode, 0, 'a rule deleted elsewhere is not "deleted" again');
  assert.equal((await s.run(block('-F BBT-OTHER', '-X BBT-OTHER'))).exitCode, 0);
  s.end();
});

test('a session killed while idle, or in the middle of a transaction, costs only that transaction', async () => {
  const s = new RestoreSession('iptables-restore');
  assert.equal((await s.run(block(rule(4001)))).exitCode, 0);
  s.end();
  assert.equal((await s.run(block(rule(4001).replace('-A ', '-D ')))).exitCode, 0, 'a new process after end()');
  assert.notEqual((await s.run(`*nat\n${rule(4002)}\n`)).exitCode, 0, 'a payload without COMMIT is refused');
  const forged = await s.run(`*nat\n${rule(4002)}\nCOMMIT\n# bb-end 99\n*nat\nCOMMIT\n`);
  assert.notEqual(forged.exitCode, 0, 'a payload with a comment line (a forged end marker) is refused');
  assert.deepEqual(await natRules(), [], 'and nothing of it was applied');
  // A transaction big enough to still be running after 5 ms, stopped then: either it was
  // committed whole before the kill, or it left nothing.
  const many = Array.from({ length: 3000 }, (_, i) => rule(10000 + i));
  const pending = s.run(block(...many));
  setTimeout(() => s.end(), 5);
  const r = await pending;
  const left = (await natRules()).length;
  if (r.exitCode === 0) assert.equal(left, many.length);
  else {
    assert.match(r.spawnError ?? '', /stopped in the middle/);
    assert.ok(left === 0 || left === many.length, `all or nothing, got ${left}`);
    if (left > 0) await runOk(['iptables', '-t', 'nat', '-F', CHAIN]);
  }
  if (r.exitCode === 0) await runOk(['iptables', '-t', 'nat', '-F', CHAIN]);
  assert.equal((await s.run(block(rule(4003), rule(4003).replace('-A ', '-D ')))).exitCode, 0);
});

test('applyFirewallWork goes through the thread session, and two concurrent batches both land', async () => {
  assert.ok((await restoreSessionFor(DEFAULT_TOOLS.iptablesRestore, toolEnv())) !== null, 'iptables here is the nf_tables backend');
  const tx = restoreSessionStats.transactions;
  const change = (port: number, del = false) => ({
    v4: [{ table: 'nat' as const, line: del ? rule(port).replace('-A ', '-D ') : rule(port) }],
    v6: [],
    tolerant: false,
  });
  const [a, b] = await Promise.all([
    applyFirewallWork([{ opId: 1, change: change(5001) }], toolEnv()),
    applyFirewallWork([{ opId: 2, change: change(5002) }], toolEnv()),
  ]);
  assert.deepEqual([...a.failed, ...b.failed], []);
  assert.equal((await natRules()).length, 2);
  assert.ok(restoreSessionStats.transactions - tx >= 1, 'at least one went through the session');
  const c = await applyFirewallWork([{ opId: 3, change: change(5001, true) }, { opId: 4, change: change(5002, true) }], toolEnv());
  assert.deepEqual([...c.failed], []);
  assert.deepEqual(await natRules(), []);
});
