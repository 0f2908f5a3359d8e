// Published ports in domain terms: what a front end asks for (a requested binding, an exposed
// port) and what is installed (a mapping, one DNAT rule). Each front end turns its own wire
// shape (Docker's PortBinding, CNI's portMappings) into raw fields; the parsing and every check
// are here, once.
import { InvalidPortError, InvalidRequestError } from '../errors.js';
import { parseIp } from './addr.js';

export type Proto = 'tcp' | 'udp' | 'sctp';

/** A binding as requested, normalised. */
export interface RequestedBinding {
  readonly proto: Proto;
  readonly containerPort: number;
  readonly hostIp: string; // "" when unset
  readonly hostPort: number; // 0: ephemeral
  readonly hostPortEnd: number; // == hostPort for single ports
}

/** A binding actually installed: one DNAT rule. */
export interface PortMapping {
  readonly proto: Proto;
  readonly family: 4 | 6;
  readonly hostIp: string; // "0.0.0.0" / "::" for all addresses
  readonly hostPort: number;
  readonly containerIp: string;
  readonly containerPort: number;
}

export interface ExposedPort {
  readonly proto: Proto;
  readonly port: number;
}

/**
 * What an endpoint asks to publish: the bindings it requests and the ports it exposes (Docker's
 * PortMap and ExposedPorts, CNI's portMappings). Requests carry it and the books keep it.
 */
export interface PublishRequest {
  readonly requested: readonly RequestedBinding[];
  readonly exposed: readonly ExposedPort[];
}

/** A binding's fields as a front end found them, not yet checked. */
export interface RawBinding {
  readonly proto: unknown;
  readonly containerPort: unknown;
  readonly hostIp?: unknown;
  readonly hostPort?: unknown;
  readonly hostPortEnd?: unknown;
}

/** Bindings or exposed ports a request may carry at most (one per port and protocol, twice over). */
export const MAX_BINDINGS = 65536;

const PROTO_NUMBERS: Record<number, Proto> = { 6: 'tcp', 17: 'udp', 132: 'sctp' };

/** A protocol by name or IANA number (Docker sends numbers, CNI names). */
export function parseProto(v: unknown, where: string): Proto {
  if (typeof v === 'number' && PROTO_NUMBERS[v] !== undefined) return PROTO_NUMBERS[v];
  if (v === 'tcp' || v === 'udp' || v === 'sctp') return v;
  throw new InvalidPortError(`${where}: unknown protocol ${JSON.stringify(v)} (tcp 6, udp 17, sctp 132)`);
}

export function protoNumber(p: Proto): number {
  return p === 'tcp' ? 6 : p === 'udp' ? 17 : 132;
}

function parsePort(v: unknown, where: string, allowZero: boolean): number {
  if (v === undefined || v === null) {
    if (allowZero) return 0;
    throw new InvalidPortError(`${where}: missing port`);
  }
  if (typeof v !== 'number' || !Number.isInteger(v) || v < (allowZero ? 0 : 1) || v > 65535) {
    throw new InvalidPortError(`${where}: invalid port ${JSON.stringify(v)}`);
  }
  return v;
}

export function parseBinding(b: RawBinding, where: string): RequestedBinding {
  const proto = parseProto(b.proto, where);
  const containerPort = parsePort(b.containerPort, where, false);
  const hostPort = parsePort(b.hostPort, where, true);
  let hostPortEnd = parsePort(b.hostPortEnd, where, true);
  if (hostPortEnd === 0) hostPortEnd = hostPort;
  if (hostPort === 0 && hostPortEnd !== 0) throw new InvalidPortError(`invalid port range: ${hostPort}-${hostPortEnd}`);
  if (hostPortEnd < hostPort) throw new InvalidPortError(`invalid port range: ${hostPort}-${hostPortEnd}`);
  let hostIp = '';
  if (b.hostIp !== undefined && b.hostIp !== null && b.hostIp !== '') {
    if (typeof b.hostIp !== 'string') throw new InvalidRequestError(`${where}.HostIP must be a string`);
    hostIp = parseIp(b.hostIp, `${where}.HostIP`).ip;
  }
  return { proto, containerPort, hostIp, hostPort, hostPortEnd };
}

export function parseExposed(proto: unknown, port: unknown, where: string): ExposedPort {
  return { proto: parseProto(proto, where), port: parsePort(port, where, false) };
}

/**
 * A mapping checked once more where it reaches a firewall rule (it may come from the books, which
 * are trusted only this far): a known protocol and family, ports in range, addresses re-rendered
 * from their parsed form. Throws a plain Error: a bad mapping here is a bug or tampering.
 */
export function checkedMapping(m: PortMapping): PortMapping {
  if (m.proto !== 'tcp' && m.proto !== 'udp' && m.proto !== 'sctp') throw new Error(`refusing protocol ${JSON.stringify(m.proto)} in a firewall rule`);
  if (m.family !== 4 && m.family !== 6) throw new Error('refusing a binding without an address family');
  const port = (n: number, what: string): number => {
    if (!Number.isInteger(n) || n < 1 || n > 65535) throw new Error(`refusing ${what} ${String(n)} in a firewall rule`);
    return n;
  };
  return {
    proto: m.proto,
    family: m.family,
    hostIp: parseIp(m.hostIp, 'host address', m.family).ip,
    hostPort: port(m.hostPort, 'host port'),
    containerIp: parseIp(m.containerIp, 'container address', m.family).ip,
    containerPort: port(m.containerPort, 'container port'),
  };
}
