// The ip vocabulary: every line batchbridge (and its load harness and benchmarks) writes to
// `ip -batch` is rendered here from a typed operation, and nowhere else. Each value is checked as
// it is rendered — names against the interface-name rules, addresses re-rendered from their
// parsed form, numbers as integers in range — so no request field can add a word or a line.
import { parseCidr } from '../domain/addr.js';
import { isValidIfName } from '../domain/names.js';

export type IpLine =
  | { readonly op: 'bridge-add'; readonly name: string; readonly mac?: string | undefined; readonly mtu: number; readonly group?: number | undefined }
  | {
      readonly op: 'veth-add';
      readonly host: string;
      readonly peer: string;
      readonly bridge: string;
      readonly mtu: number;
      readonly group?: number | undefined;
      /** create the peer end directly in this network namespace (a path or a name) */
      readonly peerNetns?: string | undefined;
      readonly peerMac?: string | undefined;
    }
  | { readonly op: 'addr-add' | 'addr-del'; readonly addr: string; readonly dev: string }
  | { readonly op: 'link-up' | 'link-down' | 'link-del'; readonly dev: string }
  | { readonly op: 'set-group'; readonly dev: string; readonly group: number }
  | { readonly op: 'set-master'; readonly dev: string; readonly master: string }
  | { readonly op: 'del-group'; readonly group: number }
  | { readonly op: 'set-netns'; readonly dev: string; readonly netns: string | number }
  | { readonly op: 'netns-add' | 'netns-del'; readonly name: string }
  /** run one line inside a named namespace (`netns exec NS ip …`) */
  | { readonly op: 'in-netns'; readonly name: string; readonly line: IpLine }
  /** a line that always fails ("File exists": every namespace has lo): a session's end marker */
  | { readonly op: 'fail-marker' };

const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const NETNS_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const NETNS_PATH_RE = /^\/[A-Za-z0-9_.\/-]{1,255}$/;

function ifname(n: string): string {
  if (!isValidIfName(n)) throw new Error(`refusing interface name ${JSON.stringify(n.slice(0, 40))} in an ip script`);
  return n;
}

function num(n: number, what: string, min: number, max: number): number {
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`refusing ${what} ${String(n)} in an ip script`);
  return n;
}

function mac(m: string): string {
  if (!MAC_RE.test(m)) throw new Error(`refusing MAC address ${JSON.stringify(m.slice(0, 40))} in an ip script`);
  return m;
}

function addr(a: string): string {
  const c = parseCidr(a, 'address');
  return `${c.ip}/${c.prefix}`;
}

function netnsName(n: string): string {
  if (!NETNS_NAME_RE.test(n)) throw new Error(`refusing namespace name ${JSON.stringify(n.slice(0, 40))} in an ip script`);
  return n;
}

function netnsRef(ns: string | number): string {
  if (typeof ns === 'number') return String(num(ns, 'pid', 1, 0x7fffffff));
  if (ns.startsWith('/')) {
    if (!NETNS_PATH_RE.test(ns) || ns.split('/').includes('..')) throw new Error(`refusing namespace path ${JSON.stringify(ns.slice(0, 80))} in an ip script`);
    return ns;
  }
  return netnsName(ns);
}

const mtu = (m: number): string => (m > 0 ? ` mtu ${num(m, 'MTU', 68, 65535)}` : '');
const group = (g: number | undefined): string => (g === undefined ? '' : ` group ${num(g, 'link group', 1, 0xffffffff)}`);

/** One line of an `ip -batch` script, without its newline. */
export function renderIpLine(l: IpLine): string {
  switch (l.op) {
    case 'bridge-add':
      return `link add name ${ifname(l.name)}${group(l.group)}${l.mac === undefined ? '' : ` address ${mac(l.mac)}`}${mtu(l.mtu)} type bridge`;
    case 'veth-add': {
      const peer = `peer name ${ifname(l.peer)}${l.peerMac === undefined ? '' : ` address ${mac(l.peerMac)}`}${mtu(l.mtu)} txqueuelen 0${l.peerNetns === undefined ? '' : ` netns ${netnsRef(l.peerNetns)}`}`;
      return `link add name ${ifname(l.host)}${group(l.group)}${mtu(l.mtu)} txqueuelen 0 master ${ifname(l.bridge)} up type veth ${peer}`;
    }
    case 'addr-add':
      return `address add ${addr(l.addr)} dev ${ifname(l.dev)}`;
    case 'addr-del':
      return `address del ${addr(l.addr)} dev ${ifname(l.dev)}`;
    case 'link-up':
      return `link set dev ${ifname(l.dev)} up`;
    case 'link-down':
      return `link set dev ${ifname(l.dev)} down`;
    case 'link-del':
      return `link del dev ${ifname(l.dev)}`;
    case 'set-group':
      return `link set dev ${ifname(l.dev)} group ${num(l.group, 'link group', 1, 0xffffffff)}`;
    case 'set-master':
      return `link set dev ${ifname(l.dev)} master ${ifname(l.master)}`;
    case 'del-group':
      // Group 0 is every interface that has no group: never delete it.
      return `link del group ${num(l.group, 'link group', 1, 0xffffffff)}`;
    case 'set-netns':
      return `link set dev ${ifname(l.dev)} netns ${netnsRef(l.netns)}`;
    case 'netns-add':
      return `netns add ${netnsName(l.name)}`;
    case 'netns-del':
      return `netns del ${netnsName(l.name)}`;
    case 'in-netns':
      if (l.line.op === 'in-netns' || l.line.op === 'netns-add' || l.line.op === 'netns-del') throw new Error('refusing a nested namespace line');
      return `netns exec ${netnsName(l.name)} ip ${renderIpLine(l.line)}`;
    case 'fail-marker':
      return 'link add name lo type veth';
  }
}

/** A whole script: one line per operation, each ending in a newline. */
export function renderIpScript(lines: readonly IpLine[]): string {
  return lines.length === 0 ? '' : `${lines.map(renderIpLine).join('\n')}\n`;
}
