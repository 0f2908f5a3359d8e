// The rules of one network in one family (pure). See layout.ts for the chains they go in.
import type { Family, FwNetwork, RuleLine } from '../types.js';
import { CHAINS, netTag } from './layout.js';

/** A rule as "CHAIN rest-of-rule"; `insert` marks rules that go to the top of their chain. */
export type RuleSpec = RuleLine & { readonly insert?: true };

const c = (tag: string): string => `-m comment --comment ${tag}`;

/**
 * The rules of one network in one family, as "CHAIN rest-of-rule" specs. `insert` marks rules
 * that go to the top of their chain (internal networks' drops must precede the DNAT RETURN).
 */
export function networkRuleSpecs(n: FwNetwork, family: Family): RuleSpec[] {
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

/** IPv6 rules only for networks with IPv6 enabled. */
export function familyApplies(n: FwNetwork, family: Family): boolean {
  return family === 4 || n.enableIpv6;
}
