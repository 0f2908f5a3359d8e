// Choosing a free address in a range, for networks whose addresses batchbridge hands out itself
// (CNI's daemon IPAM; dockerd's own IPAM does this for Docker networks). Pure: what is taken is
// asked of the caller. The rules are host-local's: the range is rangeStart..rangeEnd, by default
// the subnet without its network address (and, for IPv4, its broadcast address); the gateway
// is never handed out; the search starts after the address handed out last, so an address that
// was just released is not reused at once (stale ARP/neighbour entries and conntrack entries
// elsewhere still point at its old holder).
import { bytesToIp, ipBytes, parseIp, type Cidr, type Family } from './addr.js';

export interface AddressRange {
  readonly subnet: Cidr;
  /** first and last address that may be handed out; null: the subnet's own bounds */
  readonly start: string | null;
  readonly end: string | null;
  /** addresses never handed out (the gateway) */
  readonly avoid: readonly string[];
}

function toBig(ip: string): bigint {
  return ipBytes(ip).reduce((acc, b) => (acc << 8n) | BigInt(b), 0n);
}

function fromBig(n: bigint, family: Family): string {
  const len = family === 4 ? 4 : 16;
  const bytes: number[] = [];
  for (let i = len - 1; i >= 0; i--) bytes.push(Number((n >> BigInt(i * 8)) & 0xffn));
  return parseIp(bytesToIp(bytes), 'address', family).ip;
}

/** The first and last address of the range, as numbers. */
export function rangeBounds(r: AddressRange): { first: bigint; last: bigint } {
  const { subnet } = r;
  const bits = subnet.family === 4 ? 32 : 128;
  const base = toBig(subnet.network.slice(0, subnet.network.indexOf('/')));
  const size = 1n << BigInt(bits - subnet.prefix);
  const small = subnet.family === 4 && subnet.prefix >= 31;
  // The network address is never a host; an IPv4 subnet's last address is its broadcast.
  let first = small ? base : base + 1n;
  let last = base + size - 1n - (subnet.family === 4 && !small ? 1n : 0n);
  if (r.start !== null) first = toBig(r.start) > first ? toBig(r.start) : first;
  if (r.end !== null) last = toBig(r.end) < last ? toBig(r.end) : last;
  return { first, last };
}

/**
 * A free address of the range, searching from the one after `after` (wrapping around), or null
 * when every address is taken. `taken` is asked at most once per candidate; the search gives up
 * after `maxProbes` candidates (a range can hold 2^64 addresses, the books at most a few
 * thousand endpoints, so a free one is found long before that).
 */
export function pickAddress(r: AddressRange, taken: (ip: string) => boolean, after: string | null, maxProbes = 1 << 20): string | null {
  const { first, last } = rangeBounds(r);
  if (last < first) return null;
  const span = last - first + 1n;
  const avoid = new Set(r.avoid);
  let cur = after === null ? first : toBig(after) + 1n;
  if (cur < first || cur > last) cur = first;
  const probes = span < BigInt(maxProbes) ? Number(span) : maxProbes;
  for (let i = 0; i < probes; i++) {
    const ip = fromBig(cur, r.subnet.family);
    if (!avoid.has(ip) && !taken(ip)) return ip;
    cur = cur === last ? first : cur + 1n;
  }
  return null;
}

/** "first-last" of a range, for messages. */
export function rangeText(r: AddressRange): string {
  const { first, last } = rangeBounds(r);
  return `${fromBig(first, r.subnet.family)}-${fromBig(last, r.subnet.family)}`;
}
