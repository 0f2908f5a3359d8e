// Validation of every name that can end up in a kernel script. Anything that reaches an
// `ip -batch` line or an iptables-restore payload passes through one of these first, so a
// newline, a space or a quote in a request can never become a second command or a new argument.
import { randomBytes } from 'node:crypto';
import { InvalidRequestError, InvalidOptionError } from '../errors.js';

declare const brand: unique symbol;
export type Brand<T, B extends string> = T & { readonly [brand]: B };

export type NetworkId = Brand<string, 'NetworkId'>;
export type EndpointId = Brand<string, 'EndpointId'>;
export type IfName = Brand<string, 'IfName'>;

// dockerd sends 64 lowercase hex characters; other clients (the load harness, tests) may use
// shorter ids. Only characters that are safe in an interface name, a SQLite key and an
// iptables comment are allowed.
const ID_RE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/;

export function parseNetworkId(value: unknown, field = 'NetworkID'): NetworkId {
  if (typeof value !== 'string' || value.length === 0) {
    throw new InvalidRequestError(`${field} is required`);
  }
  if (!ID_RE.test(value)) throw new InvalidRequestError(`invalid ${field}: ${JSON.stringify(value.slice(0, 80))}`);
  return value as NetworkId;
}

export function parseEndpointId(value: unknown, field = 'EndpointID'): EndpointId {
  if (typeof value !== 'string' || value.length === 0) {
    throw new InvalidRequestError(`${field} is required`);
  }
  if (!ID_RE.test(value)) throw new InvalidRequestError(`invalid ${field}: ${JSON.stringify(value.slice(0, 80))}`);
  return value as EndpointId;
}

// Linux: IFNAMSIZ is 16 including the NUL, '/' and whitespace are forbidden, '.' and '..' are
// reserved. We are stricter, like Docker's option validation: [A-Za-z0-9_.-] only.
const IFNAME_RE = /^[A-Za-z0-9_.-]{1,15}$/;

export function isValidIfName(name: string): boolean {
  return IFNAME_RE.test(name) && name !== '.' && name !== '..' && Buffer.byteLength(name) <= 15;
}

export function parseIfName(value: string, what: string): IfName {
  if (!isValidIfName(value)) {
    throw new InvalidOptionError(
      `invalid ${what} ${JSON.stringify(value.slice(0, 40))}: must be 1 to 15 characters of [A-Za-z0-9_.-]`,
    );
  }
  return value as IfName;
}

/** Default bridge name for a network, deterministic from its id (pipeline.md). */
export function defaultBridgeName(id: NetworkId): IfName {
  return `bb-${id.slice(0, 12)}` as IfName;
}

/** A veth name like Docker's: "veth" plus 7 lowercase hex characters. */
export function randomVethName(): IfName {
  return `veth${randomBytes(4).toString('hex').slice(0, 7)}` as IfName;
}

/** The host-side veth names this plugin creates (used to recognise our orphans). */
export const VETH_NAME_RE = /^veth[0-9a-f]{7}$/;
