// Pure planner for batchbridge's iptables rules. Chains are our own (never Docker's names), so
// dockerd's own flush of DOCKER* chains at its start cannot touch them. docs/firewall.md
// describes the layout and why it differs from Docker's.
//
// Layout (v4; v6 mirrors it in ip6tables, per-network rules only for IPv6-enabled networks):
//   filter FORWARD         -j BB-FORWARD             (below DOCKER-USER when that is first)
//   filter BB-FORWARD      -j BB-ISOLATION-1         (fixed head)
//                          per network: established, DNAT-ed, outgoing, ICC, final drop
//   filter BB-ISOLATION-1  internal networks' drops  (inserted at the top)
//                          --ctstate DNAT -j RETURN  (fixed: published ports cross networks)
//                          per other network: -i br ! -o br -j BB-ISOLATION-2
//   filter BB-ISOLATION-2  per other network: -o br -j DROP
//   nat PREROUTING/OUTPUT  -m addrtype --dst-type LOCAL -j BB-DNAT
//   nat BB-DNAT            fixed jumps by protocol and host port into bucket chains
//   nat BB-DNAT-<n>        DNAT rules of tcp/udp host ports n*512 .. n*512+511
//   nat BB-DNAT-SCTP       DNAT rules of sctp ports
//   nat POSTROUTING        -j BB-POSTROUTING
//   nat BB-POSTROUTING     per network: masquerade/SNAT, hairpin
//   mangle POSTROUTING     -j BB-MANGLE
//   mangle BB-MANGLE       per sctp binding: CHECKSUM fill (as Docker does)
//
// Every rule in our chains carries a comment naming its owner (bb:net=<id12> / bb:ep=<id12>), so
// an orphan sweep can tell whose rule it is without guessing.
import type { RuleLine, FirewallChange, IpTable } from './ops.js';

export const CHAINS = {
  forward: 'BB-FORWARD',
  isolation1: 'BB-ISOLATION-1',
  isolation2: 'BB-ISOLATION-2',
  dnat: 'BB-DNAT',
  dnatSctp: 'BB-DNAT-SCTP',
  postrouting: 'BB-POSTROUTING',
  mangle: 'BB-MANGLE',
} as const;

/**
 * Host ports per DNAT bucket chain. Deleting a rule with iptables-nft fetches and compares the
 * rules of the chain it is in, so a deletion costs O(size of its chain): 128 buckets of 512
 * ports keep a chain small even when 10,000 bindings crowd the ephemeral range. Measured in
 * docs/performance.md ("Firewall layout").
 */
export const DNAT_BUCKET_PORTS = 512;
export const DNAT_BUCKETS = 65536 / DNAT_BUCKET_PORTS;

export function dnatBucketChain(proto: 'tcp' | 'udp' | 'sctp', hostPort: number): string {
  if (proto === 'sctp') return CHAINS.dnatSctp;
  return `${CHAINS.dnat}-${Math.floor(hostPort / DNAT_BUCKET_PORTS)}`;
}

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

const TAG_ID = /^[A-Za-z0-9][A-Za-z0-9_-]*$/;

function tagId(id: string): string {
  // Ids are validated at the edge (domain/names.ts); this keeps a bad one out of a payload anyway.
  if (!TAG_ID.test(id)) throw new Error(`refusing id ${JSON.stringify(id.slice(0, 80))} in a firewall comment`);
  return id.slice(0, 12);
}

export function netTag(id: string): string {
  return `bb:net=${tagId(id)}`;
}

export function epTag(id: string): string {
  return `bb:ep=${tagId(id)}`;
}

const c = (tag: string): string => `-m comment --comment ${tag}`;

/**
 * The rules of one network in one family, as "CHAIN rest-of-rule" specs. `insert` marks rules
 * that go to the top of their chain (internal networks' drops must precede the DNAT RETURN).
 */
export function networkRuleSpecs(n: FwNetwork, family: 4 | 6): Array<RuleLine & { readonly insert?: true }> {
  const subnet = family === 4 ? n.subnet4 : n.subnet6;
  const br = n.bridge;
  const tag = c(netTag(n.id));
  const out: Array<RuleLine & { insert?: true }> = [];
  const filter = (spec: string): void => void out.push({ table: 'filter', line: spec });
  const nat = (spec: string): void => void out.push({ table: 'nat', line: spec });
  const mode = family === 4 ? n.gatewayModeIpv4 : n.gatewayModeIpv6;
  const icc = n.icc ? 'ACCEPT' : 'DROP';

  if (n.internal) {
    // Nothing in or out beyond the bridge: not even published ports of other networks (so above
    // the DNAT RETURN), and no masquerade.
    out.push({ table: 'filter', line: `${CHAINS.isolation1} -i ${br} ! -o ${br} ${tag} -j DROP`, insert: true });
    out.push({ table: 'filter', line: `${CHAINS.isolation1} -o ${br} ! -i ${br} ${tag} -j DROP`, insert: true });
    filter(`${CHAINS.forward} -i ${br} -o ${br} ${tag} -j ${icc}`);
    return out;
  }
  filter(`${CHAINS.isolation1} -i ${br} ! -o ${br} ${tag} -j ${CHAINS.isolation2}`);
  filter(`${CHAINS.isolation2} -o ${br} ${tag} -j DROP`);
  filter(`${CHAINS.forward} -o ${br} -m conntrack --ctstate RELATED,ESTABLISHED ${tag} -j ACCEPT`);
  // Published ports: only flows our DNAT rules rewrote reach a container from outside, so one
  // rule per network replaces Docker's per-port ACCEPT rules.
  filter(`${CHAINS.forward} -o ${br} -m conntrack --ctstate DNAT ${tag} -j ACCEPT`);
  filter(`${CHAINS.forward} -i ${br} ! -o ${br} ${tag} -j ACCEPT`);
  filter(`${CHAINS.forward} -i ${br} -o ${br} ${tag} -j ${icc}`);
  // Routed: containers are reachable directly, on every port (no per-port filter); nat: only
  // what the rules above accepted.
  filter(`${CHAINS.forward} -o ${br} ${tag} -j ${mode === 'routed' ? 'ACCEPT' : 'DROP'}`);
  if (subnet !== null && n.masquerade && mode === 'nat') {
    if (family === 4 && n.hostIpv4 !== null) {
      nat(`${CHAINS.postrouting} -s ${subnet} ! -o ${br} ${tag} -j SNAT --to-source ${n.hostIpv4}`);
    } else {
      nat(`${CHAINS.postrouting} -s ${subnet} ! -o ${br} ${tag} -j MASQUERADE`);
    }
  }
  // Hairpin: a container reaching a published port of a container on its own bridge through the
  // host's address, or the host through 127.0.0.1, must see the replies come back through the host.
  if (subnet !== null) nat(`${CHAINS.postrouting} -s ${subnet} -o ${br} -m conntrack --ctstate DNAT ${tag} -j MASQUERADE`);
  nat(`${CHAINS.postrouting} -o ${br} -m addrtype --src-type LOCAL ${tag} -j MASQUERADE`);
  return out;
}

function familyApplies(n: FwNetwork, family: 4 | 6): boolean {
  return family === 4 || n.enableIpv6;
}

/** "-A spec", or "-I CHAIN 1 rest" for rules that must sit above a chain's fixed rules. */
export function addLine(r: RuleLine & { readonly insert?: true }): RuleLine {
  if (r.insert !== true) return { table: r.table, line: `-A ${r.line}` };
  const sp = r.line.indexOf(' ');
  return { table: r.table, line: `-I ${r.line.slice(0, sp)} 1${r.line.slice(sp)}` };
}

export function planNetworkAdd(n: FwNetwork): FirewallChange {
  return {
    v4: networkRuleSpecs(n, 4).map(addLine),
    v6: familyApplies(n, 6) ? networkRuleSpecs(n, 6).map(addLine) : [],
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

/** The first rule of BB-FORWARD and of BB-DNAT: the watchdog's sign that the chains are intact. */
export const HEADS = {
  forward: `-A ${CHAINS.forward} -j ${CHAINS.isolation1}`,
  dnat: `-A ${CHAINS.dnat} -p tcp -m tcp --dport 0:${DNAT_BUCKET_PORTS - 1} -j ${CHAINS.dnat}-0`,
} as const;

/** Our chains, each declared (and so flushed: iptables-nft flushes a declared chain even under
 * --noflush) and given its fixed rules. Only a full sync uses this. */
export function baseChains(): RuleLine[] {
  const out: RuleLine[] = [
    { table: 'filter', line: `:${CHAINS.forward} - [0:0]` },
    { table: 'filter', line: `:${CHAINS.isolation1} - [0:0]` },
    { table: 'filter', line: `:${CHAINS.isolation2} - [0:0]` },
    { table: 'nat', line: `:${CHAINS.dnat} - [0:0]` },
    { table: 'nat', line: `:${CHAINS.dnatSctp} - [0:0]` },
    { table: 'nat', line: `:${CHAINS.postrouting} - [0:0]` },
    { table: 'mangle', line: `:${CHAINS.mangle} - [0:0]` },
  ];
  for (let b = 0; b < DNAT_BUCKETS; b++) out.push({ table: 'nat', line: `:${CHAINS.dnat}-${b} - [0:0]` });
  out.push({ table: 'filter', line: HEADS.forward });
  out.push({ table: 'filter', line: `-A ${CHAINS.isolation1} -m conntrack --ctstate DNAT -j RETURN` });
  for (const proto of ['tcp', 'udp'] as const) {
    for (let b = 0; b < DNAT_BUCKETS; b++) {
      const lo = b * DNAT_BUCKET_PORTS;
      out.push({ table: 'nat', line: `-A ${CHAINS.dnat} -p ${proto} -m ${proto} --dport ${lo}:${lo + DNAT_BUCKET_PORTS - 1} -j ${CHAINS.dnat}-${b}` });
    }
  }
  out.push({ table: 'nat', line: `-A ${CHAINS.dnat} -p sctp -j ${CHAINS.dnatSctp}` });
  return out;
}

export interface HookState {
  /** how many times each hook rule is present now (from iptables-save) */
  readonly forwardJumps: number;
  readonly dockerUserFirst: boolean; // FORWARD's first rule jumps to DOCKER-USER
  readonly preroutingJumps: number;
  readonly outputJumps: number;
  readonly postroutingJumps: number;
  readonly mangleJumps: number;
}

export const HOOKS = {
  forward: { table: 'filter', spec: `FORWARD -j ${CHAINS.forward}` },
  prerouting: { table: 'nat', spec: `PREROUTING -m addrtype --dst-type LOCAL -j ${CHAINS.dnat}` },
  output: { table: 'nat', spec: `OUTPUT -m addrtype --dst-type LOCAL -j ${CHAINS.dnat}` },
  postrouting: { table: 'nat', spec: `POSTROUTING -j ${CHAINS.postrouting}` },
  mangle: { table: 'mangle', spec: `POSTROUTING -j ${CHAINS.mangle}` },
} as const satisfies Record<string, { table: IpTable; spec: string }>;

/** Lines that make each hook present exactly once, and in the right place. */
export function planHooks(state: HookState): RuleLine[] {
  const out: RuleLine[] = [];
  const fix = (hook: { table: IpTable; spec: string }, count: number, insertAt: number): void => {
    for (let i = 1; i < count; i++) out.push({ table: hook.table, line: `-D ${hook.spec}` });
    if (count === 0) {
      const [chain, ...rest] = hook.spec.split(' ');
      out.push({ table: hook.table, line: `-I ${chain} ${insertAt} ${rest.join(' ')}` });
    }
  };
  fix(HOOKS.forward, state.forwardJumps, state.dockerUserFirst ? 2 : 1);
  fix(HOOKS.prerouting, state.preroutingJumps, 1);
  fix(HOOKS.output, state.outputJumps, 1);
  fix(HOOKS.postrouting, state.postroutingJumps, 1);
  fix(HOOKS.mangle, state.mangleJumps, 1);
  return out;
}

/** Splits `iptables-save` output into tables: table name → its "-A …" lines. */
export function saveTables(save: string): Map<string, string[]> {
  const tables = new Map<string, string[]>();
  let cur: string[] | null = null;
  for (const l of save.split('\n')) {
    if (l.startsWith('*')) tables.set(l.slice(1), (cur = []));
    else if (cur !== null && l.startsWith('-A ')) cur.push(l);
  }
  return tables;
}

/** Count hook rules in `iptables-save` output. */
export function readHookState(save: string): HookState {
  const tables = saveTables(save);
  const count = (hook: { table: IpTable; spec: string }): number => (tables.get(hook.table) ?? []).filter((l) => l === `-A ${hook.spec}`).length;
  const forwardRules = (tables.get('filter') ?? []).filter((l) => l.startsWith('-A FORWARD '));
  return {
    forwardJumps: count(HOOKS.forward),
    dockerUserFirst: forwardRules[0] === '-A FORWARD -j DOCKER-USER',
    preroutingJumps: count(HOOKS.prerouting),
    outputJumps: count(HOOKS.output),
    postroutingJumps: count(HOOKS.postrouting),
    mangleJumps: count(HOOKS.mangle),
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
