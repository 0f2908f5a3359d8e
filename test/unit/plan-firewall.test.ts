// Golden strings for the iptables planners: per-network rules, restore payloads, hooks, DNAT.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { FwNetwork, RuleLine } from '../../src/firewall/types.js';
import { planHooks, readHookState } from '../../src/firewall/iptables/hooks.js';
import { baseChains } from '../../src/firewall/iptables/layout.js';
import { renderRestorePayload } from '../../src/firewall/iptables/lines.js';
import { planEndpointPortsAdd, planEndpointPortsRemove, planNetworkAdd, planNetworkRemove } from '../../src/firewall/iptables/plan.js';
import { dnatRuleSpec } from '../../src/firewall/iptables/ports.js';
import { networkRuleSpecs } from '../../src/firewall/iptables/rules.js';
import type { PortMapping } from '../../src/state/records.js';
import { fwNetwork } from './fw-fixture.js';

const N: FwNetwork = fwNetwork({ id: 'aaaabbbbcccc0000dddd', bridge: 'br-test' });
const T = '-m comment --comment bb:net=aaaabbbbcccc';

const render = (rules: RuleLine[]): string[] => rules.map((r) => `${r.table} ${r.line}`);

describe('networkRuleSpecs', () => {
  test('default network (icc, masquerade)', () => {
    assert.deepEqual(render(networkRuleSpecs(N, 4)), [
      `filter BB-ISOLATION-1 -i br-test ! -o br-test ${T} -j BB-ISOLATION-2`,
      `filter BB-ISOLATION-2 -o br-test ${T} -j DROP`,
      `filter BB-FORWARD -o br-test -m conntrack --ctstate RELATED,ESTABLISHED ${T} -j ACCEPT`,
      `filter BB-FORWARD -o br-test -m conntrack --ctstate DNAT ${T} -j ACCEPT`,
      `filter BB-FORWARD -i br-test ! -o br-test ${T} -j ACCEPT`,
      `filter BB-FORWARD -i br-test -o br-test ${T} -j ACCEPT`,
      `filter BB-FORWARD -o br-test ${T} -j DROP`,
      `nat BB-POSTROUTING -s 198.18.20.0/24 ! -o br-test ${T} -j MASQUERADE`,
      `nat BB-POSTROUTING -s 198.18.20.0/24 -o br-test -m conntrack --ctstate DNAT ${T} -j MASQUERADE`,
      `nat BB-POSTROUTING -o br-test -m addrtype --src-type LOCAL ${T} -j MASQUERADE`,
    ]);
  });

  test('icc=false drops bridge-internal traffic', () => {
    const rules = render(networkRuleSpecs({ ...N, icc: false }, 4));
    assert.ok(rules.includes(`filter BB-FORWARD -i br-test -o br-test ${T} -j DROP`));
    assert.ok(!rules.includes(`filter BB-FORWARD -i br-test -o br-test ${T} -j ACCEPT`));
    assert.equal(rules.length, 10);
  });

  test('masquerade=false: no subnet masquerade, hairpin rules stay', () => {
    assert.deepEqual(render(networkRuleSpecs({ ...N, masquerade: false }, 4)).filter((l) => l.startsWith('nat ')), [
      `nat BB-POSTROUTING -s 198.18.20.0/24 -o br-test -m conntrack --ctstate DNAT ${T} -j MASQUERADE`,
      `nat BB-POSTROUTING -o br-test -m addrtype --src-type LOCAL ${T} -j MASQUERADE`,
    ]);
  });

  test('internal network: isolation both ways (inserted at the top) and ICC only', () => {
    const rules = networkRuleSpecs({ ...N, internal: true }, 4);
    assert.deepEqual(render(rules), [
      `filter BB-ISOLATION-1 -i br-test ! -o br-test ${T} -j DROP`,
      `filter BB-ISOLATION-1 -o br-test ! -i br-test ${T} -j DROP`,
      `filter BB-FORWARD -i br-test -o br-test ${T} -j ACCEPT`,
    ]);
    assert.deepEqual(rules.map((r) => r.insert === true), [true, true, false]);
    assert.deepEqual(planNetworkAdd({ ...N, internal: true }).v4.map((r) => r.line), [
      `-I BB-ISOLATION-1 1 -i br-test ! -o br-test ${T} -j DROP`,
      `-I BB-ISOLATION-1 1 -o br-test ! -i br-test ${T} -j DROP`,
      `-A BB-FORWARD -i br-test -o br-test ${T} -j ACCEPT`,
    ]);
    // removal names the same rules with -D
    assert.deepEqual(planNetworkRemove({ ...N, internal: true }).v4.map((r) => r.line), [
      `-D BB-ISOLATION-1 -i br-test ! -o br-test ${T} -j DROP`,
      `-D BB-ISOLATION-1 -o br-test ! -i br-test ${T} -j DROP`,
      `-D BB-FORWARD -i br-test -o br-test ${T} -j ACCEPT`,
    ]);
    assert.deepEqual(render(networkRuleSpecs({ ...N, internal: true, icc: false }, 4))[2], `filter BB-FORWARD -i br-test -o br-test ${T} -j DROP`);
    assert.ok(!render(networkRuleSpecs({ ...N, internal: true }, 4)).some((l) => l.startsWith('nat ')), 'no masquerade');
  });

  test('host_ipv4: SNAT instead of MASQUERADE', () => {
    const nat = render(networkRuleSpecs({ ...N, hostIpv4: '198.19.0.7' }, 4)).filter((l) => l.startsWith('nat '));
    assert.equal(nat[0], `nat BB-POSTROUTING -s 198.18.20.0/24 ! -o br-test ${T} -j SNAT --to-source 198.19.0.7`);
    assert.equal(nat.length, 3);
  });

  test('routed gateway mode: containers reachable directly, no masquerade', () => {
    const rules = render(networkRuleSpecs({ ...N, gatewayModeIpv4: 'routed' }, 4));
    assert.ok(rules.includes(`filter BB-FORWARD -o br-test ${T} -j ACCEPT`));
    assert.ok(!rules.includes(`filter BB-FORWARD -o br-test ${T} -j DROP`));
    assert.ok(!rules.some((l) => l.startsWith('nat BB-POSTROUTING -s 198.18.20.0/24 ! -o')));
    // the v4 mode does not change v6
    const v6 = render(networkRuleSpecs({ ...N, enableIpv6: true, subnet6: 'fd00:20::/64', gatewayModeIpv4: 'routed' }, 6));
    assert.ok(v6.includes(`filter BB-FORWARD -o br-test ${T} -j DROP`));
    assert.ok(v6.includes(`nat BB-POSTROUTING -s fd00:20::/64 ! -o br-test ${T} -j MASQUERADE`));
  });

  test('ids that could break a payload are refused', () => {
    assert.throws(() => networkRuleSpecs({ ...N, id: 'x y' }, 4), /refusing id/);
    assert.throws(() => networkRuleSpecs({ ...N, id: 'x\n-A FORWARD -j ACCEPT' }, 4), /refusing id/);
  });

  test('IPv6 rules use the v6 subnet; without one, only the LOCAL hairpin', () => {
    const v6 = render(networkRuleSpecs({ ...N, enableIpv6: true, subnet6: 'fd00:20::/64' }, 6)).filter((l) => l.startsWith('nat '));
    assert.deepEqual(v6, [
      `nat BB-POSTROUTING -s fd00:20::/64 ! -o br-test ${T} -j MASQUERADE`,
      `nat BB-POSTROUTING -s fd00:20::/64 -o br-test -m conntrack --ctstate DNAT ${T} -j MASQUERADE`,
      `nat BB-POSTROUTING -o br-test -m addrtype --src-type LOCAL ${T} -j MASQUERADE`,
    ]);
    const none = render(networkRuleSpecs({ ...N, enableIpv6: true }, 6)).filter((l) => l.startsWith('nat '));
    assert.deepEqual(none, [`nat BB-POSTROUTING -o br-test -m addrtype --src-type LOCAL ${T} -j MASQUERADE`]);
  });

  test('planNetworkAdd / planNetworkRemove: -A / -D, v6 only when enabled, removal tolerant', () => {
    const add = planNetworkAdd(N);
    assert.equal(add.tolerant, false);
    assert.equal(add.v6.length, 0);
    assert.deepEqual(add.v4.map((r) => r.line), networkRuleSpecs(N, 4).map((r) => `-A ${r.line}`));
    const rm = planNetworkRemove({ ...N, enableIpv6: true });
    assert.equal(rm.tolerant, true);
    assert.deepEqual(rm.v6.map((r) => r.line), networkRuleSpecs({ ...N, enableIpv6: true }, 6).map((r) => `-D ${r.line}`));
  });
});

describe('renderRestorePayload', () => {
  test('one block per table in raw, mangle, nat, filter order; owners per line', () => {
    const out = renderRestorePayload([
      { owner: 1, lines: [{ table: 'filter', line: '-A BB-FORWARD -o br1 -j DROP' }, { table: 'nat', line: '-A BB-POSTROUTING -o br1 -j MASQUERADE' }] },
      { owner: 2, lines: [{ table: 'filter', line: '-A BB-FORWARD -o br2 -j DROP' }] },
    ]);
    assert.equal(
      out.text,
      '*nat\n-A BB-POSTROUTING -o br1 -j MASQUERADE\nCOMMIT\n*filter\n-A BB-FORWARD -o br1 -j DROP\n-A BB-FORWARD -o br2 -j DROP\nCOMMIT\n',
    );
    assert.deepEqual(out.owners, [null, 1, null, null, 1, 2, null]);
  });

  test('chain declarations come first within their table', () => {
    const out = renderRestorePayload([
      {
        owner: 0,
        lines: [
          { table: 'filter', line: ':BB-FORWARD - [0:0]' },
          { table: 'nat', line: ':BB-DNAT - [0:0]' },
          { table: 'filter', line: '-A BB-FORWARD -j BB-ISOLATION-1' },
          { table: 'filter', line: ':BB-ISOLATION-1 - [0:0]' },
        ],
      },
      { owner: 3, lines: [{ table: 'nat', line: '-A BB-DNAT -j RETURN' }] },
    ]);
    assert.equal(
      out.text,
      [
        '*nat',
        ':BB-DNAT - [0:0]',
        '-A BB-DNAT -j RETURN',
        'COMMIT',
        '*filter',
        ':BB-FORWARD - [0:0]',
        ':BB-ISOLATION-1 - [0:0]',
        '-A BB-FORWARD -j BB-ISOLATION-1',
        'COMMIT',
        '',
      ].join('\n'),
    );
    assert.deepEqual(out.owners, [null, 0, 3, null, null, 0, 0, 0, null]);
  });

  test('the base chains: every chain declared before any rule of its table, every jump target declared', () => {
    const out = renderRestorePayload([{ owner: 0, lines: baseChains() }]);
    const lines = out.text.split('\n');
    assert.equal(lines.length, out.owners.length + 1);
    const declared = new Set<string>();
    let table = '';
    let seenRule = false;
    for (const l of lines) {
      if (l.startsWith('*')) {
        table = l.slice(1);
        seenRule = false;
      } else if (l.startsWith(':')) {
        assert.equal(seenRule, false, `declaration after a rule in ${table}: ${l}`);
        declared.add(`${table} ${l.slice(1, l.indexOf(' '))}`);
      } else if (l.startsWith('-A ')) {
        seenRule = true;
        const chain = l.split(' ')[1] as string;
        assert.ok(declared.has(`${table} ${chain}`), `rule in an undeclared chain: ${l}`);
        const target = / -j (BB-\S+)/.exec(l)?.[1];
        if (target !== undefined) assert.ok(declared.has(`${table} ${target}`), `jump to an undeclared chain: ${l}`);
      }
    }
    for (const chain of ['BB-FORWARD', 'BB-ISOLATION-1', 'BB-ISOLATION-2']) assert.ok(declared.has(`filter ${chain}`));
    for (const chain of ['BB-DNAT', 'BB-POSTROUTING']) assert.ok(declared.has(`nat ${chain}`));
    assert.ok(lines.includes('-A BB-FORWARD -j BB-ISOLATION-1'));
  });

  test('a declaration after rules of its table is moved up', () => {
    const out = renderRestorePayload([
      { owner: 1, lines: [{ table: 'filter', line: '-A X -j DROP' }] },
      { owner: 2, lines: [{ table: 'filter', line: ':X - [0:0]' }] },
    ]);
    assert.equal(out.text, '*filter\n:X - [0:0]\n-A X -j DROP\nCOMMIT\n');
    assert.deepEqual(out.owners, [null, 2, 1, null]);
  });

  test('raw and mangle blocks come before nat', () => {
    const out = renderRestorePayload([
      { owner: 1, lines: [{ table: 'filter', line: '-A F' }, { table: 'mangle', line: '-A M' }, { table: 'raw', line: '-A R' }, { table: 'nat', line: '-A N' }] },
    ]);
    assert.equal(out.text, '*raw\n-A R\nCOMMIT\n*mangle\n-A M\nCOMMIT\n*nat\n-A N\nCOMMIT\n*filter\n-A F\nCOMMIT\n');
  });

  test('nothing: empty text', () => {
    assert.deepEqual(renderRestorePayload([]), { text: '', owners: [] });
    assert.deepEqual(renderRestorePayload([{ owner: 1, lines: [] }]), { text: '', owners: [] });
  });
});

describe('hooks', () => {
  const save = (filterRules: string[], natRules: string[], mangleRules: string[] = []): string =>
    [
      '*mangle',
      ':PREROUTING ACCEPT [0:0]',
      ':POSTROUTING ACCEPT [0:0]',
      ...mangleRules,
      'COMMIT',
      '# Generated by iptables-save v1.8.9 (nf_tables)',
      '*filter',
      ':INPUT ACCEPT [0:0]',
      ':FORWARD DROP [0:0]',
      ':OUTPUT ACCEPT [0:0]',
      ':DOCKER-USER - [0:0]',
      ...filterRules,
      'COMMIT',
      '*nat',
      ':PREROUTING ACCEPT [0:0]',
      ':OUTPUT ACCEPT [0:0]',
      ':POSTROUTING ACCEPT [0:0]',
      ...natRules,
      'COMMIT',
      '',
    ].join('\n');

  test('nothing present, no DOCKER-USER: insert every hook at the top', () => {
    const st = readHookState(save([], []));
    assert.deepEqual(st, { forwardJumps: 0, dockerUserFirst: false, preroutingJumps: 0, outputJumps: 0, postroutingJumps: 0, mangleJumps: 0 });
    assert.deepEqual(render(planHooks(st)), [
      'filter -I FORWARD 1 -j BB-FORWARD',
      'nat -I PREROUTING 1 -m addrtype --dst-type LOCAL -j BB-DNAT',
      'nat -I OUTPUT 1 -m addrtype --dst-type LOCAL -j BB-DNAT',
      'nat -I POSTROUTING 1 -j BB-POSTROUTING',
      'mangle -I POSTROUTING 1 -j BB-MANGLE',
    ]);
  });

  test('DOCKER-USER first in FORWARD: our jump goes right after it', () => {
    const st = readHookState(save(['-A FORWARD -j DOCKER-USER', '-A FORWARD -j DOCKER-ISOLATION-STAGE-1'], []));
    assert.equal(st.dockerUserFirst, true);
    assert.equal(render(planHooks(st))[0], 'filter -I FORWARD 2 -j BB-FORWARD');
  });

  test('DOCKER-USER present but not first: top', () => {
    const st = readHookState(save(['-A FORWARD -j DOCKER-ISOLATION-STAGE-1', '-A FORWARD -j DOCKER-USER'], []));
    assert.equal(st.dockerUserFirst, false);
    assert.equal(render(planHooks(st))[0], 'filter -I FORWARD 1 -j BB-FORWARD');
  });

  test('duplicates are removed down to one; present-once hooks are left alone', () => {
    const st = readHookState(
      save(
        ['-A FORWARD -j DOCKER-USER', '-A FORWARD -j BB-FORWARD', '-A FORWARD -j BB-FORWARD', '-A FORWARD -j BB-FORWARD'],
        [
          '-A PREROUTING -m addrtype --dst-type LOCAL -j BB-DNAT',
          '-A OUTPUT -m addrtype --dst-type LOCAL -j BB-DNAT',
          '-A OUTPUT -m addrtype --dst-type LOCAL -j BB-DNAT',
          '-A POSTROUTING -j BB-POSTROUTING',
        ],
        ['-A POSTROUTING -j BB-MANGLE'],
      ),
    );
    assert.deepEqual(st, { forwardJumps: 3, dockerUserFirst: true, preroutingJumps: 1, outputJumps: 2, postroutingJumps: 1, mangleJumps: 1 });
    assert.deepEqual(render(planHooks(st)), [
      'filter -D FORWARD -j BB-FORWARD',
      'filter -D FORWARD -j BB-FORWARD',
      'nat -D OUTPUT -m addrtype --dst-type LOCAL -j BB-DNAT',
    ]);
  });

  test('all present exactly once: nothing to do', () => {
    const st = readHookState(
      save(
        ['-A FORWARD -j BB-FORWARD'],
        ['-A PREROUTING -m addrtype --dst-type LOCAL -j BB-DNAT', '-A OUTPUT -m addrtype --dst-type LOCAL -j BB-DNAT', '-A POSTROUTING -j BB-POSTROUTING'],
        ['-A POSTROUTING -j BB-MANGLE'],
      ),
    );
    assert.deepEqual(planHooks(st), []);
  });

  test('hooks are counted in their own table: a nat POSTROUTING rule is not the mangle hook', () => {
    const st = readHookState(save([], ['-A POSTROUTING -j BB-MANGLE', '-A POSTROUTING -j BB-POSTROUTING'], ['-A POSTROUTING -j BB-POSTROUTING']));
    assert.equal(st.mangleJumps, 0);
    assert.equal(st.postroutingJumps, 1);
  });
});

describe('DNAT rules for published ports', () => {
  const m = (over: Partial<PortMapping>): PortMapping => ({
    proto: 'tcp',
    family: 4,
    hostIp: '0.0.0.0',
    hostPort: 8080,
    containerIp: '198.18.20.2',
    containerPort: 80,
    ...over,
  });

  test('v4, all addresses', () => {
    assert.equal(
      dnatRuleSpec('eeeeffff00001111', m({})),
      'BB-DNAT-15 -p tcp -m tcp --dport 8080 -m comment --comment bb:ep=eeeeffff0000 -j DNAT --to-destination 198.18.20.2:80',
    );
    // bucket chains of 512 host ports
    assert.match(dnatRuleSpec('eeeeffff00001111', m({ hostPort: 1 })), /^BB-DNAT-0 /);
    assert.match(dnatRuleSpec('eeeeffff00001111', m({ hostPort: 511 })), /^BB-DNAT-0 /);
    assert.match(dnatRuleSpec('eeeeffff00001111', m({ hostPort: 512 })), /^BB-DNAT-1 /);
    assert.match(dnatRuleSpec('eeeeffff00001111', m({ hostPort: 65535 })), /^BB-DNAT-127 /);
  });

  test('v6, all addresses: bracketed destination', () => {
    assert.equal(
      dnatRuleSpec('eeeeffff00001111', m({ family: 6, hostIp: '::', containerIp: 'fd00:20::2', proto: 'udp', hostPort: 5353, containerPort: 53 })),
      'BB-DNAT-10 -p udp -m udp --dport 5353 -m comment --comment bb:ep=eeeeffff0000 -j DNAT --to-destination [fd00:20::2]:53',
    );
  });

  test('a specific host IP', () => {
    assert.equal(
      dnatRuleSpec('eeeeffff00001111', m({ hostIp: '198.19.0.5', proto: 'sctp' })),
      'BB-DNAT-SCTP -d 198.19.0.5/32 -p sctp -m sctp --dport 8080 -m comment --comment bb:ep=eeeeffff0000 -j DNAT --to-destination 198.18.20.2:80',
    );
    assert.equal(
      dnatRuleSpec('eeeeffff00001111', m({ family: 6, hostIp: 'fd00::5', containerIp: 'fd00:20::2' })),
      'BB-DNAT-15 -d fd00::5/128 -p tcp -m tcp --dport 8080 -m comment --comment bb:ep=eeeeffff0000 -j DNAT --to-destination [fd00:20::2]:80',
    );
  });

  test('add/remove split by family in the nat table', () => {
    const maps = [m({}), m({ family: 6, hostIp: '::', containerIp: 'fd00:20::2' })];
    const add = planEndpointPortsAdd('eeeeffff00001111', maps);
    assert.equal(add.tolerant, false);
    assert.deepEqual(add.v4, [{ table: 'nat', line: `-A ${dnatRuleSpec('eeeeffff00001111', maps[0] as PortMapping)}` }]);
    assert.deepEqual(add.v6, [{ table: 'nat', line: `-A ${dnatRuleSpec('eeeeffff00001111', maps[1] as PortMapping)}` }]);
    const rm = planEndpointPortsRemove('eeeeffff00001111', maps);
    assert.equal(rm.tolerant, true);
    assert.equal(rm.v4[0]?.line, `-D ${dnatRuleSpec('eeeeffff00001111', maps[0] as PortMapping)}`);
  });

  test('sctp also gets the CHECKSUM fill rule in mangle', () => {
    const add = planEndpointPortsAdd('eeeeffff00001111', [m({ proto: 'sctp' })]);
    assert.deepEqual(add.v4, [
      { table: 'nat', line: '-A BB-DNAT-SCTP -p sctp -m sctp --dport 8080 -m comment --comment bb:ep=eeeeffff0000 -j DNAT --to-destination 198.18.20.2:80' },
      { table: 'mangle', line: '-A BB-MANGLE -p sctp -m sctp --sport 80 -m comment --comment bb:ep=eeeeffff0000 -j CHECKSUM --checksum-fill' },
    ]);
  });

  test('bindings from the books are re-checked before they reach a payload', () => {
    assert.throws(() => dnatRuleSpec('eeeeffff00001111', m({ hostPort: 0 })), /refusing host port/);
    assert.throws(() => dnatRuleSpec('eeeeffff00001111', m({ containerIp: '198.18.20.2 -j ACCEPT' })));
    assert.throws(() => dnatRuleSpec('eeeeffff00001111', m({ proto: 'icmp' as PortMapping['proto'] })), /refusing protocol/);
  });
});
