// One plugin invocation (the environment and stdin, as libcni passes them) → a typed request.
// Pure: no kernel, no engine. The rules are the spec's and libcni skel's: required variables per
// command (code 4, naming them), the network config decoded from stdin (code 6) and validated
// (code 7, or 2 for fields batchbridge does not implement), the cniVersion checked for the
// command (code 1).
import { createHash } from 'node:crypto';
import { BbError, CniConfigError, CniDecodeError, CniEnvironmentError, CniUnsupportedFieldError } from '../errors.js';
import { parseEndpointId, parseIfName, type Brand, type EndpointId, type IfName } from '../domain/names.js';
import { asEnvError, parseCniArgs, type CniArgs } from './cni-args.js';
import { asObject, shown, type ConfigObject } from './config-values.js';
import { parseNetConfig, type CniNetwork } from './net-config.js';
import type { CniInvocation } from './handler.js';
import { decodeResult, type CniResult } from './result.js';
import { parseAttachmentOptions, type AttachmentOptions } from './runtime-config.js';
import { CNI_COMMANDS, negotiateVersion, type CniCommand, type CniVersion } from './version.js';

export type ContainerId = Brand<string, 'ContainerId'>;
/** An absolute path of [A-Za-z0-9_./:@+=-]: safe as an `ip ... netns PATH` argument. */
export type NetnsPath = Brand<string, 'NetnsPath'>;

interface Base {
  readonly cniVersion: CniVersion;
  readonly network: CniNetwork;
  /** CNI_PATH, split; where delegated plugins are looked up */
  readonly cniPath: readonly string[];
  /** as received: a delegated plugin gets the same environment and stdin */
  readonly env: Readonly<Record<string, string>>;
  readonly stdin: Buffer;
}

interface Attachment extends Base {
  readonly containerId: ContainerId;
  readonly ifName: IfName;
  readonly args: CniArgs;
  readonly options: AttachmentOptions;
  /** the engine's endpoint id for (network, container, ifname): stable across ADD/CHECK/DEL */
  readonly endpointId: EndpointId;
}

export interface AddRequest extends Attachment {
  readonly command: 'ADD';
  readonly netns: NetnsPath;
}
export interface DelRequest extends Attachment {
  readonly command: 'DEL';
  /** empty CNI_NETNS (containerd's second DEL, a namespace already gone): null */
  readonly netns: NetnsPath | null;
  readonly prevResult: CniResult | null;
}
export interface CheckRequest extends Attachment {
  readonly command: 'CHECK';
  readonly netns: NetnsPath;
  readonly prevResult: CniResult;
}
export interface GcRequest extends Base {
  readonly command: 'GC';
  readonly validAttachments: readonly { readonly containerId: ContainerId; readonly ifName: IfName }[];
}
export interface StatusRequest extends Base {
  readonly command: 'STATUS';
}
export interface VersionRequest {
  readonly command: 'VERSION';
}
export type CniRequest = AddRequest | DelRequest | CheckRequest | GcRequest | StatusRequest | VersionRequest;

export interface ParseOptions {
  /** the daemon's own socket: a config naming another one was meant for another daemon */
  readonly socketPath?: string;
  /** whether a config's `socket` is this daemon's (default: equal to socketPath) */
  readonly acceptsSocket?: (path: string) => boolean;
}

const REQUIRED: Record<CniCommand, readonly string[]> = {
  ADD: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME'],
  DEL: ['CNI_CONTAINERID', 'CNI_IFNAME'],
  CHECK: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME'],
  GC: ['CNI_PATH'],
  STATUS: [],
  VERSION: [],
};
const CONTAINER_ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,511}$/;
const NETNS_RE = /^\/[A-Za-z0-9_./:@+=-]{0,4094}$/;
const MAX_ATTACHMENTS = 1_000_000;

export function parseContainerId(v: string, what = 'CNI_CONTAINERID'): ContainerId {
  if (!CONTAINER_ID_RE.test(v)) {
    throw new CniEnvironmentError(`invalid ${what} ${shown(v)}: 1 to 512 characters of [A-Za-z0-9_.-], starting with a letter or digit`);
  }
  return v as ContainerId;
}

export function parseNetnsPath(v: string): NetnsPath {
  if (!NETNS_RE.test(v)) throw new CniEnvironmentError(`invalid CNI_NETNS ${shown(v)}: must be an absolute path of [A-Za-z0-9_./:@+=-]`);
  return v as NetnsPath;
}

export function parseCniPath(v: string): string[] {
  const dirs = v.split(':').filter((d) => d !== '');
  for (const d of dirs) {
    if (!d.startsWith('/') || d.length > 4096 || /[\0-\x1f]/.test(d)) throw new CniEnvironmentError(`invalid CNI_PATH entry ${shown(d)}: directories must be absolute paths`);
  }
  return dirs;
}

/** The engine's endpoint id of an attachment: 64 hex characters. */
export function attachmentId(network: CniNetwork, containerId: string, ifName: string): EndpointId {
  return parseEndpointId(createHash('sha256').update(`${network.id}\0${containerId}\0${ifName}`).digest('hex'), 'endpoint id');
}

function decodeStdin(stdin: Buffer): ConfigObject {
  let conf: unknown;
  try {
    conf = JSON.parse(stdin.toString('utf8'));
  } catch (err) {
    throw new CniDecodeError(`error unmarshalling the network config from stdin: ${(err as Error).message}`);
  }
  if (conf === null || typeof conf !== 'object' || Array.isArray(conf)) throw new CniDecodeError('the network config on stdin must be a JSON object');
  return conf as ConfigObject;
}

function prevResultOf(conf: ConfigObject): CniResult | null {
  if (conf.prevResult === undefined || conf.prevResult === null) return null;
  return decodeResult(conf.prevResult, 'prevResult');
}

function parseGcAttachments(conf: ConfigObject): GcRequest['validAttachments'] {
  // libcni sends cni.dev/valid-attachments; the 1.1.0 tag of SPEC.md called it cni.dev/attachments.
  const raw = conf['cni.dev/valid-attachments'] ?? conf['cni.dev/attachments'] ?? [];
  if (!Array.isArray(raw) || raw.length > MAX_ATTACHMENTS) throw new CniConfigError(`cni.dev/valid-attachments must be a list, got ${shown(raw)}`);
  return raw.map((a: unknown, i) => {
    const o = asObject(a, `cni.dev/valid-attachments[${i}]`);
    const rewrap = <T>(fn: () => T): T => {
      try {
        return fn();
      } catch (err) {
        if (err instanceof BbError) throw new CniConfigError(`cni.dev/valid-attachments[${i}]: ${err.message}`);
        throw err;
      }
    };
    return {
      containerId: rewrap(() => parseContainerId(typeof o.containerID === 'string' ? o.containerID : '', 'containerID')),
      ifName: rewrap(() => parseIfName(typeof o.ifname === 'string' ? o.ifname : '', 'ifname')),
    };
  });
}

function checkSocket(network: CniNetwork, opts: ParseOptions): void {
  if (network.socket === null || opts.socketPath === undefined) return;
  const ok = opts.acceptsSocket !== undefined ? opts.acceptsSocket(network.socket) : network.socket === opts.socketPath;
  if (!ok) {
    throw new CniConfigError(`the config names socket ${network.socket} but this batchbridge daemon serves ${opts.socketPath}: the forwarder and the config disagree (see cni-install --socket)`);
  }
}

function parseCommand(env: Readonly<Record<string, string>>): CniCommand {
  const text = env.CNI_COMMAND ?? '';
  if (text === '') throw new CniEnvironmentError('required env variables [CNI_COMMAND] missing');
  const command = CNI_COMMANDS.find((c) => c === text);
  if (command === undefined) throw new CniEnvironmentError(`unknown CNI_COMMAND ${shown(text)} (${CNI_COMMANDS.join(', ')})`);
  const missing = REQUIRED[command].filter((k) => (env[k] ?? '') === '');
  if (missing.length > 0) throw new CniEnvironmentError(`required env variables [${missing.join(',')}] missing`);
  return command;
}

function parseAttachment(command: 'ADD' | 'DEL' | 'CHECK', base: Base, conf: ConfigObject): Attachment & { netns: NetnsPath | null } {
  const env = base.env;
  const containerId = parseContainerId(env.CNI_CONTAINERID ?? '');
  const ifName = asEnvError('CNI_IFNAME', () => parseIfName(env.CNI_IFNAME ?? '', 'CNI_IFNAME'));
  const netnsText = env.CNI_NETNS ?? '';
  const netns = netnsText === '' && command === 'DEL' ? null : parseNetnsPath(netnsText);
  const args = parseCniArgs(env.CNI_ARGS ?? '');
  const options = parseAttachmentOptions(conf, args, base.network);
  return { ...base, containerId, ifName, netns, args, options, endpointId: attachmentId(base.network, containerId, ifName) };
}

/** Throws BbErrors; cni-error.ts renders them as the spec's error JSON. */
export function parseInvocation(inv: CniInvocation, opts: ParseOptions = {}): CniRequest {
  const command = parseCommand(inv.env);
  if (command === 'VERSION') return { command };
  const cniPath = parseCniPath(inv.env.CNI_PATH ?? '');
  const conf = decodeStdin(inv.stdin);
  const cniVersion = negotiateVersion(conf.cniVersion, command);
  const network = parseNetConfig(conf);
  checkSocket(network, opts);
  const base: Base = { cniVersion, network, cniPath, env: inv.env, stdin: inv.stdin };
  switch (command) {
    case 'GC':
      return { ...base, command, validAttachments: parseGcAttachments(conf) };
    case 'STATUS':
      return { ...base, command };
    case 'ADD': {
      if (conf.prevResult !== undefined && conf.prevResult !== null) {
        throw new CniUnsupportedFieldError(`unsupported field prevResult on ADD: ${shown(conf.prevResult)} (batchbridge-cni creates the interface, so it must be the first plugin of its list)`);
      }
      const a = parseAttachment(command, base, conf);
      return { ...a, command, netns: a.netns as NetnsPath };
    }
    case 'DEL':
      return { ...parseAttachment(command, base, conf), command, prevResult: prevResultOf(conf) };
    case 'CHECK': {
      const a = parseAttachment(command, base, conf);
      const prevResult = prevResultOf(conf);
      if (prevResult === null) throw new CniConfigError('CHECK needs prevResult, the result of the ADD (runtimes send it from their cache)');
      return { ...a, command, netns: a.netns as NetnsPath, prevResult };
    }
  }
}
