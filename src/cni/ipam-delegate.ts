// Delegated IPAM: `ipam.type` other than "batchbridge" names an IPAM plugin (host-local, dhcp,
// static, …) that allocates instead of the daemon. It is run as the reference bridge plugin
// runs it (libcni invoke.Delegate*): found in CNI_PATH, given the environment of the CNI call
// with CNI_COMMAND set to the verb, and the network config on stdin unchanged. Its stderr is
// handed back for the caller's stderr. A failed ADD later on must call delegateDel to release
// the address (the spec's "execute again with DEL").
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { CniConfigError, CniDelegateError } from '../errors.js';
import { cidrContains, parseCidr } from '../domain/addr.js';
import { runTool, type ToolResult } from '../tools/spawn.js';
import type { CniNetwork } from './net-config.js';
import { decodeResult, type CniResult } from './result.js';

export interface DelegateCall {
  readonly ipamType: string;
  readonly cniPath: readonly string[];
  /** the CNI call's environment, as received */
  readonly env: Readonly<Record<string, string>>;
  /** the network config, as received */
  readonly stdin: Buffer;
}

export type ToolRunner = (file: string, args: readonly string[], input: string, timeoutMs: number, env: Readonly<Record<string, string>>) => Promise<ToolResult>;

export type DelegateVerb = 'ADD' | 'DEL' | 'CHECK' | 'STATUS' | 'GC';

export const DELEGATE_TIMEOUT_MS = 60_000;

/** The DelegateCall of a parsed request whose network delegates IPAM, else null. */
export function delegateCallOf(req: { network: CniNetwork; cniPath: readonly string[]; env: Readonly<Record<string, string>>; stdin: Buffer }): DelegateCall | null {
  if (req.network.ipam.kind !== 'delegated') return null;
  return { ipamType: req.network.ipam.type, cniPath: req.cniPath, env: req.env, stdin: req.stdin };
}

/** libcni FindInPath: the first regular file named `type` in the CNI_PATH directories. */
export function findPlugin(type: string, dirs: readonly string[]): string {
  if (dirs.length === 0) throw new CniConfigError(`failed to find IPAM plugin ${JSON.stringify(type)}: CNI_PATH is empty`);
  for (const d of dirs) {
    const p = join(d, type);
    try {
      if (statSync(p).isFile()) return p;
    } catch {
      // not in this directory
    }
  }
  throw new CniConfigError(`failed to find IPAM plugin ${JSON.stringify(type)} in CNI_PATH [${dirs.join(' ')}]`);
}

interface CniErrorJson {
  code?: unknown;
  msg?: unknown;
  details?: unknown;
}

/** The plugin's failure as libcni reads it: the error JSON on stdout, else its stderr. */
function failure(type: string, verb: DelegateVerb, r: ToolResult): CniDelegateError {
  const what = `IPAM plugin ${type} failed (${verb})`;
  if (r.spawnError !== null) return new CniDelegateError(`${what}: ${r.spawnError}`);
  const out = r.stdout.trim();
  if (out === '') {
    const err = r.stderr.trim();
    return new CniDelegateError(err === '' ? `${what} with no error message (exit status ${r.exitCode})` : `${what}: ${err.slice(0, 2000)}`);
  }
  let e: CniErrorJson;
  try {
    e = JSON.parse(out) as CniErrorJson;
  } catch {
    return new CniDelegateError(`${what} and its error could not be read: ${out.slice(0, 2000)}`);
  }
  const code = typeof e.code === 'number' && Number.isInteger(e.code) && e.code > 0 ? e.code : 0;
  const msg = typeof e.msg === 'string' ? e.msg : out.slice(0, 2000);
  return new CniDelegateError(`${what}: ${msg}`, code, typeof e.details === 'string' ? e.details : '');
}

export async function delegate(verb: DelegateVerb, call: DelegateCall, run: ToolRunner = runTool): Promise<{ stdout: string; stderr: string }> {
  const file = findPlugin(call.ipamType, call.cniPath);
  const r = await run(file, [], call.stdin.toString('utf8'), DELEGATE_TIMEOUT_MS, { ...call.env, CNI_COMMAND: verb });
  if (r.spawnError !== null || r.exitCode !== 0) throw failure(call.ipamType, verb, r);
  return { stdout: r.stdout, stderr: r.stderr };
}

/** ADD: the addresses (and routes, dns) the plugin allocated. */
export async function delegateAdd(call: DelegateCall, run: ToolRunner = runTool): Promise<{ result: CniResult; stderr: string }> {
  const { stdout, stderr } = await delegate('ADD', call, run);
  let raw: unknown;
  try {
    raw = JSON.parse(stdout);
  } catch {
    throw new CniDelegateError(`IPAM plugin ${call.ipamType} answered ADD with something that is not JSON: ${stdout.slice(0, 200)}`);
  }
  const result = decodeResult(raw, `the result of IPAM plugin ${call.ipamType}`);
  if (result.ips.length === 0) throw new CniDelegateError(`IPAM plugin ${call.ipamType} returned no IP configuration`);
  return { result, stderr };
}

/** Releases what ADD allocated; also the clean-up after a failed ADD. */
export async function delegateDel(call: DelegateCall, run: ToolRunner = runTool): Promise<{ stderr: string }> {
  return { stderr: (await delegate('DEL', call, run)).stderr };
}

/**
 * The addresses a delegated plugin gave must lie in the subnets batchbridge set the network up
 * with, one per family (a Docker-style endpoint has one IPv4 and at most one IPv6 address).
 */
export function checkIpamResult(network: CniNetwork, result: CniResult, ipamType: string): void {
  const seen = new Set<number>();
  for (const ip of result.ips) {
    const c = parseCidr(ip.address, 'IPAM address');
    const range = network.ipam.ranges.find((r) => r.family === c.family && cidrContains(r.subnet, c.ip));
    if (range === undefined) {
      throw new CniConfigError(`IPAM plugin ${ipamType} gave ${ip.address}, which is in none of the network's subnets (${network.ipam.ranges.map((r) => r.subnet.network).join(', ')}): its ranges and batchbridge's must agree`);
    }
    if (seen.has(c.family)) throw new CniConfigError(`IPAM plugin ${ipamType} gave more than one IPv${c.family} address; batchbridge gives an attachment one per family`);
    seen.add(c.family);
  }
  if (!seen.has(4)) throw new CniConfigError(`IPAM plugin ${ipamType} gave no IPv4 address; a batchbridge attachment needs one`);
}
