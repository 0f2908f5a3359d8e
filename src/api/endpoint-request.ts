// CreateEndpoint's wire fields (Interface, the endpoint MAC option) → the domain's address
// request, and the reply dockerd expects back.
import { InvalidAddressError, InvalidRequestError } from '../errors.js';
import { parseMac, resolveAddresses, type EndpointAddresses } from '../domain/endpoint-spec.js';
import type { NetworkSpec } from '../domain/network-spec.js';

export interface CreateEndpointInterface {
  readonly Address?: unknown;
  readonly AddressIPv6?: unknown;
  readonly MacAddress?: unknown;
}

/** Fields the reply must carry back (never the IPv4 address: dockerd rejects that). */
export interface EndpointReply {
  MacAddress?: string;
  AddressIPv6?: string;
}

export interface DockerEndpointAddresses extends EndpointAddresses {
  readonly reply: EndpointReply;
}

/** The endpoint MAC option is a Go net.HardwareAddr marshalled as base64 (a 6-byte address). */
function macFromBase64Option(b64: string): string {
  if (!/^[A-Za-z0-9+/]{8}$/.test(b64)) throw new InvalidAddressError('invalid com.docker.network.endpoint.macaddress option');
  const bytes = Buffer.from(b64, 'base64');
  if (bytes.length !== 6) throw new InvalidAddressError('invalid com.docker.network.endpoint.macaddress option');
  return parseMac([...bytes].map((b) => b.toString(16).padStart(2, '0')).join(':'));
}

/** A string field that may be absent or empty (null); anything else that is not a string is refused. */
function optionalString(v: unknown, name: string): string | null {
  if (v === undefined || v === null || v === '') return null;
  if (typeof v !== 'string') throw new InvalidRequestError(`${name} must be a string`);
  return v;
}

export function resolveEndpointAddresses(net: NetworkSpec, iface: CreateEndpointInterface | null | undefined, macOption: unknown): DockerEndpointAddresses {
  if (iface === null || iface === undefined || typeof iface !== 'object') {
    throw new InvalidRequestError('Interface is required (with at least an IPv4 Address)');
  }
  if (typeof iface.Address !== 'string' || iface.Address === '') {
    throw new InvalidRequestError('Interface.Address is required: the bridge driver needs an IPv4 address');
  }
  const mac = optionalString(iface.MacAddress, 'Interface.MacAddress');
  const fallback = mac === null && typeof macOption === 'string' && macOption !== '' ? macFromBase64Option(macOption) : null;
  const a = resolveAddresses(net, {
    ipv4: iface.Address,
    ipv6: optionalString(iface.AddressIPv6, 'Interface.AddressIPv6'),
    mac,
    macFallback: fallback,
    names: { ipv4: 'Interface.Address', ipv6: 'Interface.AddressIPv6' },
  });
  const reply: EndpointReply = {};
  if (a.macChosen) reply.MacAddress = a.mac;
  if (a.ipv6Chosen && a.ipv6 !== null) reply.AddressIPv6 = `${a.ipv6.ip}/${a.ipv6.prefix}`;
  return { ...a, reply };
}
