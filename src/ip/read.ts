// The one reader of `ip -j [-d] {link|addr} show` output.
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
}

interface LinkJson {
  ifname?: unknown;
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
    });
  }
  return out;
}
