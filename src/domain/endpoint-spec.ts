// CreateEndpoint request → what the endpoint gets: the built-in driver's MAC and IPv6 derivation
// (libnetwork drivers/bridge CreateEndpoint).
import { InvalidAddressError, InvalidRequestError, NotSupportedError } from '../errors.js';
import { bytesToIp, cidrContains, ipBytes, parseCidr, type Cidr } from './addr.js';
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

export interface EndpointAddresses {
  readonly ipv4: Cidr;
  readonly ipv6: Cidr | null;
  readonly mac: string;
  /** fields the response must carry back (never the IPv4 address: dockerd rejects that) */
  readonly reply: { MacAddress?: string; AddressIPv6?: string };
}

export interface CreateEndpointInterface {
  readonly Address?: unknown;
  readonly AddressIPv6?: unknown;
  readonly MacAddress?: unknown;
}

export function resolveEndpointAddresses(
  net: NetworkSpec,
  iface: CreateEndpointInterface | null | undefined,
  macOption: unknown,
): EndpointAddresses {
  if (iface === null || iface === undefined || typeof iface !== 'object') {
    throw new InvalidRequestError('Interface is required (with at least an IPv4 Address)');
  }
  if (typeof iface.Address !== 'string' || iface.Address === '') {
    throw new InvalidRequestError('Interface.Address is required: the bridge driver needs an IPv4 address');
  }
  const ipv4 = parseCidr(iface.Address, 'Interface.Address', 4);
  const subnet = parseCidr(net.ipv4.network, 'subnet', 4);
  if (!cidrContains(subnet, ipv4.ip)) {
    throw new InvalidAddressError(`invalid Interface.Address ${ipv4.ip}: not in subnet ${subnet.network}`);
  }
  if (ipv4.ip === net.ipv4.ip && !net.inhibitIpv4) {
    throw new InvalidAddressError(`invalid Interface.Address ${ipv4.ip}: it is the network's gateway`);
  }
  const reply: { MacAddress?: string; AddressIPv6?: string } = {};
  let mac: string;
  if (typeof iface.MacAddress === 'string' && iface.MacAddress !== '') {
    mac = parseMac(iface.MacAddress);
  } else if (iface.MacAddress !== undefined && iface.MacAddress !== null && iface.MacAddress !== '') {
    throw new InvalidRequestError('Interface.MacAddress must be a string');
  } else {
    mac = typeof macOption === 'string' && macOption !== '' ? macFromBase64Option(macOption) : macFromIpv4(ipv4.ip);
    reply.MacAddress = mac;
  }
  let ipv6: Cidr | null = null;
  if (typeof iface.AddressIPv6 === 'string' && iface.AddressIPv6 !== '') {
    if (!net.enableIpv6) throw new InvalidAddressError('an IPv6 address was given but the network has IPv6 disabled');
    ipv6 = parseCidr(iface.AddressIPv6, 'Interface.AddressIPv6', 6);
    if (net.ipv6 !== null && !cidrContains(parseCidr(net.ipv6.network, 'subnet', 6), ipv6.ip)) {
      throw new InvalidAddressError(`invalid Interface.AddressIPv6 ${ipv6.ip}: not in subnet ${net.ipv6.network}`);
    }
  } else if (iface.AddressIPv6 !== undefined && iface.AddressIPv6 !== null && iface.AddressIPv6 !== '') {
    throw new InvalidRequestError('Interface.AddressIPv6 must be a string');
  } else if (net.enableIpv6) {
    const base = net.ipv6 ?? parseCidr('fe80::1/64', 'link-local', 6);
    ipv6 = ipv6FromMac(base, mac, net.id);
    reply.AddressIPv6 = `${ipv6.ip}/${ipv6.prefix}`;
  }
  return { ipv4, ipv6, mac, reply };
}

/** The endpoint MAC option is a Go net.HardwareAddr marshalled as base64 (spec 1.4). */
function macFromBase64Option(b64: string): string {
  if (!/^[A-Za-z0-9+/]{8}$/.test(b64)) throw new InvalidAddressError('invalid com.docker.network.endpoint.macaddress option');
  const bytes = Buffer.from(b64, 'base64');
  if (bytes.length !== 6) throw new InvalidAddressError('invalid com.docker.network.endpoint.macaddress option');
  return parseMac([...bytes].map((b) => b.toString(16).padStart(2, '0')).join(':'));
}
