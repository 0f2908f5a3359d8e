// Uninstall (`batchbridge cleanup`): every interface of ours, every rule, chain and hook of ours,
// then (the CLI) the books. Ours means what the books name and what carries the books' ownership
// mark (StateStore.ownerGroup); never anything by its name. A user's bridge that a network used
// is given back as DeleteNetwork gives it back: our addresses off it, down again if it was down.
// The pure planner is apart from the runner, which touches the kernel.
import { KernelError } from '../errors.js';
import type { FirewallBackend } from '../firewall/types.js';
import { classifyIpError, parseIpErrors } from '../ip/errors.js';
import { renderIpLine, type IpLine } from '../ip/lines.js';
import { LINK_GROUP_BASE, RECONCILE_LINK_GROUP } from '../ip/ops.js';
import { normAddr, parseIpLinks, type KernelLink } from '../ip/read.js';
import type { EndpointRecord, Intent, NetworkRecord } from '../state/records.js';
import type { ToolEnv } from '../tools/env.js';

export interface UninstallInput {
  readonly networks: readonly NetworkRecord[];
  readonly endpoints: readonly EndpointRecord[];
  readonly intents: readonly Intent[];
  /** null: books without a mark (only what they name is ours) */
  readonly ownerGroup: number | null;
  readonly links: ReadonlyMap<string, KernelLink>;
}

export interface UninstallPlan {
  readonly lines: readonly IpLine[];
  /** what goes, one line each ("veth vethabc1234 (endpoint …)") */
  readonly items: readonly string[];
}

/** A group a batch or reconciliation moved veths to just before deleting them: ours mid-delete. */
function deleteGroup(g: number | undefined): boolean {
  return g !== undefined && g >= LINK_GROUP_BASE && g <= RECONCILE_LINK_GROUP;
}

/** Interfaces an interrupted operation (an intent) names, if they are ours. */
function fromIntents(input: UninstallInput, marked: (l: KernelLink) => boolean): { veths: string[]; bridges: string[] } {
  const veths: string[] = [];
  const bridges: string[] = [];
  for (const intent of input.intents) {
    for (const it of intent.items) {
      const name = 'host' in it ? it.host : 'bridge' in it && it.createdBridge === true ? it.bridge : null;
      const l = name === null ? undefined : input.links.get(name);
      if (l === undefined || !(marked(l) || deleteGroup(l.group))) continue;
      (l.kind === 'bridge' ? bridges : veths).push(l.name);
    }
  }
  return { veths, bridges };
}

export function planUninstall(input: UninstallInput): UninstallPlan {
  const marked = (l: KernelLink): boolean => input.ownerGroup !== null && l.group === input.ownerGroup;
  const veths = new Map<string, string>();
  const bridges = new Map<string, string>();
  const late: IpLine[] = [];
  const items: string[] = [];
  for (const e of input.endpoints) if (input.links.has(e.host)) veths.set(e.host, `veth ${e.host} (endpoint ${e.id} of network ${e.networkId})`);
  for (const n of input.networks) {
    const l = input.links.get(n.spec.bridge);
    if (l === undefined) continue;
    if (n.createdBridge) bridges.set(n.spec.bridge, `bridge ${n.spec.bridge} (network ${n.spec.id})`);
    else {
      // A user's bridge stays, as it was before the network used it.
      const addrs = n.addedAddrs.filter((a) => l.addrs.includes(normAddr(a)));
      for (const a of addrs) late.push({ op: 'addr-del', addr: a, dev: n.spec.bridge });
      if (n.restoreDown === true && l.up) late.push({ op: 'link-down', dev: n.spec.bridge });
      items.push(`user bridge ${n.spec.bridge} (network ${n.spec.id}) kept${addrs.length > 0 ? `, our address(es) ${addrs.join(', ')} taken off it` : ''}${n.restoreDown === true && l.up ? ', set down again' : ''}`);
    }
  }
  const interrupted = fromIntents(input, marked);
  for (const v of interrupted.veths) if (!veths.has(v)) veths.set(v, `veth ${v} (of an interrupted operation)`);
  for (const b of interrupted.bridges) if (!bridges.has(b)) bridges.set(b, `bridge ${b} (of an interrupted network creation)`);
  for (const l of input.links.values()) {
    if (!marked(l)) continue;
    if (l.kind === 'veth' && !veths.has(l.name)) veths.set(l.name, `veth ${l.name} (with our mark, not in the books)`);
    if (l.kind === 'bridge' && !bridges.has(l.name)) bridges.set(l.name, `bridge ${l.name} (with our mark, not in the books)`);
  }
  // One group delete for all veths (one RCU wait), then the user bridges, then our bridges.
  const lines: IpLine[] = [];
  for (const v of veths.keys()) lines.push({ op: 'set-group', dev: v, group: RECONCILE_LINK_GROUP });
  if (veths.size > 0) lines.push({ op: 'del-group', group: RECONCILE_LINK_GROUP });
  lines.push(...late);
  for (const b of bridges.keys()) lines.push({ op: 'link-del', dev: b });
  return { lines, items: [...veths.values(), ...items, ...bridges.values()] };
}

export async function readLinks(tools: ToolEnv): Promise<Map<string, KernelLink>> {
  const r = await tools.run(tools.tools.ip, ['-j', '-d', 'addr', 'show']);
  if (r.exitCode !== 0) throw new KernelError(`cannot list interfaces: ${r.stderr.trim() || r.spawnError || 'ip failed'}`);
  return new Map(parseIpLinks(r.stdout).map((l) => [l.name, l]));
}

/** Runs the plan's script; returns the failures that are not "already gone". */
export async function applyUninstall(tools: ToolEnv, plan: UninstallPlan): Promise<string[]> {
  if (plan.lines.length === 0) return [];
  const script = plan.lines.map(renderIpLine);
  const r = await tools.run(tools.tools.ip, ['-force', '-batch', '-'], `${script.join('\n')}\n`);
  if (r.spawnError !== null) throw new KernelError(`ip: ${r.spawnError}`);
  const parsed = parseIpErrors(r.stderr);
  const out = parsed.failures.filter((f) => classifyIpError(f.message) === null).map((f) => `${script[f.line - 1] ?? `line ${f.line}`}: ${f.message}`);
  if (parsed.unattributed !== '') out.push(parsed.unattributed);
  return out;
}

/** Removes our firewall rules, chains and hooks; with dryRun, only says what it would remove. */
export function uninstallFirewall(fw: FirewallBackend, dryRun: boolean): Promise<string[]> {
  return fw.remove(dryRun);
}
