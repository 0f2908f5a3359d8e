// The layout of batchbridge's iptables rules: our chains, the hooks into the built-in chains,
// the fixed skeleton, and the owner tags. Chains are our own (never Docker's names), so
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
import type { IpTable, RuleLine } from '../types.js';

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

const TAG_RE = /--comment "?(bb:(?:net|ep)=[A-Za-z0-9_-]+)"?/;

/** The owner tag of a rule line, or "-" for our chains' fixed rules. */
export function ruleTag(line: string): string {
  return TAG_RE.exec(line)?.[1] ?? '-';
}

/** The first rule of BB-FORWARD and of BB-DNAT. */
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

/** Every chain of ours, by table (what an uninstall removes). */
export function ourChains(): Array<{ table: IpTable; chain: string }> {
  return baseChains().flatMap((l) => (l.line.startsWith(':') ? [{ table: l.table, chain: l.line.slice(1, l.line.indexOf(' ')) }] : []));
}

export const HOOKS = {
  forward: { table: 'filter', spec: `FORWARD -j ${CHAINS.forward}` },
  prerouting: { table: 'nat', spec: `PREROUTING -m addrtype --dst-type LOCAL -j ${CHAINS.dnat}` },
  output: { table: 'nat', spec: `OUTPUT -m addrtype --dst-type LOCAL -j ${CHAINS.dnat}` },
  postrouting: { table: 'nat', spec: `POSTROUTING -j ${CHAINS.postrouting}` },
  mangle: { table: 'mangle', spec: `POSTROUTING -j ${CHAINS.mangle}` },
} as const satisfies Record<string, { table: IpTable; spec: string }>;
