// What an endpoint gets on a network: the built-in driver's checks and its MAC and IPv6 derivation
// (libnetwork drivers/bridge CreateEndpoint).
import { InvalidAddressError, NotSupportedError } from '../errors.js';
import { bytesToIp, cidrContains, ipBytes, lastAddress, parseCidr, type Cidr } from './addr.js';
import type { NetworkSpec } from './network-spec.js';

const MAC_RE = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;

export function parseMac(text: string): string {
  if (!MAC_RE.test(text)) throw new InvalidAddressError(`invalid MAC address ${JSON.stringify(text.slice(0, 40))}`);
  const lower = text.toLowerCase();
  const first = parseInt(lower.slice(0, 2), 16);
  if (first & 1) throw new InvalidAddressError(`invalid MAC address ${lower}: multicast addresses cannot be assigned`);
  if (lower === '00:00:00:00:00:00') throw new InvalidAddressError('invalid MAC address 00:00:00:00:00:00');
  return lower;
}

/** 02:42 followed by the four bytes of the IPv4 address, as Docker 20.10 does. */
export function macFromIpv4(ip: string): string {
  const b = ipBytes(ip);
  return ['02', '42', ...b.map((x) => x.toString(16).padStart(2, '0'))].join(':');
}

/**
 * An IPv6 address made of the network's first 10 bytes and the 6 MAC bytes, with the network's
 * prefix. The built-in driver refuses prefixes longer than /80 (fewer than 48 host bits).
 */
export function ipv6FromMac(network: Cidr, mac: string, networkId: string): Cidr {
  if (network.prefix > 80) {
    throw new NotSupportedError(`Cannot self generate an IPv6 address on network ${networkId}: At least 48 host bits are needed.`);
  }
  const netBytes = ipBytes(network.network.slice(0, network.network.indexOf('/')));
  const macBytes = mac.split(':').map((h) => parseInt(h, 16));
  const bytes = [...netBytes.slice(0, 10), ...macBytes];
  return parseCidr(`${bytesToIp(bytes)}/${network.prefix}`, 'derived IPv6 address', 6);
}

/** An endpoint's addresses as a front end asks for them, not yet checked against its network. */
export interface AddressRequest {
  readonly ipv4: string;
  readonly ipv6: string | null;
  /** an explicit MAC address */
  readonly mac: string | null;
  /** the MAC to take when none is explicit, before deriving one from the IPv4 address */
  readonly macFallback?: string | null;
  /** what errors call the two address fields */
  readonly names: { readonly ipv4: string; readonly ipv6: string };
}

export interface EndpointAddresses {
  readonly ipv4: Cidr;
  readonly ipv6: Cidr | null;
  readonly mac: string;
  /** the MAC was not explicit in the request (derived, or the fallback): the answer must say it */
  readonly macChosen: boolean;
  /** the IPv6 address was derived: the answer must say it */
  readonly ipv6Chosen: boolean;
}

/** The built-in driver's rules for an endpoint's addresses on a network. */
export function resolveAddresses(net: NetworkSpec, r: AddressRequest): EndpointAddresses {
  const ipv4 = parseCidr(r.ipv4, r.names.ipv4, 4);
  const subnet = parseCidr(net.ipv4.network, 'subnet', 4);
  if (!cidrContains(subnet, ipv4.ip)) throw new InvalidAddressError(`invalid ${r.names.ipv4} ${ipv4.ip}: not in subnet ${subnet.network}`);
  if (ipv4.prefix !== subnet.prefix) throw new InvalidAddressError(`invalid ${r.names.ipv4} ${ipv4.ip}/${ipv4.prefix}: the network's prefix is /${subnet.prefix}`);
  // No IPAM hands these out; a container holding one would be unreachable or reach everyone.
  if (subnet.prefix < 31 && (ipv4.ip === subnet.network.slice(0, subnet.network.indexOf('/')) || ipv4.ip === lastAddress(subnet))) {
    throw new InvalidAddressError(`invalid ${r.names.ipv4} ${ipv4.ip}: it is the subnet's network or broadcast address`);
  }
  if (ipv4.ip === net.ipv4.ip && !net.inhibitIpv4) throw new InvalidAddressError(`invalid ${r.names.ipv4} ${ipv4.ip}: it is the network's gateway`);
  const macChosen = r.mac === null;
  const mac = r.mac !== null ? parseMac(r.mac) : (r.macFallback ?? macFromIpv4(ipv4.ip));
  let ipv6: Cidr | null = null;
  if (r.ipv6 !== null) {
    if (!net.enableIpv6) throw new InvalidAddressError('an IPv6 address was given but the network has IPv6 disabled');
    ipv6 = parseCidr(r.ipv6, r.names.ipv6, 6);
    if (net.ipv6 !== null && !cidrContains(parseCidr(net.ipv6.network, 'subnet', 6), ipv6.ip)) {
      throw new InvalidAddressError(`invalid ${r.names.ipv6} ${ipv6.ip}: not in subnet ${net.ipv6.network}`);
    }
    if (net.ipv6 !== null && ipv6.prefix !== net.ipv6.prefix) throw new InvalidAddressError(`invalid ${r.names.ipv6} ${ipv6.ip}/${ipv6.prefix}: the network's prefix is /${net.ipv6.prefix}`);
  } else if (net.enableIpv6) {
    ipv6 = ipv6FromMac(net.ipv6 ?? parseCidr('fe80::1/64', 'link-local', 6), mac, net.id);
  }
  return { ipv4, ipv6, mac, macChosen, ipv6Chosen: r.ipv6 === null && ipv6 !== null };
}

/** "ip/prefix" of a parsed address, as the books keep it. */
export function cidrText(c: Cidr): string {
  return `${c.ip}/${c.prefix}`;
}
