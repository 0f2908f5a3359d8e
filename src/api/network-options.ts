// CreateNetwork's wire fields (Options, IPv4Data, IPv6Data) → the domain's NetworkFields, naming
// each value by its Docker option name, so every error reads as the built-in driver's does.
import { InvalidOptionError, InvalidRequestError } from '../errors.js';
import type { NetworkId } from '../domain/names.js';
import { buildNetworkSpec, type IpamData, type IpamFields, type NetworkSpec, type OptionValue } from '../domain/network-spec.js';

export { parseGoBool } from '../domain/network-spec.js';

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

export interface CreateNetworkInput {
  readonly NetworkID: NetworkId;
  readonly Options: Record<string, unknown>;
  readonly IPv4Data: readonly unknown[];
  readonly IPv6Data: readonly unknown[];
}

function genericOptions(options: Record<string, unknown>): Record<string, unknown> {
  const raw = options[OPT.generic];
  if (raw === undefined || raw === null) return {};
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new InvalidOptionError(`${OPT.generic} must be an object`);
  const generic = raw as Record<string, unknown>;
  for (const key of Object.keys(generic)) {
    if (!GENERIC_KEYS.has(key)) throw new InvalidOptionError(`unknown option ${JSON.stringify(key.slice(0, 80))} for the batchbridge driver`);
  }
  return generic;
}

function ipamEntry(list: readonly unknown[], family: 4 | 6): IpamFields | null {
  if (!Array.isArray(list)) throw new InvalidRequestError(`IPv${family}Data must be a list`);
  if (list.length === 0) return null;
  if (list.length > 1) throw new InvalidRequestError("bridge driver doesn't support multiple subnets");
  const where = `IPv${family}Data[0]`;
  const d = list[0] as IpamData | null;
  if (d === null || typeof d !== 'object') throw new InvalidRequestError(`${where} must be an object`);
  let auxGateway: OptionValue | undefined;
  if (d.AuxAddresses !== undefined && d.AuxAddresses !== null) {
    if (typeof d.AuxAddresses !== 'object' || Array.isArray(d.AuxAddresses)) throw new InvalidRequestError(`${where}.AuxAddresses must be an object`);
    const name = family === 4 ? 'DefaultGatewayIPv4' : 'DefaultGatewayIPv6';
    auxGateway = { value: (d.AuxAddresses as Record<string, unknown>)[name], name };
  }
  return { pool: d.Pool, gateway: d.Gateway, where, ...(auxGateway === undefined ? {} : { auxGateway }) };
}

/** CreateNetwork request → NetworkSpec. */
export function parseNetworkSpec(input: CreateNetworkInput): NetworkSpec {
  const options = input.Options;
  if (options === null || typeof options !== 'object' || Array.isArray(options)) throw new InvalidRequestError('Options must be an object');
  const generic = genericOptions(options);
  const opt = (key: string): OptionValue | undefined => (generic[key] === undefined ? undefined : { value: generic[key], name: key });
  // IPv6 and internal may also come as top-level options (dockerd sets them there); top-level wins.
  const top = (key: string): OptionValue | undefined => (options[key] === undefined ? undefined : { value: options[key], name: key });
  return buildNetworkSpec({
    id: input.NetworkID,
    bridge: opt(OPT.bridgeName),
    mtu: opt(OPT.mtu),
    icc: opt(OPT.icc),
    masquerade: opt(OPT.masquerade),
    hostBindingIpv4: opt(OPT.hostBindingIpv4),
    hostIpv4: opt(OPT.hostIpv4),
    inhibitIpv4: opt(OPT.inhibitIpv4),
    ifacePrefix: opt(OPT.ifacePrefix),
    internal: top(OPT.internal),
    enableIpv6: top(OPT.enableIpv6) ?? opt(OPT.enableIpv6) ?? { value: false, name: OPT.enableIpv6 },
    gatewayModeIpv4: opt(OPT.gatewayModeIpv4),
    gatewayModeIpv6: opt(OPT.gatewayModeIpv6),
    defaultBridge: opt(OPT.defaultBridge),
    ipv4: ipamEntry(input.IPv4Data, 4),
    ipv6: ipamEntry(input.IPv6Data, 6),
  });
}
