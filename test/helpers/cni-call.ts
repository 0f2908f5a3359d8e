// Runs a CNI plugin executable the way libcni does (pkg/invoke): the caller's environment with
// CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_ARGS, CNI_IFNAME, CNI_PATH appended (always all
// six, empty when unset), the network config on stdin, stdout and stderr collected, the exit
// status. A minimal stand-in for the fuller libcni harness (test/helpers/cni-exec.ts elsewhere).
import { statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { run, type RunResult } from './proc.js';

export const FORWARDER = fileURLToPath(new URL('../../cni/batchbridge-cni', import.meta.url));
const FORWARDER_SOURCE = fileURLToPath(new URL('../../../src/cni/forwarder/batchbridge-cni.c', import.meta.url));

/** Fails when dist/cni/batchbridge-cni is missing or older than its source. */
export function forwarderBuilt(): string {
  const bin = statSync(FORWARDER, { throwIfNoEntry: false });
  if (bin === undefined || bin.mtimeMs < statSync(FORWARDER_SOURCE).mtimeMs) {
    throw new Error(`${FORWARDER} is missing or older than its source: run sh scripts/build-cni.sh (npm run build)`);
  }
  return FORWARDER;
}

export interface CniCall {
  readonly command: string;
  readonly containerId?: string;
  readonly netns?: string;
  readonly ifName?: string;
  readonly args?: string;
  readonly path?: string;
  /** added to (and overriding) the caller's environment, before the CNI variables */
  readonly env?: Readonly<Record<string, string>>;
  readonly stdin?: string | Buffer;
  readonly timeoutMs?: number;
}

export interface CniCallResult extends RunResult {
  readonly ms: number;
}

export async function cniCall(plugin: string, c: CniCall): Promise<CniCallResult> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v;
  Object.assign(env, c.env ?? {}, {
    CNI_COMMAND: c.command,
    CNI_CONTAINERID: c.containerId ?? '',
    CNI_NETNS: c.netns ?? '',
    CNI_ARGS: c.args ?? '',
    CNI_IFNAME: c.ifName ?? '',
    CNI_PATH: c.path ?? '',
  });
  const started = performance.now();
  const r = await run([plugin], { env, input: c.stdin ?? '', timeoutMs: c.timeoutMs ?? 30_000 });
  return { ...r, ms: performance.now() - started };
}
