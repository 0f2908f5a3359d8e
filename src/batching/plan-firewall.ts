// Pure planner for batchbridge's iptables rules. Chains are our own (never Docker's names), so
// dockerd's own flush of DOCKER* chains at its start cannot touch them.
//
// Layout (v4; v6 mirrors it for IPv6-enabled networks):
//   filter FORWARD        -j BB-FORWARD            (below DOCKER-USER when that exists)
//   filter BB-FORWARD     -j BB-ISOLATION-1        (first rule, fixed)
//                         per network: established, DNAT-ed, outgoing, ICC, final drop
//   filter BB-ISOLATION-1 per non-internal network: -i br ! -o br -j BB-ISOLATION-2
//   filter BB-ISOLATION-2 per network: -o br -j DROP
//   nat PREROUTING/OUTPUT -m addrtype --dst-type LOCAL -j BB-DNAT
//   nat POSTROUTING       -j BB-POSTROUTING
//   nat BB-POSTROUTING    per network: masquerade, hairpin
//
// Every rule carries a comment naming its owner (bb:net=<id12> / bb:ep=<id12>) so that an orphan
// sweep can tell whose rule it is without guessing.
import type { RuleLine, FirewallChange, IpTable } from './ops.js';

export const CHAINS = {
  forward: 'BB-FORWARD',
  isolation1: 'BB-ISOLATION-1',
  isolation2: 'BB-ISOLATION-2',
  dnat: 'BB-DNAT',
  postrouting: 'BB-POSTROUTING',
} as const;

export interface FwNetwork {
  readonly id: string;
  readonly bridge: string;
  readonly subnet4: string; // masked network, "198.18.20.0/24"
  readonly subnet6: string | null;
  readonly enableIpv6: boolean;
  readonly icc: boolean;
  readonly masquerade: boolean;
  readonly hostIpv4: string | null;
  readonly internal: boolean;
  readonly gatewayModeIpv4: 'nat' | 'routed';
  readonly gatewayModeIpv6: 'nat' | 'routed';
}

export function netTag(id: string): string {
  return `bb:net=${id.slice(0, 12)}`;
}

export function epTag(id: string): string {
  return `bb:ep=${id.slice(0, 12)}`;
}

const c = (tag: string): string => `-m comment --comment ${tag}`;

/** The rules of one network in one family, as "CHAIN rest-of-rule" specs per table. */
export function networkRuleSpecs(n: FwNetwork, family: 4 | 6): RuleLine[] {
  const subnet = family === 4 ? n.subnet4 : n.subnet6;
  const br = n.bridge;
  const tag = c(netTag(n.id));
  const out: RuleLine[] = [];
  const filter = (spec: string): void => void out.push({ table: 'filter', line: spec });
  const nat = (spec: string): void => void out.push({ table: 'nat', line: spec });
  const mode = family === 4 ? n.gatewayModeIpv4 : n.gatewayModeIpv6;

  if (n.internal) {
    filter(`${CHAINS.isolation1} -i ${br} ! -o ${br} ${tag} -j DROP`);
    filter(`${CHAINS.isolation1} -o ${br} ! -i ${br} ${tag} -j DROP`);
    filter(`${CHAINS.forward} -i ${br} -o ${br} ${tag} -j ${n.icc ? 'ACCEPT' : 'DROP'}`);
    return out;
  }
  filter(`${CHAINS.isolation1} -i ${br} ! -o ${br} ${tag} -j ${CHAINS.isolation2}`);
  filter(`${CHAINS.isolation2} -o ${br} ${tag} -j DROP`);
  filter(`${CHAINS.forward} -o ${br} -m conntrack --ctstate RELATED,ESTABLISHED ${tag} -j ACCEPT`);
  // Published ports: only flows our DNAT rules rewrote reach a container from outside, so one
  // rule per network replaces Docker's per-port ACCEPT rules.
  filter(`${CHAINS.forward} -o ${br} -m conntrack --ctstate DNAT ${tag} -j ACCEPT`);
  filter(`${CHAINS.forward} -i ${br} ! -o ${br} ${tag} -j ACCEPT`);
  filter(`${CHAINS.forward} -i ${br} -o ${br} ${tag} -j ${n.icc ? 'ACCEPT' : 'DROP'}`);
  if (mode === 'routed') filter(`${CHAINS.forward} -o ${br} -p icmp ${tag} -j ACCEPT`.replace('-p icmp', family === 4 ? '-p icmp' : '-p ipv6-icmp'));
  filter(`${CHAINS.forward} -o ${br} ${tag} -j DROP`);
  if (subnet !== null && n.masquerade && mode === 'nat') {
    if (family === 4 && n.hostIpv4 !== null) {
      nat(`${CHAINS.postrouting} -s ${subnet} ! -o ${br} ${tag} -j SNAT --to-source ${n.hostIpv4}`);
    } else {
      nat(`${CHAINS.postrouting} -s ${subnet} ! -o ${br} ${tag} -j MASQUERADE`);
    }
  }
  // Hairpin: a container (or the host through 127.0.0.1) reaching a published port of a
  // container on this bridge must see replies come back through the host.
  if (subnet !== null) nat(`${CHAINS.postrouting} -s ${subnet} -o ${br} -m conntrack --ctstate DNAT ${tag} -j MASQUERADE`);
  nat(`${CHAINS.postrouting} -o ${br} -m addrtype --src-type LOCAL ${tag} -j MASQUERADE`);
  return out;
}

function familyApplies(n: FwNetwork, family: 4 | 6): boolean {
  return family === 4 || n.enableIpv6;
}

export function planNetworkAdd(n: FwNetwork): FirewallChange {
  return {
    v4: networkRuleSpecs(n, 4).map((r) => ({ table: r.table, line: `-A ${r.line}` })),
    v6: familyApplies(n, 6) ? networkRuleSpecs(n, 6).map((r) => ({ table: r.table, line: `-A ${r.line}` })) : [],
    tolerant: false,
  };
}

export function planNetworkRemove(n: FwNetwork): FirewallChange {
  return {
    v4: networkRuleSpecs(n, 4).map((r) => ({ table: r.table, line: `-D ${r.line}` })),
    v6: familyApplies(n, 6) ? networkRuleSpecs(n, 6).map((r) => ({ table: r.table, line: `-D ${r.line}` })) : [],
    tolerant: true,
  };
}

/** Our chains, each declared (and so flushed) by a full sync. */
export function baseChains(): RuleLine[] {
  return [
    { table: 'filter', line: `:${CHAINS.forward} - [0:0]` },
    { table: 'filter', line: `:${CHAINS.isolation1} - [0:0]` },
    { table: 'filter', line: `:${CHAINS.isolation2} - [0:0]` },
    { table: 'nat', line: `:${CHAINS.dnat} - [0:0]` },
    { table: 'nat', line: `:${CHAINS.postrouting} - [0:0]` },
    { table: 'filter', line: `-A ${CHAINS.forward} -j ${CHAINS.isolation1}` },
  ];
}

export interface HookState {
  /** how many times each hook rule is present now (from iptables-save) */
  readonly forwardJumps: number;
  readonly dockerUserFirst: boolean; // FORWARD's first rule jumps to DOCKER-USER
  readonly preroutingJumps: number;
  readonly outputJumps: number;
  readonly postroutingJumps: number;
}

export const HOOKS = {
  forward: `FORWARD -j ${CHAINS.forward}`,
  prerouting: `PREROUTING -m addrtype --dst-type LOCAL -j ${CHAINS.dnat}`,
  output: `OUTPUT -m addrtype --dst-type LOCAL -j ${CHAINS.dnat}`,
  postrouting: `POSTROUTING -j ${CHAINS.postrouting}`,
} as const;

/** Lines that make each hook present exactly once, and in the right place. */
export function planHooks(state: HookState): RuleLine[] {
  const out: RuleLine[] = [];
  const fix = (table: IpTable, spec: string, count: number, insertAt: number): void => {
    for (let i = 1; i < count; i++) out.push({ table, line: `-D ${spec}` });
    if (count === 0) {
      const [chain, ...rest] = spec.split(' ');
      out.push({ table, line: `-I ${chain} ${insertAt} ${rest.join(' ')}` });
    }
  };
  fix('filter', HOOKS.forward, state.forwardJumps, state.dockerUserFirst ? 2 : 1);
  fix('nat', HOOKS.prerouting, state.preroutingJumps, 1);
  fix('nat', HOOKS.output, state.outputJumps, 1);
  fix('nat', HOOKS.postrouting, state.postroutingJumps, 1);
  return out;
}

/** Count hook rules in `iptables-save` output. */
export function readHookState(save: string): HookState {
  const lines = save.split('\n');
  const count = (spec: string): number => lines.filter((l) => l === `-A ${spec}`).length;
  const forwardRules = lines.filter((l) => l.startsWith('-A FORWARD '));
  return {
    forwardJumps: count(HOOKS.forward),
    dockerUserFirst: forwardRules[0] === '-A FORWARD -j DOCKER-USER',
    preroutingJumps: count(HOOKS.prerouting),
    outputJumps: count(HOOKS.output),
    postroutingJumps: count(HOOKS.postrouting),
  };
}

export interface Owned {
  readonly owner: number;
  readonly lines: readonly RuleLine[];
}

const TABLE_ORDER: readonly IpTable[] = ['raw', 'mangle', 'nat', 'filter'];

/**
 * Renders an iptables-restore payload: one block per table, lines in the given order within a
 * table, plus owners[n - 1] = the owner of payload line n (null for *table and COMMIT lines).
 */
export function renderRestorePayload(items: readonly Owned[]): { text: string; owners: Array<number | null> } {
  const byTable = new Map<IpTable, Array<[number, string]>>();
  for (const item of items) {
    for (const l of item.lines) {
      let list = byTable.get(l.table);
      if (list === undefined) byTable.set(l.table, (list = []));
      list.push([item.owner, l.line]);
    }
  }
  const text: string[] = [];
  const owners: Array<number | null> = [];
  for (const table of TABLE_ORDER) {
    const list = byTable.get(table);
    if (list === undefined || list.length === 0) continue;
    text.push(`*${table}`);
    owners.push(null);
    // Chain declarations must precede the rules that use them.
    const decl = list.filter(([, l]) => l.startsWith(':'));
    const rest = list.filter(([, l]) => !l.startsWith(':'));
    for (const [owner, line] of [...decl, ...rest]) {
      text.push(line);
      owners.push(owner);
    }
    text.push('COMMIT');
    owners.push(null);
  }
  return { text: text.length ? `${text.join('\n')}\n` : '', owners };
}
