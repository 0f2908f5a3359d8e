// A network in domain terms (NetworkSpec) and the one place its fields are validated, by the
// built-in bridge driver's rules (libnetwork drivers/bridge parseNetworkOptions/processIPAM/
// Validate), plus the checks newer Docker added (link-local and multicast subnets) and a few more
// for values that could only fail later in the kernel (MTU bounds, bridge name syntax). Each front
// end maps its own wire format onto NetworkFields, naming every value as its user knows it, so
// both get the same rules and the same errors (api/network-options.ts, cni/).
import { randomBytes } from 'node:crypto';
import { InvalidAddressError, InvalidOptionError, InvalidRequestError, NotSupportedError } from '../errors.js';
import { cidrContains, cidrsOverlap, firstHost, isMulticast, parseCidr, parseIp, type Cidr } from './addr.js';
import { defaultBridgeName, parseIfName, type IfName, type NetworkId } from './names.js';

export type GatewayMode = 'nat' | 'routed';

export interface NetworkSpec {
  readonly id: NetworkId;
  readonly bridge: IfName;
  /** MAC for a bridge we create: 02:42 + 4 random bytes, like Docker */
  readonly bridgeMac: string;
  readonly mtu: number; // 0: leave the kernel default
  readonly icc: boolean;
  readonly masquerade: boolean;
  readonly hostBindingIpv4: string; // default host IP for published ports
  readonly hostIpv4: string | null; // SNAT source instead of MASQUERADE
  readonly inhibitIpv4: boolean;
  readonly ifacePrefix: string;
  readonly internal: boolean;
  readonly enableIpv6: boolean;
  readonly gatewayModeIpv4: GatewayMode;
  readonly gatewayModeIpv6: GatewayMode;
  /** bridge IPv4 address with the pool's prefix, e.g. 198.18.20.1/24 */
  readonly ipv4: Cidr;
  /** Join's Gateway: aux DefaultGatewayIPv4 or the bridge address */
  readonly gatewayIpv4: string;
  /** bridge IPv6 global address (IPAM gateway) if a v6 subnet was given */
  readonly ipv6: Cidr | null;
  /** Join's GatewayIPv6 ("" unless IPv6 is enabled) */
  readonly gatewayIpv6: string;
}

export interface IpamData {
  readonly Pool?: unknown;
  readonly Gateway?: unknown;
  readonly AuxAddresses?: unknown;
  readonly AddressSpace?: unknown;
}

/** A value as a front end found it, and the name its user knows it by (for error messages). */
export interface OptionValue {
  readonly value: unknown;
  readonly name: string;
}

/** One family's addressing as a front end found it. */
export interface IpamFields {
  readonly pool: unknown;
  readonly gateway: unknown;
  /** a default gateway other than the bridge address (Docker's AuxAddresses DefaultGatewayIPv4/6) */
  readonly auxGateway?: OptionValue;
  /** how errors name this entry, e.g. "IPv4Data[0]" */
  readonly where: string;
}

/** A network's options, by their domain names; a front end sets those its user gave. */
export type NetworkOption =
  | 'bridge' | 'mtu' | 'icc' | 'masquerade' | 'hostBindingIpv4' | 'hostIpv4' | 'inhibitIpv4'
  | 'ifacePrefix' | 'internal' | 'enableIpv6' | 'gatewayModeIpv4' | 'gatewayModeIpv6' | 'defaultBridge';

/** A network as a front end found it: its id, each option it was given, its addressing. */
export type NetworkFields = { readonly [K in NetworkOption]?: OptionValue | undefined } & {
  readonly id: NetworkId;
  readonly ipv4: IpamFields | null;
  readonly ipv6: IpamFields | null;
};

/** Go's strconv.ParseBool, which the built-in driver uses for every boolean option. */
export function parseGoBool(key: string, value: unknown): boolean {
  if (typeof value === 'boolean') return value;
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  switch (text) {
    case '1': case 't': case 'T': case 'TRUE': case 'true': case 'True':
      return true;
    case '0': case 'f': case 'F': case 'FALSE': case 'false': case 'False':
      return false;
    default:
      throw new InvalidOptionError(
        `failed to parse ${key} value: ${String(text).slice(0, 64)} (strconv.ParseBool: parsing ${JSON.stringify(String(text).slice(0, 64))}: invalid syntax)`,
      );
  }
}

function optString(o: OptionValue): string {
  if (typeof o.value === 'string') return o.value;
  if (typeof o.value === 'number' || typeof o.value === 'boolean') return String(o.value);
  throw new InvalidOptionError(`failed to parse ${o.name} value: expected a string`);
}

/** Unset: absent, or an empty string (Docker's CLI sends "" for options given without a value). */
function unset(o: OptionValue | undefined): o is undefined {
  return o === undefined || o.value === undefined || o.value === '';
}

function bool(o: OptionValue | undefined, dflt: boolean): boolean {
  return o === undefined || o.value === undefined ? dflt : parseGoBool(o.name, o.value);
}

export function parseMtu(o: OptionValue, ipv6: boolean): number {
  const text = optString(o);
  if (!/^[+-]?\d{1,10}$/.test(text)) {
    throw new InvalidOptionError(`failed to parse ${o.name} value: ${text.slice(0, 32)} (strconv.Atoi: parsing ${JSON.stringify(text.slice(0, 32))}: invalid syntax)`);
  }
  const mtu = Number(text);
  if (mtu < 0) throw new InvalidOptionError(`invalid MTU number: ${mtu}`);
  // 0 means "kernel default", as in Docker. Anything else must be an MTU a veth can take.
  const min = ipv6 ? 1280 : 68;
  if (mtu !== 0 && (mtu < min || mtu > 65535)) {
    throw new InvalidOptionError(`invalid MTU number: ${mtu} (must be between ${min} and 65535)`);
  }
  return mtu;
}

function parseGatewayMode(o: OptionValue | undefined): GatewayMode {
  if (o === undefined || o.value === undefined) return 'nat';
  const text = optString(o);
  if (text === 'nat' || text === 'routed') return text;
  throw new InvalidOptionError(`unknown gateway mode ${JSON.stringify(text.slice(0, 32))} in ${o.name} (nat, routed)`);
}

function parseHostIp(o: OptionValue | undefined, family: 4 | undefined, why: string): string | null {
  if (unset(o)) return null;
  const text = optString(o);
  try {
    return parseIp(text, o.name, family).ip;
  } catch {
    throw new InvalidOptionError(`failed to parse ${o.name} value: ${text.slice(0, 64)} (${why})`);
  }
}

function parseIfacePrefix(o: OptionValue | undefined): string {
  if (unset(o)) return 'eth';
  const text = optString(o);
  // dockerd appends a counter, so leave room for it inside the 15-byte limit.
  if (!/^[A-Za-z][A-Za-z0-9_-]{0,11}$/.test(text)) {
    throw new InvalidOptionError(`invalid ${o.name} ${JSON.stringify(text.slice(0, 40))}: 1 to 12 characters of [A-Za-z0-9_-], starting with a letter`);
  }
  return text;
}

function parsePool(d: IpamFields, family: 4 | 6): Cidr {
  if (typeof d.pool !== 'string' || d.pool === '') throw new InvalidRequestError(`ipv${family} pool is empty`);
  const pool = parseCidr(d.pool, `IPv${family} subnet`, family);
  if (family === 4 && pool.prefix === 0) throw new InvalidRequestError('ipv4 pool is empty');
  if (isMulticast(pool)) throw new InvalidAddressError(`invalid IPv${family} subnet ${pool.network}: multicast subnets are not allowed`);
  if (family === 6) {
    const linkLocal = parseCidr('fe80::/64', 'link-local', 6);
    if (pool.network !== 'fe80::/64' && cidrsOverlap(pool, linkLocal)) {
      throw new InvalidAddressError(`'${pool.network}' clashes with the Link-Local prefix 'fe80::/64'`);
    }
    if (pool.prefix === 0) throw new InvalidRequestError('ipv6 pool is empty');
  }
  if (family === 4 && pool.prefix > 30) {
    throw new InvalidAddressError(`invalid IPv4 subnet ${pool.network}: too small for a gateway and a container`);
  }
  return pool;
}

function parseGateway(d: IpamFields, family: 4 | 6, pool: Cidr, id: NetworkId): Cidr {
  if (d.gateway === undefined || d.gateway === null || d.gateway === '') {
    return parseCidr(`${firstHost(pool)}/${pool.prefix}`, `IPv${family} gateway`, family);
  }
  if (typeof d.gateway !== 'string') throw new InvalidRequestError(`${d.where}.Gateway must be a string`);
  const what = `IPv${family} gateway`;
  const g = d.gateway.includes('/') ? parseCidr(d.gateway, what, family) : parseCidr(`${parseIp(d.gateway, what, family).ip}/${pool.prefix}`, what, family);
  if (!cidrContains(pool, g.ip)) {
    throw new InvalidAddressError(`invalid IPv${family} gateway ${g.ip}: not in subnet ${pool.network} of network ${id}`);
  }
  if (g.ip === pool.network.slice(0, pool.network.indexOf('/')) && (family === 6 || pool.prefix < 31)) {
    throw new InvalidAddressError(`invalid IPv${family} gateway ${g.ip}: it is the subnet's network address`);
  }
  // The bridge address always carries the pool's prefix, whatever mask the gateway came with.
  return { ...g, prefix: pool.prefix, network: pool.network };
}

function parseAuxGateway(o: OptionValue | undefined, family: 4 | 6, pool: Cidr): string | null {
  if (o === undefined || o.value === undefined) return null;
  if (typeof o.value !== 'string') throw new InvalidRequestError(`${o.name} must be a string`);
  const a = o.value.includes('/') ? parseCidr(o.value, o.name, family).ip : parseIp(o.value, o.name, family).ip;
  if (!cidrContains(pool, a)) throw new InvalidAddressError('default gateway ip must be part of the network');
  return a;
}

function readIpam(d: IpamFields | null, family: 4 | 6, id: NetworkId): { gateway: Cidr; aux: string | null } | null {
  if (d === null) return null;
  const pool = parsePool(d, family);
  return { gateway: parseGateway(d, family, pool, id), aux: parseAuxGateway(d.auxGateway, family, pool) };
}

/** Validates everything that does not depend on other networks. */
export function buildNetworkSpec(f: NetworkFields): NetworkSpec {
  const { id } = f;
  // The order of the checks is the built-in driver's: the first error found is the one reported.
  const enableIpv6 = bool(f.enableIpv6, false);
  const internal = bool(f.internal, false);
  if (bool(f.defaultBridge, false)) {
    throw new NotSupportedError(`${f.defaultBridge?.name ?? 'default_bridge'} is not supported: the default bridge belongs to dockerd`);
  }
  const bridge = unset(f.bridge) ? defaultBridgeName(id) : parseIfName(optString(f.bridge), 'bridge name');
  const mtu = f.mtu === undefined || f.mtu.value === undefined ? 0 : parseMtu(f.mtu, enableIpv6);
  const hostBindingIpv4 = parseHostIp(f.hostBindingIpv4, undefined, 'nil ip') ?? '0.0.0.0';
  const hostIpv4 = parseHostIp(f.hostIpv4, 4, 'not an IPv4 address');
  const ifacePrefix = parseIfacePrefix(f.ifacePrefix);
  const v4 = readIpam(f.ipv4, 4, id);
  if (v4 === null) throw new InvalidRequestError(`bridge network ${id} requires ipv4 configuration`);
  const v6 = readIpam(f.ipv6, 6, id);
  if (v6 !== null && !enableIpv6) {
    throw new InvalidRequestError(`an IPv6 subnet was given but ${f.enableIpv6?.name ?? 'IPv6'} is false`);
  }
  const mac = randomBytes(4);
  return {
    id,
    bridge,
    bridgeMac: `02:42:${[...mac].map((b) => b.toString(16).padStart(2, '0')).join(':')}`,
    mtu,
    icc: bool(f.icc, true),
    masquerade: bool(f.masquerade, true),
    hostBindingIpv4,
    hostIpv4,
    inhibitIpv4: bool(f.inhibitIpv4, false),
    ifacePrefix,
    internal,
    enableIpv6,
    gatewayModeIpv4: parseGatewayMode(f.gatewayModeIpv4),
    gatewayModeIpv6: parseGatewayMode(f.gatewayModeIpv6),
    ipv4: v4.gateway,
    gatewayIpv4: v4.aux ?? v4.gateway.ip,
    ipv6: v6 === null ? null : v6.gateway,
    gatewayIpv6: !enableIpv6 ? '' : v6 === null ? 'fe80::1' : (v6.aux ?? v6.gateway.ip),
  };
}

export interface ConflictCandidate {
  readonly id: NetworkId;
  readonly bridge: IfName;
  readonly ipv4: Cidr;
  readonly ipv6: Cidr | null;
}

/** The reason `next` conflicts with `existing`, or null. Same wording as the built-in driver. */
export function conflictReason(next: ConflictCandidate, existing: ConflictCandidate): string | null {
  if (next.bridge === existing.bridge) return 'networks have same bridge name';
  if (cidrsOverlap(next.ipv4, existing.ipv4)) return 'networks have overlapping IPv4';
  if (next.ipv6 !== null && existing.ipv6 !== null && cidrsOverlap(next.ipv6, existing.ipv6)) {
    return 'networks have overlapping IPv6';
  }
  return null;
}

/**
 * The first field in which two specs of the same network id differ, or null when they describe
 * the same network. The bridge MAC is drawn at random for every request, so it never counts.
 * dockerd retries a call whose answer it did not get: the retry must find "the same network".
 */
export function specDifference(a: NetworkSpec, b: NetworkSpec): string | null {
  const keys = Object.keys(a) as Array<keyof NetworkSpec>;
  for (const k of keys) {
    if (k === 'bridgeMac') continue;
    if (JSON.stringify(a[k]) !== JSON.stringify(b[k])) return k;
  }
  return null;
}
