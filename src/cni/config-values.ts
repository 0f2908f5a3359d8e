// Small readers for values of a CNI config that several parts share.
import { CniConfigError, CniUnsupportedFieldError } from '../errors.js';
import { parseIp } from '../domain/addr.js';
import type { CniDns } from './result.js';

export type ConfigObject = Readonly<Record<string, unknown>>;

/** A value quoted for an error message, cut to 80 characters. */
export function shown(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

export function asObject(v: unknown, where: string): ConfigObject {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new CniConfigError(`${where} must be an object, got ${shown(v)}`);
  return v as ConfigObject;
}

function strings(v: unknown, where: string, maxLen: number): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || v.length > 64) throw new CniConfigError(`${where} must be a list of at most 64 strings, got ${shown(v)}`);
  return v.map((s: unknown, i) => {
    if (typeof s !== 'string' || s.length === 0 || s.length > maxLen || /[\s\0]/.test(s)) {
      throw new CniConfigError(`${where}[${i}] must be a non-empty string of at most ${maxLen} characters without spaces, got ${shown(s)}`);
    }
    return s;
  });
}

/** The well-known `dns` dictionary: nameservers (addresses), domain, search, options. */
export function parseDns(v: unknown, where: string): CniDns {
  if (v === undefined || v === null) return {};
  const o = asObject(v, where);
  for (const k of Object.keys(o)) {
    if (!['nameservers', 'domain', 'search', 'options'].includes(k)) {
      throw new CniUnsupportedFieldError(`unsupported field ${where}.${k}: ${shown(o[k])} (dns takes nameservers, domain, search, options)`);
    }
  }
  const d: { -readonly [K in keyof CniDns]: CniDns[K] } = {};
  const ns = strings(o.nameservers, `${where}.nameservers`, 64).map((s, i) => parseIp(s, `${where}.nameservers[${i}]`).ip);
  if (ns.length > 0) d.nameservers = ns;
  if (o.domain !== undefined && o.domain !== null && o.domain !== '') {
    const [domain] = strings([o.domain], `${where}.domain`, 253);
    if (domain !== undefined) d.domain = domain;
  }
  const search = strings(o.search, `${where}.search`, 253);
  if (search.length > 0) d.search = search;
  const options = strings(o.options, `${where}.options`, 128);
  if (options.length > 0) d.options = options;
  return d;
}
