// The one reader of `ip -j [-d] {link|addr|route} show` output.
import { parseCidr } from '../domain/addr.js';

export interface KernelLink {
  readonly name: string;
  readonly kind: string | null;
  readonly master: string | null;
  readonly up: boolean;
  /** "ip/prefix", canonical (empty for `link show`) */
  readonly addrs: readonly string[];
  /** link group (0: default) */
  readonly group?: number;
  readonly mac?: string;
}

interface LinkJson {
  ifname?: unknown;
  address?: unknown;
  master?: unknown;
  flags?: unknown;
  group?: unknown;
  linkinfo?: { info_kind?: unknown };
  addr_info?: Array<{ local?: unknown; prefixlen?: unknown }>;
}

/** "ip/prefix" in canonical form (as the books write it), or the text as given. */
export function normAddr(a: string): string {
  try {
    const c = parseCidr(a, 'address');
    return `${c.ip}/${c.prefix}`;
  } catch {
    return a;
  }
}

/** `ip -j` prints a link group as a number, or as its name from /etc/iproute2/group ("default"). */
function parseGroup(v: unknown): number {
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : 0;
  return Number.isSafeInteger(n) ? n : 0;
}

export function parseIpLinks(json: string): KernelLink[] {
  const text = json.trim();
  const arr = JSON.parse(text === '' ? '[]' : text) as LinkJson[];
  const out: KernelLink[] = [];
  for (const l of arr) {
    if (typeof l.ifname !== 'string') continue;
    out.push({
      name: l.ifname,
      kind: typeof l.linkinfo?.info_kind === 'string' ? l.linkinfo.info_kind : null,
      master: typeof l.master === 'string' ? l.master : null,
      up: Array.isArray(l.flags) && l.flags.includes('UP'),
      addrs: (l.addr_info ?? []).flatMap((a) => (typeof a.local === 'string' && typeof a.prefixlen === 'number' ? [normAddr(`${a.local}/${a.prefixlen}`)] : [])),
      group: parseGroup(l.group),
      ...(typeof l.address === 'string' ? { mac: l.address } : {}),
    });
  }
  return out;
}

export interface KernelRoute {
  /** canonical masked CIDR ("0.0.0.0/0" for default) */
  readonly dst: string;
  readonly gateway: string | null;
  readonly dev: string | null;
}

interface RouteJson {
  dst?: unknown;
  gateway?: unknown;
  dev?: unknown;
}

/** `ip -j [-6] route show`: "default" and bare host addresses become CIDRs. */
export function parseIpRoutes(json: string, family: 4 | 6): KernelRoute[] {
  const text = json.trim();
  const arr = JSON.parse(text === '' ? '[]' : text) as RouteJson[];
  const out: KernelRoute[] = [];
  for (const r of arr) {
    if (typeof r.dst !== 'string') continue;
    const raw = r.dst === 'default' ? (family === 4 ? '0.0.0.0/0' : '::/0') : r.dst.includes('/') ? r.dst : `${r.dst}/${family === 4 ? 32 : 128}`;
    let dst: string;
    try {
      dst = parseCidr(raw, 'route destination').network;
    } catch {
      continue;
    }
    out.push({ dst, gateway: typeof r.gateway === 'string' ? r.gateway : null, dev: typeof r.dev === 'string' ? r.dev : null });
  }
  return out;
}
