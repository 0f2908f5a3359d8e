// The CNI result: one model, encoded in the shape of the version the request asked for, and
// decoded from a prevResult or a delegated IPAM plugin's answer in any supported version.
//
// Field sets (SPEC.md of each version; libcni types 040 and 100):
//   0.3.0, 0.3.1, 0.4.0  interfaces {name, mac, sandbox}; ips {version "4"|"6", interface,
//                        address, gateway}; routes {dst, gw}; dns
//   1.0.0                as 0.4.0 without ips[].version
//   1.1.0                interfaces add mtu, socketPath, pciID; routes add mtu, advmss,
//                        priority, table, scope
// Empty lists and an empty dns are left out, as libcni does (omitempty).
import { BbError, CniDecodeError } from '../errors.js';
import { parseCidr, parseIp } from '../domain/addr.js';
import { versionAtLeast, type CniVersion } from './version.js';

export interface CniInterface {
  readonly name: string;
  readonly mac?: string;
  readonly mtu?: number;
  readonly sandbox?: string;
  readonly socketPath?: string;
  readonly pciID?: string;
}

export interface CniIpConfig {
  /** CIDR: the address with its subnet's prefix */
  readonly address: string;
  readonly gateway?: string;
  /** index into interfaces */
  readonly interface?: number;
}

export interface CniRoute {
  readonly dst: string;
  readonly gw?: string;
  readonly mtu?: number;
  readonly advmss?: number;
  readonly priority?: number;
  readonly table?: number;
  readonly scope?: number;
}

export interface CniDns {
  readonly nameservers?: readonly string[];
  readonly domain?: string;
  readonly search?: readonly string[];
  readonly options?: readonly string[];
}

export interface CniResult {
  readonly interfaces: readonly CniInterface[];
  readonly ips: readonly CniIpConfig[];
  readonly routes: readonly CniRoute[];
  readonly dns: CniDns;
}

const ROUTE_EXTRA = ['mtu', 'advmss', 'priority', 'table', 'scope'] as const;
const IFACE_EXTRA = ['mtu', 'socketPath', 'pciID'] as const;

function dnsEmpty(d: CniDns): boolean {
  return (d.nameservers ?? []).length === 0 && (d.domain ?? '') === '' && (d.search ?? []).length === 0 && (d.options ?? []).length === 0;
}

function encodeDns(d: CniDns): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  if ((d.nameservers ?? []).length > 0) o.nameservers = d.nameservers;
  if ((d.domain ?? '') !== '') o.domain = d.domain;
  if ((d.search ?? []).length > 0) o.search = d.search;
  if ((d.options ?? []).length > 0) o.options = d.options;
  return o;
}

/** The result as the JSON object of `version`. */
export function resultObject(r: CniResult, version: CniVersion): Record<string, unknown> {
  const v11 = versionAtLeast(version, '1.1.0');
  const v0 = !versionAtLeast(version, '1.0.0');
  const out: Record<string, unknown> = { cniVersion: version };
  if (r.interfaces.length > 0) {
    out.interfaces = r.interfaces.map((i) => {
      const o: Record<string, unknown> = { name: i.name };
      if (i.mac !== undefined && i.mac !== '') o.mac = i.mac;
      if (v11 && i.mtu !== undefined && i.mtu !== 0) o.mtu = i.mtu;
      if (i.sandbox !== undefined && i.sandbox !== '') o.sandbox = i.sandbox;
      if (v11 && i.socketPath !== undefined && i.socketPath !== '') o.socketPath = i.socketPath;
      if (v11 && i.pciID !== undefined && i.pciID !== '') o.pciID = i.pciID;
      return o;
    });
  }
  if (r.ips.length > 0) {
    out.ips = r.ips.map((ip) => {
      const o: Record<string, unknown> = {};
      if (v0) o.version = ip.address.includes(':') ? '6' : '4';
      if (ip.interface !== undefined) o.interface = ip.interface;
      o.address = ip.address;
      if (ip.gateway !== undefined && ip.gateway !== '') o.gateway = ip.gateway;
      return o;
    });
  }
  if (r.routes.length > 0) {
    out.routes = r.routes.map((rt) => {
      const o: Record<string, unknown> = { dst: rt.dst };
      if (rt.gw !== undefined && rt.gw !== '') o.gw = rt.gw;
      if (v11) {
        for (const k of ROUTE_EXTRA) {
          const val = rt[k];
          // table and scope are pointers in libcni (0 is meaningful); the others omit 0
          if (val !== undefined && (val !== 0 || k === 'table' || k === 'scope')) o[k] = val;
        }
      }
      return o;
    });
  }
  if (!dnsEmpty(r.dns)) out.dns = encodeDns(r.dns);
  return out;
}

export function encodeResult(r: CniResult, version: CniVersion): string {
  return `${JSON.stringify(resultObject(r, version))}\n`;
}

// ---- decoding ----------------------------------------------------------------------------

function obj(v: unknown, where: string): Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new CniDecodeError(`${where} must be an object`);
  return v as Record<string, unknown>;
}

function list(v: unknown, where: string, max: number): unknown[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new CniDecodeError(`${where} must be a list`);
  if (v.length > max) throw new CniDecodeError(`${where} has more than ${max} entries`);
  return v;
}

function str(v: unknown, where: string, max = 4096): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string' || v.length > max) throw new CniDecodeError(`${where} must be a string of at most ${max} characters`);
  return v;
}

function uint(v: unknown, where: string): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new CniDecodeError(`${where} must be a whole number`);
  return v;
}

function addr<T>(where: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof BbError && !(err instanceof CniDecodeError)) throw new CniDecodeError(`${where}: ${err.message}`);
    throw err;
  }
}

function decodeIface(v: unknown, where: string): CniInterface {
  const o = obj(v, where);
  const name = str(o.name, `${where}.name`, 64);
  if (name === undefined || name === '') throw new CniDecodeError(`${where}.name is required`);
  const i: { -readonly [K in keyof CniInterface]: CniInterface[K] } = { name };
  const mac = str(o.mac, `${where}.mac`, 64);
  if (mac !== undefined) i.mac = mac;
  const sandbox = str(o.sandbox, `${where}.sandbox`);
  if (sandbox !== undefined) i.sandbox = sandbox;
  const mtu = uint(o.mtu, `${where}.mtu`);
  if (mtu !== undefined) i.mtu = mtu;
  for (const k of ['socketPath', 'pciID'] as const) {
    const s = str(o[k], `${where}.${k}`);
    if (s !== undefined) i[k] = s;
  }
  return i;
}

function decodeDns(v: unknown, where: string): CniDns {
  if (v === undefined || v === null) return {};
  const o = obj(v, where);
  const strings = (k: string): string[] => list(o[k], `${where}.${k}`, 64).map((s, n) => str(s, `${where}.${k}[${n}]`, 256) ?? '');
  const d: { -readonly [K in keyof CniDns]: CniDns[K] } = {};
  const ns = strings('nameservers');
  if (ns.length > 0) d.nameservers = ns.map((s, n) => addr(`${where}.nameservers[${n}]`, () => parseIp(s, 'nameserver').ip));
  const domain = str(o.domain, `${where}.domain`, 253);
  if (domain !== undefined && domain !== '') d.domain = domain;
  const search = strings('search');
  if (search.length > 0) d.search = search;
  const options = strings('options');
  if (options.length > 0) d.options = options;
  return d;
}

/**
 * A result from the runtime (prevResult) or from a delegated IPAM plugin, in the shape of
 * any supported version (ips[].version is accepted and ignored). Addresses are re-rendered
 * from their parsed form. Unknown keys are ignored: a later plugin of a chain may add some.
 */
export function decodeResult(raw: unknown, what: string): CniResult {
  const o = obj(raw, what);
  const interfaces = list(o.interfaces, `${what}.interfaces`, 64).map((v, n) => decodeIface(v, `${what}.interfaces[${n}]`));
  const ips = list(o.ips, `${what}.ips`, 64).map((v, n): CniIpConfig => {
    const where = `${what}.ips[${n}]`;
    const ip = obj(v, where);
    const address = str(ip.address, `${where}.address`, 64);
    if (address === undefined) throw new CniDecodeError(`${where}.address is required`);
    const c = addr(where, () => parseCidr(address, 'address'));
    const out: { -readonly [K in keyof CniIpConfig]: CniIpConfig[K] } = { address: `${c.ip}/${c.prefix}` };
    const gw = str(ip.gateway, `${where}.gateway`, 64);
    if (gw !== undefined && gw !== '') out.gateway = addr(where, () => parseIp(gw, 'gateway', c.family).ip);
    const idx = uint(ip.interface, `${where}.interface`);
    if (idx !== undefined) {
      if (idx >= interfaces.length) throw new CniDecodeError(`${where}.interface ${idx} is not an index into interfaces`);
      out.interface = idx;
    }
    return out;
  });
  const routes = list(o.routes, `${what}.routes`, 1024).map((v, n): CniRoute => {
    const where = `${what}.routes[${n}]`;
    const rt = obj(v, where);
    const dstText = str(rt.dst, `${where}.dst`, 64);
    if (dstText === undefined) throw new CniDecodeError(`${where}.dst is required`);
    const dst = addr(where, () => parseCidr(dstText, 'route destination'));
    const out: { -readonly [K in keyof CniRoute]: CniRoute[K] } = { dst: dst.network };
    const gw = str(rt.gw, `${where}.gw`, 64);
    if (gw !== undefined && gw !== '') out.gw = addr(where, () => parseIp(gw, 'route gateway', dst.family).ip);
    for (const k of ROUTE_EXTRA) {
      const val = uint(rt[k], `${where}.${k}`);
      if (val !== undefined) out[k] = val;
    }
    return out;
  });
  return { interfaces, ips, routes, dns: decodeDns(o.dns, `${what}.dns`) };
}

// ---- the ADD result ----------------------------------------------------------------------

export interface AddResultInput {
  readonly bridge: { readonly name: string; readonly mac: string };
  readonly hostVeth: { readonly name: string; readonly mac: string };
  readonly container: { readonly name: string; readonly mac: string; readonly sandbox: string; readonly mtu?: number };
  /** container addresses with their subnet's prefix and gateway (none without isGateway) */
  readonly ips: readonly { readonly address: string; readonly gateway?: string }[];
  readonly routes: readonly CniRoute[];
  readonly dns: CniDns;
}

/**
 * What the reference bridge plugin reports, in the same order: the bridge, the host veth, the
 * container interface (with `sandbox` = CNI_NETNS); every ip belongs to interface 2.
 */
export function buildAddResult(a: AddResultInput): CniResult {
  const container: CniInterface = { name: a.container.name, mac: a.container.mac, sandbox: a.container.sandbox, ...(a.container.mtu !== undefined ? { mtu: a.container.mtu } : {}) };
  return {
    interfaces: [{ name: a.bridge.name, mac: a.bridge.mac }, { name: a.hostVeth.name, mac: a.hostVeth.mac }, container],
    ips: a.ips.map((ip) => ({ address: ip.address, ...(ip.gateway !== undefined ? { gateway: ip.gateway } : {}), interface: 2 })),
    routes: a.routes,
    dns: a.dns,
  };
}

export { IFACE_EXTRA, ROUTE_EXTRA };
