// What the runtime asks for one attachment: capability arguments in `runtimeConfig`
// (portMappings, ips, mac), the `args.cni` conventions (ips, mac), and CNI_ARGS IP=/MAC=.
// Precedence as in the reference plugins: runtimeConfig over args over CNI_ARGS.
//
// portMappings keys: Podman sends hostPort/containerPort/protocol/hostIP, containerd
// HostPort/ContainerPort/Protocol/HostIP; libcni plugins decode them with Go's case-insensitive
// JSON, so any case is accepted here too.
import { CniConfigError, CniUnsupportedFieldError, InvalidAddressError, InvalidPortError } from '../errors.js';
import { cidrContains, firstHost, ipBytes, parseIp, type Cidr } from '../domain/addr.js';
import { parseMac } from '../domain/endpoint-spec.js';
import { parseIpList, type CniArgs, type RequestedIp } from './cni-args.js';
import { asObject, shown, type ConfigObject } from './config-values.js';
import type { CniNetwork } from './net-config.js';

export type CniProto = 'tcp' | 'udp' | 'sctp';

export interface CniPortMapping {
  readonly proto: CniProto;
  readonly hostPort: number;
  readonly containerPort: number;
  /** "" for every host address */
  readonly hostIp: string;
}

export interface AttachmentOptions {
  readonly ports: readonly CniPortMapping[];
  /** requested addresses (canonical, no prefix); null: the IPAM chooses */
  readonly ipv4: string | null;
  readonly ipv6: string | null;
  /** requested MAC (lowercase), or null */
  readonly mac: string | null;
}

const RUNTIME_KEYS = ['portMappings', 'ips', 'mac'];
const PORT_KEYS: Readonly<Record<string, 'hostPort' | 'containerPort' | 'protocol' | 'hostIP'>> = {
  hostport: 'hostPort',
  containerport: 'containerPort',
  protocol: 'protocol',
  hostip: 'hostIP',
};
export const MAX_PORT_MAPPINGS = 4096;

function port(v: unknown, where: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 65535) {
    throw new InvalidPortError(`${where}: invalid port ${shown(v)} (1-65535)`);
  }
  return v;
}

function parsePortMapping(v: unknown, where: string): CniPortMapping {
  const o = asObject(v, where);
  const m: Record<string, unknown> = {};
  for (const [k, val] of Object.entries(o)) {
    const key = PORT_KEYS[k.toLowerCase()];
    if (key === undefined) throw new CniUnsupportedFieldError(`unsupported field ${where}.${k}: ${shown(val)} (port mappings take hostPort, containerPort, protocol, hostIP)`);
    m[key] = val;
  }
  const protoText = m.protocol === undefined || m.protocol === null || m.protocol === '' ? 'tcp' : m.protocol;
  const proto = typeof protoText === 'string' ? protoText.toLowerCase() : '';
  if (proto !== 'tcp' && proto !== 'udp' && proto !== 'sctp') throw new InvalidPortError(`${where}: unknown protocol ${shown(protoText)} (tcp, udp, sctp)`);
  let hostIp = '';
  if (m.hostIP !== undefined && m.hostIP !== null && m.hostIP !== '') {
    if (typeof m.hostIP !== 'string') throw new InvalidPortError(`${where}.hostIP must be a string, got ${shown(m.hostIP)}`);
    hostIp = parseIp(m.hostIP, `${where}.hostIP`).ip;
  }
  return { proto, hostPort: port(m.hostPort, `${where}.hostPort`), containerPort: port(m.containerPort, `${where}.containerPort`), hostIp };
}

export function parsePortMappings(v: unknown): CniPortMapping[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || v.length > MAX_PORT_MAPPINGS) throw new CniConfigError(`runtimeConfig.portMappings must be a list of at most ${MAX_PORT_MAPPINGS} mappings, got ${shown(v)}`);
  const seen = new Set<string>();
  return v.map((item: unknown, i) => {
    const m = parsePortMapping(item, `runtimeConfig.portMappings[${i}]`);
    const key = `${m.proto} ${m.hostIp}:${m.hostPort}`;
    if (seen.has(key)) throw new InvalidPortError(`runtimeConfig.portMappings[${i}]: host port ${m.proto} ${m.hostIp || '*'}:${m.hostPort} is mapped twice`);
    seen.add(key);
    return m;
  });
}

function ipStrings(v: unknown, where: string): RequestedIp[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || v.some((s) => typeof s !== 'string')) throw new CniConfigError(`${where} must be a list of addresses, got ${shown(v)}`);
  if (v.length === 0) return [];
  return parseIpList((v as string[]).join(','), where);
}

function mac(v: unknown, where: string): string | null {
  if (v === undefined || v === null || v === '') return null;
  if (typeof v !== 'string') throw new CniConfigError(`${where} must be a string, got ${shown(v)}`);
  try {
    return parseMac(v);
  } catch (err) {
    throw new InvalidAddressError(`${where}: ${(err as Error).message}`);
  }
}

/** Requested addresses must be usable in the network when the daemon allocates. */
function checkRequested(ip: RequestedIp, net: CniNetwork, where: string): void {
  const range = net.ipam.ranges.find((r) => r.family === ip.family);
  if (range === undefined) throw new InvalidAddressError(`invalid ${where} ${ip.ip}: the network has no IPv${ip.family} subnet`);
  const subnet: Cidr = range.subnet;
  if (!cidrContains(subnet, ip.ip)) throw new InvalidAddressError(`invalid ${where} ${ip.ip}: not in subnet ${subnet.network}`);
  const network = subnet.network.slice(0, subnet.network.indexOf('/'));
  if (ip.ip === network && (ip.family === 6 || subnet.prefix < 31)) throw new InvalidAddressError(`invalid ${where} ${ip.ip}: it is the subnet's network address`);
  const gateway = ip.family === 4 ? net.spec.ipv4.ip : net.spec.ipv6?.ip;
  if (net.isGateway && ip.ip === (gateway ?? firstHost(subnet))) throw new InvalidAddressError(`invalid ${where} ${ip.ip}: it is the network's gateway`);
  if (ip.family === 4 && subnet.prefix < 31 && isBroadcast(subnet, ip.ip)) {
    throw new InvalidAddressError(`invalid ${where} ${ip.ip}: it is the subnet's broadcast address`);
  }
}

function isBroadcast(subnet: Cidr, ip: string): boolean {
  const b = ipBytes(ip);
  let host = 0;
  for (let bit = subnet.prefix; bit < 32; bit++) host += (b[bit >> 3] ?? 0) & (0x80 >> (bit & 7)) ? 1 : 0;
  return host === 32 - subnet.prefix;
}

/** runtimeConfig, args.cni and CNI_ARGS together. */
export function parseAttachmentOptions(conf: ConfigObject, cniArgs: CniArgs, net: CniNetwork): AttachmentOptions {
  const rc = conf.runtimeConfig === undefined || conf.runtimeConfig === null ? {} : asObject(conf.runtimeConfig, 'runtimeConfig');
  for (const k of Object.keys(rc)) {
    if (!RUNTIME_KEYS.includes(k)) throw new CniUnsupportedFieldError(`unsupported field runtimeConfig.${k}: ${shown(rc[k])} (batchbridge-cni implements ${RUNTIME_KEYS.join(', ')})`);
  }
  // args: optional metadata by convention; only args.cni.ips and args.cni.mac mean something here.
  const args = conf.args !== null && typeof conf.args === 'object' && !Array.isArray(conf.args) ? (conf.args as ConfigObject) : {};
  const argsCni = args.cni !== null && typeof args.cni === 'object' && !Array.isArray(args.cni) ? (args.cni as ConfigObject) : {};

  const fromRuntime = ipStrings(rc.ips, 'runtimeConfig.ips');
  const fromArgs = ipStrings(argsCni.ips, 'args.cni.ips');
  const [ips, where] =
    fromRuntime.length > 0 ? [fromRuntime, 'runtimeConfig.ips'] : fromArgs.length > 0 ? [fromArgs, 'args.cni.ips'] : [cniArgs.ips, 'CNI_ARGS IP'];
  if (net.ipam.kind === 'daemon') for (const ip of ips) checkRequested(ip, net, where);
  const requestedMac = mac(rc.mac, 'runtimeConfig.mac') ?? mac(argsCni.mac, 'args.cni.mac') ?? cniArgs.mac;
  return {
    ports: parsePortMappings(rc.portMappings),
    ipv4: ips.find((i) => i.family === 4)?.ip ?? null,
    ipv6: ips.find((i) => i.family === 6)?.ip ?? null,
    mac: requestedMac,
  };
}
