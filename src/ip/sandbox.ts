// The part of a CNI attachment that happens inside the container's network namespace: its
// addresses, link up and routes. The veth's container end is made in that namespace by the
// shared host-side script (plan.ts); what follows cannot share a process across pods, because
// addresses and routes can only be added from inside a namespace (netlink has no target-netns
// attribute for them) and a process enters one namespace at a time. So each pod costs one short
// `ip -batch` of its own. These are `sandbox-setup` operations, batched in a pipeline of their
// own (scheduler/pipelines.ts): a batch runs its pods' processes side by side, while the veth
// pipeline goes on with the next host-side script (docs/cni.md, "Cost per pod").
import { runLimited } from '../tools/limit.js';
import type { ToolEnv } from '../tools/env.js';
import type { ToolPaths } from '../tools/paths.js';
import { parseIpErrors } from './errors.js';
import { renderIpScript, type IpLine } from './lines.js';
import type { SandboxSetup } from './ops.js';
import type { IpWork } from './plan.js';

/** Pods configured at once per batch: enough to overlap process starts on a few cores. */
const SANDBOX_CONCURRENCY = 8;

const NAMED_NETNS_RE = /^\/(?:var\/)?run\/netns\/([A-Za-z0-9][A-Za-z0-9_.-]{0,63})$/;

/** The lines run inside the namespace: addresses, then up (a route needs the link up), then routes. */
export function sandboxLines(s: Omit<SandboxSetup, 'kind' | 'netns'>): IpLine[] {
  const lines: IpLine[] = s.addrs.map((a) => ({ op: 'addr-add', addr: a, dev: s.dev, nodad: a.includes(':') }));
  lines.push({ op: 'link-up', dev: s.dev });
  for (const r of s.routes) lines.push({ op: 'route-add', dst: r.dst, via: r.via, dev: s.dev });
  return lines;
}

/**
 * How to run `ip ARGS` in the namespace at `netns`: `ip -n NAME` for a namespace named under
 * /run/netns (no extra process), else through nsenter (`ip -n` takes names only).
 */
export function ipInNetns(tools: ToolPaths, netns: string, ipArgs: readonly string[]): { file: string; args: string[] } {
  const m = NAMED_NETNS_RE.exec(netns);
  if (m !== null) return { file: tools.ip, args: ['-n', m[1] as string, ...ipArgs] };
  return { file: tools.nsenter, args: [`--net=${netns}`, '--', tools.ip, ...ipArgs] };
}

interface Pending {
  readonly opId: number;
  readonly op: SandboxSetup;
}

function setups(works: readonly IpWork[]): Pending[] {
  const out: Pending[] = [];
  for (const w of works) for (const op of w.ops) if (op.kind === 'sandbox-setup') out.push({ opId: w.opId, op });
  return out;
}

async function configure(p: Pending, env: ToolEnv): Promise<string | null> {
  const { file, args } = ipInNetns(env.tools, p.op.netns, ['-force', '-batch', '-']);
  const lines = sandboxLines(p.op);
  const r = await env.run(file, args, renderIpScript(lines));
  if (r.spawnError !== null) return `${file}: ${r.spawnError}`;
  const parsed = parseIpErrors(r.stderr);
  // Every line must hold: a fresh interface has none of these yet, so "exists" is a real clash.
  const first = parsed.failures[0];
  if (first !== undefined) return `in ${p.op.netns}: ${first.message} (${renderIpScript([lines[first.line - 1] as IpLine]).trim()})`;
  if (r.exitCode !== 0) return `in ${p.op.netns}: ${parsed.unattributed || r.stderr.trim() || `exit status ${r.exitCode}`}`;
  return null;
}

/**
 * Runs the batch's `sandbox-setup` operations (those not in `failed`), up to SANDBOX_CONCURRENCY
 * at once; one that fails is recorded in `failed` (the engine then deletes the attachment).
 * Returns the processes run.
 */
export async function configureSandboxes(works: readonly IpWork[], failed: Map<number, string>, env: ToolEnv): Promise<number> {
  const todo = setups(works).filter((p) => !failed.has(p.opId));
  if (todo.length === 0) return 0;
  const errors = await runLimited(todo, SANDBOX_CONCURRENCY, (p) => configure(p, env));
  todo.forEach((p, i) => {
    const err = errors[i];
    if (err !== null && err !== undefined) failed.set(p.opId, `failed to configure ${p.op.dev}: ${err}`);
  });
  return todo.length;
}
