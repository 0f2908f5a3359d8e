// CNI_ARGS: "K=V;K2=V2". Parsed by libcni's rules (pkg/types LoadArgs): every pair must be
// exactly KEY=VALUE, an unknown key is an error unless IgnoreUnknown is true (1/true/0/false,
// any case), a repeated key takes the later value. Known here: IP (host-local's, also a comma
// list with one address per family), MAC (the bridge plugin's), IgnoreUnknown, and the K8S_*
// keys containerd and Podman send (K8S_POD_NAMESPACE, K8S_POD_NAME, K8S_POD_INFRA_CONTAINER_ID,
// K8S_POD_UID), kept for logs.
import { BbError, CniEnvironmentError, InvalidAddressError } from '../errors.js';
import { parseCidr, parseIp, type Family } from '../domain/addr.js';
import { parseMac } from '../domain/endpoint-spec.js';

export interface RequestedIp {
  readonly family: Family;
  /** canonical address text, without a prefix (a prefix given is checked, then dropped) */
  readonly ip: string;
}

export interface CniArgs {
  readonly ignoreUnknown: boolean;
  readonly ips: readonly RequestedIp[];
  readonly mac: string | null;
  readonly k8s: Readonly<Record<string, string>>;
  /** pairs skipped because of IgnoreUnknown */
  readonly ignored: readonly string[];
}

export const CNI_ARGS_MAX_BYTES = 64 * 1024;
const K8S_KEY_RE = /^K8S_[A-Z0-9_]{1,64}$/;

/**
 * Domain errors keep their text and become code 4 (an invalid environment variable); the spec
 * wants the variable named in the message.
 */
export function asEnvError<T>(name: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof BbError && !(err instanceof CniEnvironmentError)) {
      throw new CniEnvironmentError(err.message.includes(name) ? err.message : `${name}: ${err.message}`);
    }
    throw err;
  }
}

function parseBool(pair: string, value: string): boolean {
  switch (value.toLowerCase()) {
    case '1':
    case 'true':
      return true;
    case '0':
    case 'false':
      return false;
    default:
      throw new CniEnvironmentError(`invalid CNI_ARGS pair ${JSON.stringify(pair)}: expected 1, true, 0 or false`);
  }
}

/** One address per family: "198.18.64.5", "198.18.64.5/24" or "198.18.64.5,fd00::5". */
export function parseIpList(text: string, what: string): RequestedIp[] {
  const out: RequestedIp[] = [];
  for (const item of text.split(',')) {
    const a = item.includes('/') ? parseCidr(item, what) : parseIp(item, what);
    if (out.some((o) => o.family === a.family)) {
      throw new InvalidAddressError(`invalid ${what} ${JSON.stringify(text.slice(0, 80))}: more than one IPv${a.family} address`);
    }
    out.push({ family: a.family, ip: a.ip });
  }
  return out;
}

export function parseCniArgs(text: string): CniArgs {
  if (text === '') return { ignoreUnknown: false, ips: [], mac: null, k8s: {}, ignored: [] };
  if (Buffer.byteLength(text) > CNI_ARGS_MAX_BYTES) throw new CniEnvironmentError(`CNI_ARGS is longer than ${CNI_ARGS_MAX_BYTES} bytes`);
  let ignoreUnknown = false;
  let ips: RequestedIp[] = [];
  let mac: string | null = null;
  const k8s: Record<string, string> = {};
  const unknown: string[] = [];
  for (const pair of text.split(';')) {
    const kv = pair.split('=');
    if (kv.length !== 2) throw new CniEnvironmentError(`invalid CNI_ARGS pair ${JSON.stringify(pair.slice(0, 80))}: expected KEY=VALUE`);
    const [key = '', value = ''] = kv;
    if (key === 'IgnoreUnknown') ignoreUnknown = parseBool(pair, value);
    else if (key === 'IP') ips = asEnvError('CNI_ARGS IP', () => parseIpList(value, 'CNI_ARGS IP'));
    else if (key === 'MAC') mac = asEnvError('CNI_ARGS MAC', () => parseMac(value));
    else if (K8S_KEY_RE.test(key)) k8s[key] = value;
    else unknown.push(pair);
  }
  if (unknown.length > 0 && !ignoreUnknown) {
    throw new CniEnvironmentError(
      `unknown CNI_ARGS ${unknown.map((u) => JSON.stringify(u.slice(0, 80))).join(', ')}: batchbridge-cni knows IP, MAC, IgnoreUnknown and K8S_*; add IgnoreUnknown=1 to ignore the others`,
    );
  }
  return { ignoreUnknown, ips, mac, k8s, ignored: unknown };
}
