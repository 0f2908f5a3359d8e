// Address parsing on top of ipaddr.js. Every address that reaches a kernel script is re-rendered
// from its parsed form here, never copied from the request, so its text is canonical and safe.
import ipaddr from 'ipaddr.js';
import { InvalidAddressError } from '../errors.js';

export type Family = 4 | 6;

export interface Cidr {
  readonly family: Family;
  /** canonical address text (the given address, not masked) */
  readonly ip: string;
  readonly prefix: number;
  /** canonical network text, masked: "198.18.20.0/24" */
  readonly network: string;
}

const V4_STRICT = /^\d{1,3}(\.\d{1,3}){3}$/;

function parseIpStrict(text: string, family: Family | undefined, what: string): ipaddr.IPv4 | ipaddr.IPv6 {
  if (typeof text !== 'string' || text.length === 0 || text.length > 64) {
    throw new InvalidAddressError(`invalid ${what}: ${JSON.stringify(String(text).slice(0, 64))}`);
  }
  let parsed: ipaddr.IPv4 | ipaddr.IPv6;
  if (V4_STRICT.test(text) && ipaddr.IPv4.isValidFourPartDecimal(text)) {
    parsed = ipaddr.IPv4.parse(text);
  } else if (text.includes(':') && ipaddr.IPv6.isValid(text) && !text.includes('%')) {
    parsed = ipaddr.IPv6.parse(text);
    if (parsed.isIPv4MappedAddress()) {
      throw new InvalidAddressError(`invalid ${what} ${text}: IPv4-mapped IPv6 addresses are not allowed`);
    }
  } else {
    throw new InvalidAddressError(`invalid ${what}: ${JSON.stringify(text.slice(0, 64))}`);
  }
  const fam: Family = parsed.kind() === 'ipv4' ? 4 : 6;
  if (family !== undefined && fam !== family) {
    throw new InvalidAddressError(`invalid ${what} ${text}: expected an IPv${family} address`);
  }
  return parsed;
}

export function parseIp(text: string, what: string, family?: Family): { family: Family; ip: string } {
  const parsed = parseIpStrict(text, family, what);
  return { family: parsed.kind() === 'ipv4' ? 4 : 6, ip: parsed.toString() };
}

export function parseCidr(text: string, what: string, family?: Family): Cidr {
  if (typeof text !== 'string') throw new InvalidAddressError(`invalid ${what}: not a string`);
  const slash = text.indexOf('/');
  if (slash < 0) throw new InvalidAddressError(`invalid ${what} ${JSON.stringify(text.slice(0, 64))}: expected CIDR notation`);
  const ipText = text.slice(0, slash);
  const lenText = text.slice(slash + 1);
  const parsed = parseIpStrict(ipText, family, what);
  const fam: Family = parsed.kind() === 'ipv4' ? 4 : 6;
  const max = fam === 4 ? 32 : 128;
  if (!/^\d{1,3}$/.test(lenText) || Number(lenText) > max) {
    throw new InvalidAddressError(`invalid ${what} ${JSON.stringify(text.slice(0, 64))}: bad prefix length`);
  }
  const prefix = Number(lenText);
  const net = maskAddress(parsed, prefix);
  return { family: fam, ip: parsed.toString(), prefix, network: `${net}/${prefix}` };
}

function maskAddress(addr: ipaddr.IPv4 | ipaddr.IPv6, prefix: number): string {
  const bytes = addr.toByteArray();
  for (let bit = prefix; bit < bytes.length * 8; bit++) {
    const i = bit >> 3;
    bytes[i] = (bytes[i] ?? 0) & ~(0x80 >> (bit & 7));
  }
  return ipaddr.fromByteArray(bytes).toString();
}

export function cidrContains(net: Cidr, ip: string): boolean {
  const a = ipaddr.parse(ip);
  const n = ipaddr.parse(net.network.slice(0, net.network.indexOf('/')));
  if (a.kind() !== n.kind()) return false;
  return a.match(n, net.prefix);
}

/** Two networks overlap when either contains the other's network address. */
export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  if (a.family !== b.family) return false;
  const aNet = a.network.slice(0, a.network.indexOf('/'));
  const bNet = b.network.slice(0, b.network.indexOf('/'));
  return cidrContains(a, bNet) || cidrContains(b, aNet);
}

export function isMulticast(c: Cidr): boolean {
  const addr = ipaddr.parse(c.network.slice(0, c.network.indexOf('/')));
  return addr.range() === 'multicast';
}

/** The first address after the network address: the default gateway when IPAM gave none. */
export function firstHost(c: Cidr): string {
  const bytes = ipaddr.parse(c.network.slice(0, c.network.indexOf('/'))).toByteArray();
  for (let i = bytes.length - 1; i >= 0; i--) {
    const v = (bytes[i] ?? 0) + 1;
    bytes[i] = v & 0xff;
    if (v <= 0xff) break;
  }
  return ipaddr.fromByteArray(bytes).toString();
}

/** The last address of a network: its IPv4 broadcast address. */
export function lastAddress(c: Cidr): string {
  const bytes = ipaddr.parse(c.network.slice(0, c.network.indexOf('/'))).toByteArray();
  for (let bit = c.prefix; bit < bytes.length * 8; bit++) {
    const i = bit >> 3;
    bytes[i] = (bytes[i] ?? 0) | (0x80 >> (bit & 7));
  }
  return ipaddr.fromByteArray(bytes).toString();
}

export function ipBytes(ip: string): number[] {
  return ipaddr.parse(ip).toByteArray();
}

export function bytesToIp(bytes: number[]): string {
  return ipaddr.fromByteArray(bytes).toString();
}
