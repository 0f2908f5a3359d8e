// A CNI network configuration (one plugin entry of a conflist, as libcni sends it on stdin)
// → the network it describes. What a Docker network also has is validated by the domain's
// buildNetworkSpec, the same rules and error texts as `docker network create -d batchbridge`,
// with each value named by its CNI key:
//
//   bridge            → the bridge name
//   ipMasq            → masquerade (default false, as the reference bridge plugin)
//   isGateway         → the bridge holds the gateway address (default false, as the reference;
//                       isDefaultGateway implies it)
//   mtu               → the MTU
//   ipam.ranges       → the IPv4 and IPv6 subnets and gateways; an IPv6 range enables IPv6
//
// What Docker has no words for (hairpinMode, routes, rangeStart/End, dns, the IPAM plugin to
// delegate to) is validated here.
import { createHash } from 'node:crypto';
import { BbError, CniConfigError, CniUnsupportedFieldError, InvalidAddressError, InvalidRequestError } from '../errors.js';
import { cidrContains, ipBytes, parseCidr, parseIp, type Cidr, type Family } from '../domain/addr.js';
import { buildNetworkSpec, type IpamFields, type NetworkSpec } from '../domain/network-spec.js';
import { parseNetworkId, type NetworkId } from '../domain/names.js';
import { parseDns, shown, type ConfigObject } from './config-values.js';
import type { CniDns, CniRoute } from './result.js';

export interface CniRange {
  readonly family: Family;
  readonly subnet: Cidr;
  /** the gateway as configured, or null (Docker's rule then: the first address) */
  readonly gateway: string | null;
  readonly rangeStart: string | null;
  readonly rangeEnd: string | null;
}

export type CniIpam =
  | { readonly kind: 'daemon'; readonly ranges: readonly CniRange[] }
  /** `type` names an IPAM plugin in CNI_PATH; it gets our stdin unchanged */
  | { readonly kind: 'delegated'; readonly type: string; readonly ranges: readonly CniRange[] };

export interface CniCapabilities {
  readonly portMappings: boolean;
  readonly ips: boolean;
  readonly mac: boolean;
}

export interface CniNetwork {
  readonly name: string;
  /** stable engine id: sha256 of the name (networkIdFor) */
  readonly id: NetworkId;
  readonly type: string;
  readonly spec: NetworkSpec;
  readonly isGateway: boolean;
  readonly isDefaultGateway: boolean;
  readonly hairpinMode: boolean;
  readonly ipam: CniIpam;
  /** routes for the container: ipam.routes, plus default routes with isDefaultGateway */
  readonly routes: readonly CniRoute[];
  readonly dns: CniDns;
  /** the daemon socket the config names, or null */
  readonly socket: string | null;
  readonly capabilities: CniCapabilities;
}

/** Keys of a plugin config that libcni puts there or passes through, handled by invocation.ts. */
export const PROTOCOL_KEYS: ReadonlySet<string> = new Set(['cniVersion', 'name', 'type', 'capabilities', 'runtimeConfig', 'prevResult', 'args', 'cni.dev/valid-attachments', 'cni.dev/attachments']);
const OUR_KEYS: ReadonlySet<string> = new Set(['socket', 'bridge', 'isGateway', 'isDefaultGateway', 'ipMasq', 'mtu', 'hairpinMode', 'ipam', 'dns']);
/** Reference bridge plugin options batchbridge does not implement: accepted only when off. */
const OFF_ONLY: Readonly<Record<string, unknown>> = {
  forceAddress: false,
  promiscMode: false,
  vlan: 0,
  macspoofchk: false,
  enabledad: false,
  disableContainerInterface: false,
  portIsolation: false,
};
const DAEMON_IPAM_KEYS: ReadonlySet<string> = new Set(['type', 'ranges', 'routes', 'subnet', 'rangeStart', 'rangeEnd', 'gateway']);
const CAPABILITIES = ['portMappings', 'ips', 'mac'] as const;
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
const PLUGIN_TYPE_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
export const DAEMON_IPAM_TYPE = 'batchbridge';

/** The engine's id for the CNI network called `name`: 64 hex characters, like a Docker id. */
export function networkIdFor(name: string): NetworkId {
  return parseNetworkId(createHash('sha256').update(`batchbridge-cni-network\0${name}`).digest('hex'), 'network id');
}

export function parseNetworkName(v: unknown): string {
  if (v === undefined || v === null || v === '') throw new CniConfigError('missing network name: the config needs "name"');
  if (typeof v !== 'string' || !NAME_RE.test(v)) {
    throw new CniConfigError(`invalid network name ${shown(v)}: 1 to 128 characters of [A-Za-z0-9_.-], starting with a letter or digit`);
  }
  return v;
}

function bool(c: ConfigObject, key: string, dflt: boolean): boolean {
  const v = c[key];
  if (v === undefined || v === null) return dflt;
  if (typeof v !== 'boolean') throw new CniConfigError(`${key} must be true or false, got ${shown(v)}`);
  return v;
}

function checkKeys(c: ConfigObject): void {
  for (const [key, value] of Object.entries(c)) {
    if (PROTOCOL_KEYS.has(key) || OUR_KEYS.has(key) || key.startsWith('cni.dev/')) continue;
    if (key in OFF_ONLY && value === OFF_ONLY[key]) continue;
    throw new CniUnsupportedFieldError(`unsupported field ${key}: ${shown(value)} (batchbridge-cni does not implement it)`);
  }
}

function parseCapabilities(v: unknown): CniCapabilities {
  if (v === undefined || v === null) return { portMappings: false, ips: false, mac: false };
  if (typeof v !== 'object' || Array.isArray(v)) throw new CniConfigError(`capabilities must be an object, got ${shown(v)}`);
  const caps: Record<string, boolean> = { portMappings: false, ips: false, mac: false };
  for (const [k, on] of Object.entries(v as ConfigObject)) {
    if (typeof on !== 'boolean') throw new CniConfigError(`capabilities.${k} must be true or false, got ${shown(on)}`);
    if (!(CAPABILITIES as readonly string[]).includes(k)) {
      if (on) throw new CniUnsupportedFieldError(`unsupported capability ${k}: true (batchbridge-cni implements ${CAPABILITIES.join(', ')})`);
      continue;
    }
    caps[k] = on;
  }
  return { portMappings: caps.portMappings === true, ips: caps.ips === true, mac: caps.mac === true };
}

function optIp(v: unknown, what: string, family: Family): string | null {
  if (v === undefined || v === null || v === '') return null;
  if (typeof v !== 'string') throw new CniConfigError(`${what} must be a string, got ${shown(v)}`);
  return parseIp(v, what, family).ip;
}

function compareIp(a: string, b: string): number {
  const x = ipBytes(a);
  const y = ipBytes(b);
  for (let i = 0; i < x.length; i++) if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) - (y[i] ?? 0);
  return 0;
}

function parseRange(v: unknown, where: string): CniRange {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new CniConfigError(`${where} must be an object, got ${shown(v)}`);
  const r = v as ConfigObject;
  if (typeof r.subnet !== 'string' || r.subnet === '') throw new CniConfigError(`${where}.subnet is required (CIDR, e.g. "198.18.64.0/24")`);
  const subnet = parseCidr(r.subnet, `${where}.subnet`);
  const inSubnet = (ip: string | null, key: string): string | null => {
    if (ip !== null && !cidrContains(subnet, ip)) throw new InvalidAddressError(`invalid ${where}.${key} ${ip}: not in subnet ${subnet.network}`);
    return ip;
  };
  const rangeStart = inSubnet(optIp(r.rangeStart, `${where}.rangeStart`, subnet.family), 'rangeStart');
  const rangeEnd = inSubnet(optIp(r.rangeEnd, `${where}.rangeEnd`, subnet.family), 'rangeEnd');
  if (rangeStart !== null && rangeEnd !== null && compareIp(rangeStart, rangeEnd) > 0) {
    throw new InvalidAddressError(`invalid ${where}: rangeStart ${rangeStart} is after rangeEnd ${rangeEnd}`);
  }
  return { family: subnet.family, subnet, gateway: optIp(r.gateway, `${where}.gateway`, subnet.family), rangeStart, rangeEnd };
}

/** host-local's format: `ranges` (a list of range sets), and the older single range on top. */
function parseRanges(ipam: ConfigObject): CniRange[] {
  const ranges: CniRange[] = [];
  if (ipam.subnet !== undefined && ipam.subnet !== null && ipam.subnet !== '') ranges.push(parseRange(ipam, 'ipam'));
  const sets = ipam.ranges ?? [];
  if (!Array.isArray(sets)) throw new CniConfigError(`ipam.ranges must be a list of range sets, got ${shown(sets)}`);
  sets.forEach((set: unknown, i) => {
    if (!Array.isArray(set) || set.length === 0) throw new CniConfigError(`ipam.ranges[${i}] must be a non-empty list of ranges`);
    set.forEach((r: unknown, j) => ranges.push(parseRange(r, `ipam.ranges[${i}][${j}]`)));
  });
  return ranges;
}

function parseRoutes(v: unknown, strict: boolean): CniRoute[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || v.length > 1024) throw new CniConfigError(`ipam.routes must be a list of at most 1024 routes, got ${shown(v)}`);
  return v.map((r: unknown, i): CniRoute => {
    const where = `ipam.routes[${i}]`;
    if (r === null || typeof r !== 'object' || Array.isArray(r)) throw new CniConfigError(`${where} must be an object`);
    const o = r as ConfigObject;
    for (const k of Object.keys(o)) {
      if (strict && k !== 'dst' && k !== 'gw') throw new CniUnsupportedFieldError(`unsupported field ${where}.${k}: ${shown(o[k])} (routes take dst and gw)`);
    }
    if (typeof o.dst !== 'string') throw new CniConfigError(`${where}.dst is required (CIDR)`);
    const dst = parseCidr(o.dst, `${where}.dst`);
    const gw = optIp(o.gw, `${where}.gw`, dst.family);
    return { dst: dst.network, ...(gw !== null ? { gw } : {}) };
  });
}

function parseIpam(v: unknown): { ipam: CniIpam; routes: CniRoute[] } {
  if (v !== undefined && v !== null && (typeof v !== 'object' || Array.isArray(v))) throw new CniConfigError(`ipam must be an object, got ${shown(v)}`);
  const ipam = (v ?? {}) as ConfigObject;
  const type = ipam.type ?? DAEMON_IPAM_TYPE;
  if (typeof type !== 'string' || !PLUGIN_TYPE_RE.test(type)) throw new CniConfigError(`invalid ipam.type ${shown(type)}: the name of an IPAM plugin in CNI_PATH, or "batchbridge"`);
  const daemon = type === DAEMON_IPAM_TYPE;
  if (daemon) {
    for (const k of Object.keys(ipam)) {
      if (!DAEMON_IPAM_KEYS.has(k)) throw new CniUnsupportedFieldError(`unsupported field ipam.${k}: ${shown(ipam[k])} (ipam.type "batchbridge" takes ranges, routes, subnet, rangeStart, rangeEnd, gateway)`);
    }
  }
  const ranges = parseRanges(ipam);
  if (!ranges.some((r) => r.family === 4)) {
    throw new CniConfigError(
      daemon
        ? 'ipam must give an IPv4 subnet, e.g. "ranges": [[{"subnet": "198.18.64.0/24"}]]: a batchbridge network always has IPv4, like a Docker bridge network'
        : `ipam of type ${JSON.stringify(type)} must list its IPv4 subnet in host-local's format ("ranges": [[{"subnet": ...}]]): batchbridge sets up the bridge, gateway and NAT before the first ADD`,
    );
  }
  const routes = parseRoutes(ipam.routes, daemon);
  return { ipam: daemon ? { kind: 'daemon', ranges } : { kind: 'delegated', type, ranges }, routes };
}

/** 02:42 + 4 bytes of the id's hash: the same config always describes the same bridge. */
function bridgeMacFor(id: NetworkId): string {
  const h = createHash('sha256').update(`bridge-mac\0${id}`).digest();
  return `02:42:${[...h.subarray(0, 4)].map((b) => b.toString(16).padStart(2, '0')).join(':')}`;
}

function specFor(c: ConfigObject, name: string, id: NetworkId, ranges: readonly CniRange[], isGateway: boolean): NetworkSpec {
  if (c.bridge !== undefined && c.bridge !== null && typeof c.bridge !== 'string') throw new CniConfigError(`bridge must be a string, got ${shown(c.bridge)}`);
  if (c.mtu !== undefined && c.mtu !== null && (typeof c.mtu !== 'number' || !Number.isInteger(c.mtu))) throw new CniConfigError(`mtu must be a whole number, got ${shown(c.mtu)}`);
  const ipam = (family: Family): IpamFields | null => {
    const of = ranges.filter((r) => r.family === family);
    // One subnet per family, as a Docker bridge network, with Docker's words for it.
    if (of.length > 1) throw new InvalidRequestError("bridge driver doesn't support multiple subnets");
    const r = of[0];
    return r === undefined ? null : { pool: r.subnet.network, gateway: r.gateway ?? undefined, where: 'ipam.ranges' };
  };
  const given = (key: string): { value: unknown; name: string } | undefined => (c[key] === undefined || c[key] === null ? undefined : { value: c[key], name: key });
  try {
    const spec = buildNetworkSpec({
      id,
      bridge: given('bridge'),
      mtu: given('mtu'),
      masquerade: { value: bool(c, 'ipMasq', false), name: 'ipMasq' },
      inhibitIpv4: { value: !isGateway, name: 'isGateway' },
      enableIpv6: { value: ranges.some((r) => r.family === 6), name: 'an IPv6 range in ipam.ranges' },
      ipv4: ipam(4),
      ipv6: ipam(6),
    });
    return { ...spec, bridgeMac: bridgeMacFor(id) };
  } catch (err) {
    // The domain's texts name the network by id; a CNI user knows it by name.
    if (err instanceof BbError) err.message = err.message.split(id).join(JSON.stringify(name));
    throw err;
  }
}

function defaultRoutes(routes: readonly CniRoute[], spec: NetworkSpec): CniRoute[] {
  const out = [...routes];
  const add = (dst: string, gw: string): void => {
    if (!out.some((r) => r.dst === dst)) out.push({ dst, gw });
  };
  add('0.0.0.0/0', spec.gatewayIpv4);
  if (spec.ipv6 !== null) add('::/0', spec.gatewayIpv6);
  return out;
}

/** The network a plugin config describes. Throws BbErrors (cni-error.ts gives their codes). */
export function parseNetConfig(c: ConfigObject): CniNetwork {
  const name = parseNetworkName(c.name);
  if (typeof c.type !== 'string' || c.type === '') throw new CniConfigError(`missing plugin type: the config needs "type" (e.g. "batchbridge-cni")`);
  checkKeys(c);
  const id = networkIdFor(name);
  let socket: string | null = null;
  if (c.socket !== undefined && c.socket !== null) {
    if (typeof c.socket !== 'string' || !c.socket.startsWith('/') || c.socket.length > 107) throw new CniConfigError(`socket must be an absolute path of at most 107 bytes, got ${shown(c.socket)}`);
    socket = c.socket;
  }
  const isDefaultGateway = bool(c, 'isDefaultGateway', false);
  // As in the reference bridge plugin, isDefaultGateway makes the bridge the gateway.
  const isGateway = isDefaultGateway || bool(c, 'isGateway', false);
  const { ipam, routes } = parseIpam(c.ipam);
  if (!isGateway && ipam.ranges.some((r) => r.family === 6)) {
    throw new CniUnsupportedFieldError('unsupported field isGateway: false with an IPv6 range (the bridge always holds the IPv6 gateway address)');
  }
  const spec = specFor(c, name, id, ipam.ranges, isGateway);
  return {
    name,
    id,
    type: c.type,
    spec,
    isGateway,
    isDefaultGateway,
    hairpinMode: bool(c, 'hairpinMode', false),
    ipam,
    routes: isDefaultGateway ? defaultRoutes(routes, spec) : routes,
    dns: parseDns(c.dns, 'dns'),
    socket,
    capabilities: parseCapabilities(c.capabilities),
  };
}
