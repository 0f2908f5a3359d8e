// From the command line, a config file and the environment to one checked value per setting
// (src/cli/settings.ts): command line first, then the file, then the environment, then the
// default. Every value is checked against its row's type and range, and a bad one is refused
// naming where it came from.
import { parseArgs } from 'node:util';
import { readConfigFile, type FileValue } from './config-file.js';
import { SERVE_SETTINGS, showValue, type Setting, type SettingValue } from './settings.js';
import { UsageError } from './usage.js';

export type Source = 'command line' | 'config file' | 'environment' | 'default';

export interface ResolvedSettings {
  get(name: string): SettingValue;
  int(name: string): number;
  str(name: string): string;
  bool(name: string): boolean;
  source(name: string): Source;
  /** every setting with its value as shown and where it came from (for `status` and logs) */
  effective(): Record<string, { value: string; source: Source }>;
}

type Origin = 'cli' | 'file' | 'env';

const HOST_RE = /^(?:\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}))$/;

/** HOST:PORT → [host without brackets, port], or null. */
export function parseHostPort(v: string): { host: string; port: number } | null {
  const colon = v.lastIndexOf(':');
  if (colon <= 0) return null;
  const host = v.slice(0, colon);
  const portText = v.slice(colon + 1);
  if (!HOST_RE.test(host) || !/^\d{1,5}$/.test(portText)) return null;
  const port = Number(portText);
  if (port < 1 || port > 65_535) return null;
  return { host: host.startsWith('[') ? host.slice(1, -1) : host, port };
}

function parseSwitch(raw: string, origin: Origin): boolean | null {
  if (raw === 'on' || (origin === 'env' && raw === '1')) return true;
  if (raw === 'off' || (origin === 'env' && raw === '0')) return false;
  return null;
}

/** One raw value → its checked value, or UsageError naming `where`. */
export function parseValue(s: Setting, raw: string | boolean, origin: Origin, where: string): SettingValue {
  if (s.type === 'flag') {
    if (typeof raw === 'boolean') return raw;
    if (raw === 'true' || raw === 'false') return raw === 'true';
    throw new UsageError(`${where} must be true or false, got ${JSON.stringify(raw)}`);
  }
  if (typeof raw === 'boolean') throw new UsageError(`${where} needs a value`);
  switch (s.type) {
    case 'int': {
      if (!/^\d+$/.test(raw)) throw new UsageError(`${where} must be a whole number, got ${JSON.stringify(raw)}`);
      const n = Number(raw);
      if (n < (s.min ?? 0) || n > (s.max ?? Number.MAX_SAFE_INTEGER)) throw new UsageError(`${where} must be between ${s.min ?? 0} and ${s.max ?? '∞'}, got ${n}`);
      return n;
    }
    case 'switch': {
      const b = parseSwitch(raw, origin);
      if (b === null) throw new UsageError(`${where} must be ${origin === 'env' ? '0 or 1' : 'on or off'}, got ${JSON.stringify(raw)}`);
      return b;
    }
    case 'choice':
      if (!(s.choices ?? []).includes(raw)) throw new UsageError(`${where} must be one of ${(s.choices ?? []).join(', ')}, got ${JSON.stringify(raw)}`);
      return raw;
    case 'hostport':
      if (parseHostPort(raw) === null) throw new UsageError(`${where} must be HOST:PORT (an address or name, [IPv6] in brackets, and a port from 1 to 65535), got ${JSON.stringify(raw)}`);
      return raw;
    case 'string':
      if (raw === '') throw new UsageError(`${where} must not be empty`);
      return raw;
  }
}

/** parseArgs options for `serve`, from the table. */
function argOptions(): Record<string, { type: 'string' | 'boolean'; short?: string }> {
  const o: Record<string, { type: 'string' | 'boolean'; short?: string }> = {};
  for (const s of SERVE_SETTINGS) o[s.name] = { type: s.type === 'flag' ? 'boolean' : 'string' };
  o.help = { type: 'boolean', short: 'h' };
  return o;
}

export interface ServeArgs {
  readonly help: boolean;
  readonly settings: ResolvedSettings;
}

/** Parses `serve`'s arguments and resolves every setting (reading --config when given). */
export function resolveServeArgs(args: string[], env: NodeJS.ProcessEnv = process.env): ServeArgs {
  const { values } = parseArgs({ args, strict: true, allowPositionals: false, options: argOptions() });
  if (values.help === true) return { help: true, settings: resolveSettings({}, new Map(), {}) };
  const configPath = values.config;
  const file = typeof configPath === 'string' ? readConfigFile(configPath) : new Map<string, FileValue>();
  return { help: false, settings: resolveSettings(values, file, env) };
}

export function resolveSettings(cli: Record<string, string | boolean | undefined>, file: ReadonlyMap<string, FileValue>, env: NodeJS.ProcessEnv): ResolvedSettings {
  const values = new Map<string, SettingValue>();
  const sources = new Map<string, Source>();
  for (const s of SERVE_SETTINGS) {
    const c = cli[s.name];
    const f = file.get(s.name);
    const e = s.env === undefined ? undefined : env[s.env];
    let v: SettingValue = s.default;
    let source: Source = 'default';
    if (c !== undefined) [v, source] = [parseValue(s, c, 'cli', `--${s.name}`), 'command line'];
    else if (f !== undefined) [v, source] = [parseValue(s, f.raw, 'file', `${f.where}: ${s.name}`), 'config file'];
    else if (e !== undefined && e !== '') [v, source] = [parseValue(s, e, 'env', `environment variable ${s.env ?? ''}`), 'environment'];
    values.set(s.name, v);
    sources.set(s.name, source);
  }
  const get = (name: string): SettingValue => {
    if (!values.has(name)) throw new Error(`no setting ${name}`);
    return values.get(name) ?? null;
  };
  return {
    get,
    int: (name) => Number(get(name)),
    str: (name) => String(get(name)),
    bool: (name) => get(name) === true,
    source: (name) => sources.get(name) ?? 'default',
    effective: () => {
      const out: Record<string, { value: string; source: Source }> = {};
      for (const s of SERVE_SETTINGS) out[s.name] = { value: showValue(s, values.get(s.name) ?? null), source: sources.get(s.name) ?? 'default' };
      return out;
    },
  };
}
