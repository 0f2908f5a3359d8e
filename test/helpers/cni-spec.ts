// The pure half of the CNI exec harness: what libcni (containernetworking/cni, libcni/api.go and
// pkg/invoke, v1.1–v1.3) computes before and after it executes a plugin. Facts carried over:
// - Each plugin of a conflist gets its own entry with `name` and `cniVersion` of the list injected,
//   `prevResult` (ADD: the previous plugin's result as that plugin returned it; DEL/CHECK: the cached
//   result of the list, converted to the list's version), and `runtimeConfig` holding only the
//   capability arguments whose key the plugin declares `true` under `capabilities`. `capabilities`
//   itself stays in the stdin. The object is re-marshalled by Go, so keys come out sorted.
// - Environment: the runtime's own environment plus CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS,
//   CNI_ARGS (`K=V;K=V`), CNI_IFNAME, CNI_PATH (the plugin dirs joined with ':'); later wins.
// - VERSION is probed with CNI_NETNS=dummy, CNI_IFNAME=dummy, CNI_PATH=dummy and stdin
//   `{"cniVersion":"<libcni's current version>"}`; GC and STATUS carry empty CNI_CONTAINERID,
//   CNI_NETNS, CNI_IFNAME, CNI_ARGS.
// - A failing plugin: non-zero exit; stdout parsed as {code,msg,details}; with an empty stdout the
//   message is built from stderr; Go prints an error as `msg; details`.
// - The cache (`<cacheDir>/results/<network>-<containerID>-<ifname>`) holds kind "cniCacheV1",
//   the list's bytes (base64, as Go marshals []byte), CNI_ARGS, capability args and the result.

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
export type JsonObject = { [k: string]: Json };

/** Well-known CNI error codes (SPEC.md "Error"). */
export const CNI_ERR = {
  incompatibleVersion: 1,
  unsupportedField: 2,
  unknownContainer: 3,
  invalidEnv: 4,
  ioFailure: 5,
  decodingFailure: 6,
  invalidNetworkConfig: 7,
  invalidNetns: 8,
  tryAgainLater: 11,
  pluginNotAvailable: 50,
  limitedConnectivity: 51,
  internal: 999,
} as const;

/** The spec version libcni v1.3 implements (what it sends in the VERSION probe). */
export const LIBCNI_CURRENT_VERSION = '1.1.0';

export interface CniErrorBody {
  code: number;
  msg: string;
  details?: string;
}

/** A plugin (or libcni itself) refused: the spec's error object, plus how the plugin exited. */
export class CniError extends Error {
  readonly code: number;
  readonly msg: string;
  readonly details: string | undefined;
  /** The plugin's exit code (undefined for errors raised before any plugin ran). */
  readonly exitCode: number | undefined;
  readonly stderr: string;
  constructor(body: CniErrorBody, exitCode?: number, stderr = '', prefix = '') {
    super(`${prefix}${body.msg}${body.details ? `; ${body.details}` : ''}`);
    this.code = body.code;
    this.msg = body.msg;
    this.details = body.details;
    this.exitCode = exitCode;
    this.stderr = stderr;
  }
  /** The same error with libcni's chain prefix (`plugin type="bridge" failed (add): `). */
  withPrefix(prefix: string): CniError {
    const body: CniErrorBody = { code: this.code, msg: this.msg };
    if (this.details !== undefined) body.details = this.details;
    return new CniError(body, this.exitCode, this.stderr, prefix);
  }
}

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

// ------------------------------------------------------------------------------------ versions

export function parseVersion(v: string): [number, number, number] {
  if (v === '') return [0, 1, 0];
  const parts = v.split('.');
  if (parts.length > 3 || parts.some((p) => !/^\d+$/.test(p))) throw new Error(`invalid version "${v}"`);
  const [a = 0, b = 0, c = 0] = parts.map(Number);
  return [a, b, c];
}

export function versionGte(a: string, b: string): boolean {
  const x = parseVersion(a);
  const y = parseVersion(b);
  for (let i = 0; i < 3; i++) if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) > (y[i] ?? 0);
  return true;
}

// ------------------------------------------------------------------------------------ config

export interface PluginConf {
  readonly type: string;
  /** The entry's own name, if it has one (libcni's error messages name it). */
  readonly name: string | undefined;
  readonly capabilities: Readonly<Record<string, boolean>>;
  /** The entry as parsed (what libcni re-marshals). */
  readonly raw: JsonObject;
}

export interface NetConfList {
  readonly name: string;
  readonly cniVersion: string;
  readonly disableCheck: boolean;
  readonly disableGC: boolean;
  readonly plugins: readonly PluginConf[];
  /** The file's bytes, as libcni caches them. */
  readonly bytes: string;
}

function readBool(raw: JsonObject, key: string): boolean {
  const v = raw[key];
  if (v === undefined) return false;
  if (typeof v === 'boolean') return v;
  if (typeof v === 'string' && (v.toLowerCase() === 'true' || v.toLowerCase() === 'false')) return v.toLowerCase() === 'true';
  throw new Error(`error parsing configuration list: invalid value for ${key}`);
}

function pluginConf(entry: Json, i: number): PluginConf {
  if (!isObject(entry)) throw new Error(`failed to parse plugin config ${i}: not an object`);
  const type = entry['type'];
  if (typeof type !== 'string') throw new Error(`failed to parse plugin config ${i}: no type`);
  const caps: Record<string, boolean> = {};
  const c = entry['capabilities'];
  if (isObject(c)) for (const [k, v] of Object.entries(c)) if (typeof v === 'boolean') caps[k] = v;
  const name = entry['name'];
  return { type, name: typeof name === 'string' ? name : undefined, capabilities: caps, raw: entry };
}

/** A conflist as libcni's NetworkConfFromBytes reads it (inline plugins only). */
export function parseConflist(text: string): NetConfList {
  let raw: Json;
  try {
    raw = JSON.parse(text) as Json;
  } catch (e) {
    throw new Error(`error parsing configuration list: ${(e as Error).message}`);
  }
  if (!isObject(raw)) throw new Error('error parsing configuration list: not an object');
  const name = raw['name'];
  if (typeof name !== 'string') throw new Error('error parsing configuration list: no name');
  const cniVersion = raw['cniVersion'] ?? '';
  if (typeof cniVersion !== 'string') throw new Error('error parsing configuration list: invalid cniVersion type');
  const plugins = raw['plugins'];
  if (!Array.isArray(plugins) || plugins.length === 0) throw new Error('error parsing configuration list: no plugins in list');
  return {
    name,
    cniVersion,
    disableCheck: readBool(raw, 'disableCheck'),
    disableGC: readBool(raw, 'disableGC'),
    plugins: plugins.map(pluginConf),
    bytes: text,
  };
}

/** Go's json.Marshal of a map: keys sorted at every level. */
export function sortKeys(v: Json): Json {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (!isObject(v)) return v;
  const out: JsonObject = {};
  for (const k of Object.keys(v).sort()) out[k] = sortKeys(v[k] as Json);
  return out;
}

/** The runtimeConfig libcni builds: capability args whose key the plugin declares true. */
export function runtimeConfigFor(plugin: PluginConf, capabilityArgs: Readonly<Record<string, Json>> | undefined): JsonObject | undefined {
  const rc: JsonObject = {};
  for (const [cap, on] of Object.entries(plugin.capabilities)) {
    const data = capabilityArgs?.[cap];
    if (on && data !== undefined) rc[cap] = data;
  }
  return Object.keys(rc).length > 0 ? rc : undefined;
}

/** The stdin of one plugin call in a chain (buildOneConfig + injectRuntimeConfig). */
export function pluginStdin(
  list: Pick<NetConfList, 'name' | 'cniVersion'>,
  plugin: PluginConf,
  prevResult: JsonObject | undefined,
  capabilityArgs: Readonly<Record<string, Json>> | undefined,
): string {
  const conf: JsonObject = { ...plugin.raw, name: list.name, cniVersion: list.cniVersion };
  if (prevResult !== undefined) conf['prevResult'] = prevResult;
  const rc = runtimeConfigFor(plugin, capabilityArgs);
  if (rc !== undefined) conf['runtimeConfig'] = rc;
  return JSON.stringify(sortKeys(conf));
}

/** The stdin of a GC or STATUS call: the entry with name and cniVersion (and GC's attachments). */
export function listLevelStdin(list: Pick<NetConfList, 'name' | 'cniVersion'>, plugin: PluginConf, extra: JsonObject = {}): string {
  return JSON.stringify(sortKeys({ ...plugin.raw, name: list.name, cniVersion: list.cniVersion, ...extra }));
}

// ------------------------------------------------------------------------------------ environment

export type CniCommand = 'ADD' | 'DEL' | 'CHECK' | 'GC' | 'STATUS' | 'VERSION';

export interface CallArgs {
  containerId: string;
  netns: string;
  ifName: string;
  /** CNI_ARGS as key/value pairs, in order. */
  args?: ReadonlyArray<readonly [string, string]>;
  /** CNI_PATH entries. */
  path: readonly string[];
}

export function stringifyCniArgs(args: ReadonlyArray<readonly [string, string]> | undefined): string {
  return (args ?? []).map(([k, v]) => `${k}=${v}`).join(';');
}

/** The plugin's environment: `base` with the six CNI variables set (they override base's). */
export function pluginEnv(command: CniCommand, a: CallArgs, base: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return {
    ...base,
    CNI_COMMAND: command,
    CNI_CONTAINERID: a.containerId,
    CNI_NETNS: a.netns,
    CNI_ARGS: stringifyCniArgs(a.args),
    CNI_IFNAME: a.ifName,
    CNI_PATH: a.path.join(':'),
  };
}

/** The arguments of libcni's VERSION probe (fake values for plugins built on an old skel). */
export const VERSION_PROBE_ARGS: CallArgs = { containerId: '', netns: 'dummy', ifName: 'dummy', path: ['dummy'] };

// ------------------------------------------------------------------------------------ outcomes

/** RawExec.pluginErr: what libcni makes of a plugin that exited non-zero. */
export function pluginFailure(exitCode: number, stdout: string, stderr: string): CniError {
  if (stdout.length === 0) {
    const msg = stderr.length === 0
      ? `netplugin failed with no error message: exit status ${exitCode}`
      : `netplugin failed: ${JSON.stringify(stderr)}: exit status ${exitCode}`;
    return new CniError({ code: 0, msg }, exitCode, stderr);
  }
  try {
    const e = JSON.parse(stdout) as Json;
    if (!isObject(e)) throw new Error('not an object');
    const body: CniErrorBody = {
      code: typeof e['code'] === 'number' ? e['code'] : 0,
      msg: typeof e['msg'] === 'string' ? e['msg'] : '',
    };
    if (typeof e['details'] === 'string' && e['details'] !== '') body.details = e['details'];
    return new CniError(body, exitCode, stderr);
  } catch (err) {
    const msg = `netplugin failed but error parsing its diagnostic message ${JSON.stringify(stdout)}: ${(err as Error).message}`;
    return new CniError({ code: 0, msg }, exitCode, stderr);
  }
}

/** fixupResultVersion + decoding: a result without cniVersion is taken to be in the config's version. */
export function parseResult(stdout: string, confVersion: string): JsonObject {
  let r: Json;
  try {
    r = JSON.parse(stdout) as Json;
  } catch (e) {
    throw new Error(`failed to unmarshal raw result: ${(e as Error).message}`);
  }
  const obj: JsonObject = isObject(r) ? { ...r } : {};
  if (typeof obj['cniVersion'] !== 'string' || obj['cniVersion'] === '') obj['cniVersion'] = confVersion;
  return obj;
}

export interface VersionInfo {
  cniVersion: string;
  supportedVersions: string[];
}

/** version.PluginDecoder. */
export function decodeVersionInfo(stdout: string): VersionInfo {
  let r: Json;
  try {
    r = JSON.parse(stdout) as Json;
  } catch (e) {
    throw new Error(`decoding version info: ${(e as Error).message}`);
  }
  const o = isObject(r) ? r : {};
  const cniVersion = typeof o['cniVersion'] === 'string' ? o['cniVersion'] : '';
  if (cniVersion === '') throw new Error('decoding version info: missing field cniVersion');
  const sv = Array.isArray(o['supportedVersions']) ? o['supportedVersions'].filter((v): v is string => typeof v === 'string') : [];
  if (sv.length === 0) {
    if (cniVersion === '0.2.0') return { cniVersion, supportedVersions: ['0.1.0', '0.2.0'] };
    throw new Error('decoding version info: missing field supportedVersions');
  }
  return { cniVersion, supportedVersions: sv };
}

const GROUP_04 = ['0.3.0', '0.3.1', '0.4.0'];
const GROUP_1 = ['1.0.0', '1.1.0'];

/**
 * Result.GetAsVersion between the 0.3.0–0.4.0 and 1.x shapes: 0.3/0.4 ips carry `version` ("4"/"6"),
 * 1.x ips do not. 0.1/0.2 results (no `interfaces`) are not supported.
 */
export function convertResult(result: JsonObject, to: string): JsonObject {
  const from = typeof result['cniVersion'] === 'string' ? result['cniVersion'] : '';
  const known = [...GROUP_04, ...GROUP_1];
  if (!known.includes(from)) throw new Error(`unsupported result version "${from}"`);
  if (!known.includes(to)) throw new Error(`cannot convert a result to version "${to}"`);
  const out: JsonObject = { ...result, cniVersion: to };
  const ips = Array.isArray(result['ips']) ? result['ips'] : undefined;
  if (ips !== undefined) {
    out['ips'] = ips.map((ip) => {
      if (!isObject(ip)) return ip;
      const copy: JsonObject = { ...ip };
      if (GROUP_1.includes(to)) {
        delete copy['version'];
      } else {
        const addr = typeof ip['address'] === 'string' ? ip['address'] : '';
        copy['version'] = addr.includes(':') ? '6' : '4';
      }
      return copy;
    });
  }
  return out;
}

// ------------------------------------------------------------------------------------ cache

export const CACHE_KIND = 'cniCacheV1';

export interface CacheEntry {
  kind: typeof CACHE_KIND;
  containerId: string;
  /** base64 of the list's bytes (Go marshals []byte so). */
  config: string;
  ifName: string;
  networkName: string;
  netns?: string;
  cniArgs?: Array<[string, string]>;
  capabilityArgs?: Record<string, Json>;
  result?: JsonObject;
}

export function cacheFileName(network: string, containerId: string, ifName: string): string {
  if (network === '' || containerId === '' || ifName === '') {
    throw new Error(`cache file path requires network name ("${network}"), container ID ("${containerId}"), and interface name ("${ifName}")`);
  }
  return `${network}-${containerId}-${ifName}`;
}

// ------------------------------------------------------------------------------------ validation

const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

/** libcni's checks before an ADD (utils.ValidateContainerID / NetworkName / InterfaceName). */
export function validateAddArgs(network: string, containerId: string, ifName: string): CniError | undefined {
  if (containerId === '') return new CniError({ code: CNI_ERR.unknownContainer, msg: 'missing containerID' });
  if (!NAME_RE.test(containerId)) return new CniError({ code: CNI_ERR.invalidEnv, msg: 'invalid characters in containerID', details: containerId });
  if (network === '') return new CniError({ code: CNI_ERR.invalidNetworkConfig, msg: 'missing network name:' });
  if (!NAME_RE.test(network)) return new CniError({ code: CNI_ERR.invalidNetworkConfig, msg: 'invalid characters found in network name', details: network });
  if (ifName === '') return new CniError({ code: CNI_ERR.invalidEnv, msg: 'interface name is empty' });
  if (ifName.length > 15) return new CniError({ code: CNI_ERR.invalidEnv, msg: 'interface name is too long', details: 'interface name should be less than 16 characters' });
  if (ifName === '.' || ifName === '..') return new CniError({ code: CNI_ERR.invalidEnv, msg: 'interface name is . or ..' });
  if (/[/:\s]/.test(ifName)) return new CniError({ code: CNI_ERR.invalidEnv, msg: 'interface name contains / or : or whitespace characters' });
  return undefined;
}

/** libcni's pluginDescription: `type="bridge"` or `type="bridge" name="x"`. */
export function pluginDescription(p: PluginConf): string {
  return p.name !== undefined && p.name !== '' ? `type="${p.type}" name="${p.name}"` : `type="${p.type}"`;
}
