// CreateNetwork request → NetworkSpec, by the built-in bridge driver's rules (libnetwork
// drivers/bridge parseNetworkOptions/processIPAM/Validate), plus the checks newer Docker added
// (link-local and multicast subnets) and a few more for values that could only fail later in the
// kernel (MTU bounds, bridge name syntax).
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

export const OPT = {
  bridgeName: 'com.docker.network.bridge.name',
  icc: 'com.docker.network.bridge.enable_icc',
  masquerade: 'com.docker.network.bridge.enable_ip_masquerade',
  hostBindingIpv4: 'com.docker.network.bridge.host_binding_ipv4',
  inhibitIpv4: 'com.docker.network.bridge.inhibit_ipv4',
  defaultBridge: 'com.docker.network.bridge.default_bridge',
  gatewayModeIpv4: 'com.docker.network.bridge.gateway_mode_ipv4',
  gatewayModeIpv6: 'com.docker.network.bridge.gateway_mode_ipv6',
  mtu: 'com.docker.network.driver.mtu',
  ifacePrefix: 'com.docker.network.container_iface_prefix',
  hostIpv4: 'com.docker.network.host_ipv4',
  enableIpv6: 'com.docker.network.enable_ipv6',
  internal: 'com.docker.network.internal',
  generic: 'com.docker.network.generic',
} as const;

const GENERIC_KEYS: ReadonlySet<string> = new Set([
  OPT.bridgeName,
  OPT.icc,
  OPT.masquerade,
  OPT.hostBindingIpv4,
  OPT.inhibitIpv4,
  OPT.defaultBridge,
  OPT.gatewayModeIpv4,
  OPT.gatewayModeIpv6,
  OPT.mtu,
  OPT.ifacePrefix,
  OPT.hostIpv4,
  OPT.enableIpv6,
]);

export interface IpamData {
  readonly Pool?: unknown;
  readonly Gateway?: unknown;
  readonly AuxAddresses?: unknown;
  readonly AddressSpace?: unknown;
}

export interface CreateNetworkInput {
  readonly NetworkID: NetworkId;
  readonly Options: Record<string, unknown>;
  readonly IPv4Data: readonly unknown[];
  readonly IPv6Data: readonly unknown[];
}

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

function optString(key: string, value: unknown): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  throw new InvalidOptionError(`failed to parse ${key} value: expected a string`);
}

export function parseMtu(value: unknown, ipv6: boolean): number {
  const text = optString(OPT.mtu, value);
  if (!/^[+-]?\d{1,10}$/.test(text)) {
    throw new InvalidOptionError(
      `failed to parse ${OPT.mtu} value: ${text.slice(0, 32)} (strconv.Atoi: parsing ${JSON.stringify(text.slice(0, 32))}: invalid syntax)`,
    );
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

function parseGatewayMode(key: string, value: unknown): GatewayMode {
  const text = optString(key, value);
  if (text === 'nat' || text === 'routed') return text;
  throw new InvalidOptionError(`unknown gateway mode ${JSON.stringify(text.slice(0, 32))} in ${key} (nat, routed)`);
}

function readIpam(list: readonly unknown[], family: 4 | 6, id: NetworkId): { pool: Cidr; gateway: Cidr; aux: string | null } | null {
  if (!Array.isArray(list)) throw new InvalidRequestError(`IPv${family}Data must be a list`);
  if (list.length === 0) return null;
  if (list.length > 1) throw new InvalidRequestError('bridge driver doesn\'t support multiple subnets');
  const d = list[0] as IpamData | null;
  if (d === null || typeof d !== 'object') throw new InvalidRequestError(`IPv${family}Data[0] must be an object`);
  if (typeof d.Pool !== 'string' || d.Pool === '') {
    if (family === 4) throw new InvalidRequestError('ipv4 pool is empty');
    throw new InvalidRequestError('ipv6 pool is empty');
  }
  const pool = parseCidr(d.Pool, `IPv${family} subnet`, family);
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
  let gateway: Cidr;
  if (d.Gateway === undefined || d.Gateway === null || d.Gateway === '') {
    gateway = parseCidr(`${firstHost(pool)}/${pool.prefix}`, `IPv${family} gateway`, family);
  } else {
    if (typeof d.Gateway !== 'string') throw new InvalidRequestError(`IPv${family}Data[0].Gateway must be a string`);
    const g = d.Gateway.includes('/') ? parseCidr(d.Gateway, `IPv${family} gateway`, family) : parseCidr(`${parseIp(d.Gateway, `IPv${family} gateway`, family).ip}/${pool.prefix}`, `IPv${family} gateway`, family);
    if (!cidrContains(pool, g.ip)) {
      throw new InvalidAddressError(`invalid IPv${family} gateway ${g.ip}: not in subnet ${pool.network} of network ${id}`);
    }
    if (g.ip === pool.network.slice(0, pool.network.indexOf('/')) && (family === 6 || pool.prefix < 31)) {
      throw new InvalidAddressError(`invalid IPv${family} gateway ${g.ip}: it is the subnet's network address`);
    }
    // The bridge address always carries the pool's prefix, whatever mask the gateway came with.
    gateway = { ...g, prefix: pool.prefix, network: pool.network };
  }
  let aux: string | null = null;
  if (d.AuxAddresses !== undefined && d.AuxAddresses !== null) {
    if (typeof d.AuxAddresses !== 'object' || Array.isArray(d.AuxAddresses)) {
      throw new InvalidRequestError(`IPv${family}Data[0].AuxAddresses must be an object`);
    }
    const key = family === 4 ? 'DefaultGatewayIPv4' : 'DefaultGatewayIPv6';
    const raw = (d.AuxAddresses as Record<string, unknown>)[key];
    if (raw !== undefined) {
      if (typeof raw !== 'string') throw new InvalidRequestError(`${key} must be a string`);
      const a = raw.includes('/') ? parseCidr(raw, key, family).ip : parseIp(raw, key, family).ip;
      if (!cidrContains(pool, a)) throw new InvalidAddressError('default gateway ip must be part of the network');
      aux = a;
    }
  }
  return { pool, gateway, aux };
}

/** Parses and validates everything that does not depend on other networks. */
export function parseNetworkSpec(input: CreateNetworkInput): NetworkSpec {
  const { NetworkID: id } = input;
  const options = input.Options;
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new InvalidRequestError('Options must be an object');
  }
  const genericRaw = options[OPT.generic];
  let generic: Record<string, unknown> = {};
  if (genericRaw !== undefined && genericRaw !== null) {
    if (typeof genericRaw !== 'object' || Array.isArray(genericRaw)) {
      throw new InvalidOptionError(`${OPT.generic} must be an object`);
    }
    generic = genericRaw as Record<string, unknown>;
  }
  for (const key of Object.keys(generic)) {
    if (!GENERIC_KEYS.has(key)) {
      throw new InvalidOptionError(`unknown option ${JSON.stringify(key.slice(0, 80))} for the batchbridge driver`);
    }
  }
  const bool = (key: string, dflt: boolean): boolean => (generic[key] === undefined ? dflt : parseGoBool(key, generic[key]));

  let enableIpv6 = bool(OPT.enableIpv6, false);
  if (options[OPT.enableIpv6] !== undefined) enableIpv6 = parseGoBool(OPT.enableIpv6, options[OPT.enableIpv6]);
  const internal = options[OPT.internal] === undefined ? false : parseGoBool(OPT.internal, options[OPT.internal]);

  if (bool(OPT.defaultBridge, false)) {
    throw new NotSupportedError(`${OPT.defaultBridge} is not supported: the default bridge belongs to dockerd`);
  }

  const bridge =
    generic[OPT.bridgeName] === undefined || generic[OPT.bridgeName] === ''
      ? defaultBridgeName(id)
      : parseIfName(optString(OPT.bridgeName, generic[OPT.bridgeName]), 'bridge name');

  const mtu = generic[OPT.mtu] === undefined ? 0 : parseMtu(generic[OPT.mtu], enableIpv6);

  let hostBindingIpv4 = '0.0.0.0';
  if (generic[OPT.hostBindingIpv4] !== undefined && generic[OPT.hostBindingIpv4] !== '') {
    const text = optString(OPT.hostBindingIpv4, generic[OPT.hostBindingIpv4]);
    try {
      hostBindingIpv4 = parseIp(text, OPT.hostBindingIpv4).ip;
    } catch {
      throw new InvalidOptionError(`failed to parse ${OPT.hostBindingIpv4} value: ${text.slice(0, 64)} (nil ip)`);
    }
  }
  let hostIpv4: string | null = null;
  if (generic[OPT.hostIpv4] !== undefined && generic[OPT.hostIpv4] !== '') {
    const text = optString(OPT.hostIpv4, generic[OPT.hostIpv4]);
    try {
      hostIpv4 = parseIp(text, OPT.hostIpv4, 4).ip;
    } catch {
      throw new InvalidOptionError(`failed to parse ${OPT.hostIpv4} value: ${text.slice(0, 64)} (not an IPv4 address)`);
    }
  }

  let ifacePrefix = 'eth';
  if (generic[OPT.ifacePrefix] !== undefined && generic[OPT.ifacePrefix] !== '') {
    const text = optString(OPT.ifacePrefix, generic[OPT.ifacePrefix]);
    // dockerd appends a counter, so leave room for it inside the 15-byte limit.
    if (!/^[A-Za-z][A-Za-z0-9_-]{0,11}$/.test(text)) {
      throw new InvalidOptionError(`invalid ${OPT.ifacePrefix} ${JSON.stringify(text.slice(0, 40))}: 1 to 12 characters of [A-Za-z0-9_-], starting with a letter`);
    }
    ifacePrefix = text;
  }

  const v4 = readIpam(input.IPv4Data, 4, id);
  if (v4 === null) throw new InvalidRequestError(`bridge network ${id} requires ipv4 configuration`);
  const v6 = readIpam(input.IPv6Data, 6, id);
  if (v6 !== null && !enableIpv6) {
    throw new InvalidRequestError('an IPv6 subnet was given but com.docker.network.enable_ipv6 is false');
  }

  const mac = randomBytes(4);
  return {
    id,
    bridge,
    bridgeMac: `02:42:${[...mac].map((b) => b.toString(16).padStart(2, '0')).join(':')}`,
    mtu,
    icc: bool(OPT.icc, true),
    masquerade: bool(OPT.masquerade, true),
    hostBindingIpv4,
    hostIpv4,
    inhibitIpv4: bool(OPT.inhibitIpv4, false),
    ifacePrefix,
    internal,
    enableIpv6,
    gatewayModeIpv4: generic[OPT.gatewayModeIpv4] === undefined ? 'nat' : parseGatewayMode(OPT.gatewayModeIpv4, generic[OPT.gatewayModeIpv4]),
    gatewayModeIpv6: generic[OPT.gatewayModeIpv6] === undefined ? 'nat' : parseGatewayMode(OPT.gatewayModeIpv6, generic[OPT.gatewayModeIpv6]),
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
