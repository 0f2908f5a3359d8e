// What a network's bridge should carry: its addresses and sysctls. Used when the network is
// created and when reconciliation re-creates or repairs it.
import type { NetworkSpec } from './network-spec.js';

/** A sysctl to set in the plugin's network namespace. */
export interface SysctlWrite {
  readonly path: string; // relative to /proc/sys, e.g. "net/ipv6/conf/bb-x/accept_ra"
  readonly value: string;
  readonly optional: boolean; // missing file is fine (IPv6 disabled on the host)
}

export function bridgeAddrs(spec: NetworkSpec): string[] {
  const out: string[] = [];
  if (!spec.inhibitIpv4) out.push(`${spec.ipv4.ip}/${spec.ipv4.prefix}`);
  if (spec.enableIpv6) {
    out.push('fe80::1/64');
    if (spec.ipv6 !== null) out.push(`${spec.ipv6.ip}/${spec.ipv6.prefix}`);
  }
  return out;
}

export function networkSysctls(spec: NetworkSpec): SysctlWrite[] {
  const br = spec.bridge;
  const out: SysctlWrite[] = [
    { path: `net/ipv6/conf/${br}/accept_ra`, value: '0', optional: true },
    // 127.0.0.1:<published port> is DNAT-ed to a container: the kernel must route it.
    { path: `net/ipv4/conf/${br}/route_localnet`, value: '1', optional: false },
  ];
  // ICC off is a FORWARD rule for traffic between two ports of one bridge: bridged frames reach
  // iptables only with bridge netfilter on (Docker sets it too). Per namespace since Linux 5.3.
  if (!spec.icc) {
    out.push({ path: 'net/bridge/bridge-nf-call-iptables', value: '1', optional: true });
    if (spec.enableIpv6) out.push({ path: 'net/bridge/bridge-nf-call-ip6tables', value: '1', optional: true });
  }
  if (spec.enableIpv6) {
    out.push({ path: `net/ipv6/conf/${br}/disable_ipv6`, value: '0', optional: false });
    out.push({ path: 'net/ipv6/conf/all/forwarding', value: '1', optional: true });
    out.push({ path: 'net/ipv6/conf/default/forwarding', value: '1', optional: true });
  }
  return out;
}

