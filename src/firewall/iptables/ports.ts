// Published ports as rules: one DNAT rule per installed binding, in the bucket chain of its host
// port (layout.ts), plus Docker's CHECKSUM fill for sctp. The per-network rules accept DNAT-ed
// flows and do the hairpin masquerade, so an endpoint's ports cost one rule each to add and to
// remove, and a removal only makes iptables-nft read one small bucket chain.
import { checkedMapping, type PortMapping } from '../../domain/publishing.js';
import type { RuleLine } from '../types.js';
import { CHAINS, dnatBucketChain, epTag } from './layout.js';

export function dnatRuleSpec(endpointId: string, mapping: PortMapping): string {
  const m = checkedMapping(mapping);
  const any = m.hostIp === '0.0.0.0' || m.hostIp === '::';
  const dst = any ? '' : ` -d ${m.hostIp}/${m.family === 4 ? 32 : 128}`;
  const to = m.family === 4 ? `${m.containerIp}:${m.containerPort}` : `[${m.containerIp}]:${m.containerPort}`;
  return `${dnatBucketChain(m.proto, m.hostPort)}${dst} -p ${m.proto} -m ${m.proto} --dport ${m.hostPort} -m comment --comment ${epTag(endpointId)} -j DNAT --to-destination ${to}`;
}

/** Docker's workaround for sctp checksums of replies leaving the container (mangle table). */
export function sctpChecksumSpec(endpointId: string, mapping: PortMapping): string {
  const m = checkedMapping(mapping);
  return `${CHAINS.mangle} -p sctp -m sctp --sport ${m.containerPort} -m comment --comment ${epTag(endpointId)} -j CHECKSUM --checksum-fill`;
}

/** The rule specs ("CHAIN rest") of an endpoint's bindings, per family. */
export function endpointPortSpecs(endpointId: string, mappings: readonly PortMapping[]): { v4: RuleLine[]; v6: RuleLine[] } {
  const v4: RuleLine[] = [];
  const v6: RuleLine[] = [];
  for (const m of mappings) {
    const list = m.family === 4 ? v4 : v6;
    list.push({ table: 'nat', line: dnatRuleSpec(endpointId, m) });
    if (m.proto === 'sctp') list.push({ table: 'mangle', line: sctpChecksumSpec(endpointId, m) });
  }
  return { v4, v6 };
}
