// Reconciliation: make the kernel match the books, and the books match what dockerd was told.
//
// Runs at start (before the socket listens), on a timer and on demand (`batchbridge reconcile`),
// always under the driver's exclusive gate, so no batch runs beside it. Two parts:
//
//  - planReconcile(): pure. Books + unfinished intents + a kernel snapshot → findings and the
//    fixes (one `ip -force -batch` script, sysctls, book changes). Unit-tested without a kernel.
//  - reconcile(): reads the kernel (`ip -j -d addr show`, iptables-save), applies the plan,
//    commits the book changes, then rewrites our firewall chains from the books when they differ.
//
// Decisions (docs/reliability.md has the reasoning):
//  - Unfinished intents: a create that was never booked is undone (dockerd got an error and
//    forgot it); a delete or revoke is finished (dockerd only logs those errors and forgets the
//    object either way); a program is rolled back to the books (dockerd saw an error and rolls
//    back with Leave/DeleteEndpoint).
//  - A booked endpoint whose host veth is gone (the container's netns died and the kernel took
//    the pair with it) is unbooked, its published ports released. A later DeleteEndpoint for it
//    is a no-op success, as for any unknown endpoint.
//  - Ownership: what we create carries our mark, a link group of its own per set of books
//    (StateStore.ownerGroup). An orphan is an interface with our mark that the books do not
//    explain; nothing is ever removed because of its name. A user's bridge, the veths on it that
//    are not ours, an operator's `bb-lan`: never touched. Booked interfaces that predate the mark
//    get it (the books say they are ours).
//  - Rules: our chains are rewritten from the books (syncFirewall) whenever the rules in them,
//    counted per owner tag (bb:net=… / bb:ep=…), differ from what the books want.
import type { Logger } from 'pino';
import type { SysctlWrite } from '../batching/ops.js';
import { parseIpErrors } from '../batching/plan-ip.js';
import { readHookState } from '../batching/plan-firewall.js';
import { parseCidr } from '../domain/addr.js';
import { isValidIfName } from '../domain/names.js';
import { KernelError } from '../errors.js';
import type { EndpointRecord, Intent, NetworkRecord } from '../state/records.js';
import type { BookChanges, StateStore } from '../state/store.js';
import type { KernelExecutor } from '../workers/pool.js';
import type { ToolPaths } from '../workers/spawn.js';
import { writeSysctl } from '../workers/sysctl.js';
import type { Books } from './books.js';
import type { Driver } from './driver.js';
import { desiredRules, syncFirewall } from './firewall-sync.js';
import { bridgeAddrs, networkSysctls } from './network-setup.js';
import type { PortAllocator } from './ports.js';

/** Link group for reconciliation's veth deletions (the batcher uses 0x62620000..0x62620fff). */
export const RECONCILE_LINK_GROUP = 0x62621000;

// ------------------------------------------------------------------------------------- input

export interface KernelLink {
  readonly name: string;
  readonly kind: string | null;
  readonly master: string | null;
  readonly up: boolean;
  /** "ip/prefix", canonical */
  readonly addrs: readonly string[];
  /** link group (0: default); ours when it is our ownership mark */
  readonly group?: number;
}

export interface KernelSnapshot {
  readonly links: ReadonlyMap<string, KernelLink>;
}

export interface ReconcileInput {
  readonly networks: readonly NetworkRecord[];
  readonly endpoints: readonly EndpointRecord[];
  readonly intents: readonly Intent[];
  readonly kernel: KernelSnapshot;
  /** our ownership mark (link group) */
  readonly ownerGroup: number;
  /** word the findings as what would be done */
  readonly dryRun?: boolean;
}

// ------------------------------------------------------------------------------------ output

export type FindingKind =
  | 'intent-undone'
  | 'intent-finished'
  | 'intent-cleared'
  | 'bridge-missing'
  | 'bridge-not-a-bridge'
  | 'bridge-down'
  | 'address-missing'
  | 'veth-detached'
  | 'endpoint-vanished'
  | 'orphan-veth'
  | 'orphan-bridge'
  | 'ownership-mark'
  | 'firewall-drift'
  | 'error';

export interface Finding {
  readonly kind: FindingKind;
  /** the object concerned: an interface name, a network or endpoint id, a rule tag */
  readonly subject: string;
  /** what was found and what is (or would be) done about it */
  readonly detail: string;
}

export interface ReconcilePlan {
  readonly findings: Finding[];
  /** lines of one `ip -force -batch -` script; every name in them passed isValidIfName */
  readonly ipLines: string[];
  readonly sysctls: SysctlWrite[];
  readonly deleteEndpoints: string[];
  readonly deleteNetworks: string[];
  readonly putNetworks: NetworkRecord[];
  readonly putEndpoints: EndpointRecord[];
  readonly clearIntents: number[];
}

export interface ReconcileReport {
  readonly findings: Finding[];
  /** true when fixes were applied (false for a dry run) */
  readonly applied: boolean;
  readonly networks: number;
  readonly endpoints: number;
  readonly intents: number;
  readonly ms: number;
}

// ---------------------------------------------------------------------------------- planning

function normAddr(a: string): string {
  try {
    const c = parseCidr(a, 'address');
    return `${c.ip}/${c.prefix}`;
  } catch {
    return a;
  }
}

function safe(name: string): string {
  // Names come from our own books or the kernel; still, nothing that is not a valid interface
  // name ever reaches a script line.
  if (!isValidIfName(name)) throw new KernelError(`refusing interface name ${JSON.stringify(name.slice(0, 40))}`);
  return name;
}

/** Pure: what is wrong and how to fix it. Does not touch the kernel, the store or the books. */
export function planReconcile(input: ReconcileInput): ReconcilePlan {
  const st = new PlanState(input);
  resolveIntents(st);
  checkNetworks(st);
  checkEndpoints(st);
  findOrphans(st);
  return st.finish();
}

/** Working state of one planning run: the books as they will be, the fixes so far. */
class PlanState {
  readonly findings: Finding[] = [];
  readonly networks: Map<string, NetworkRecord>;
  readonly endpoints: Map<string, EndpointRecord>;
  readonly deleteEndpoints = new Set<string>();
  readonly deleteNetworks = new Set<string>();
  readonly putNetworks = new Map<string, NetworkRecord>();
  readonly putEndpoints = new Map<string, EndpointRecord>();
  readonly clearIntents: number[] = [];
  /** host-side veth names to delete (one link group, one RCU wait) */
  readonly vethDeletes = new Set<string>();
  readonly bridgeDeletes = new Set<string>();
  /** bridges an interrupted intent made that no booked network uses */
  readonly candidateOrphanBridges = new Set<string>();
  /** lines that create bridges (first in the script) */
  readonly early: string[] = [];
  /** addresses, enslaving, up/down, marks (after the veth removals) */
  readonly late: string[] = [];
  readonly sysctls: SysctlWrite[] = [];

  constructor(readonly input: ReconcileInput) {
    this.networks = new Map(input.networks.map((n) => [n.spec.id as string, n]));
    this.endpoints = new Map(input.endpoints.map((e) => [e.id, e]));
  }

  link(name: string): KernelLink | undefined {
    return this.input.kernel.links.get(name);
  }

  /** Carries our ownership mark: we made it. */
  ours(name: string): boolean {
    return this.link(name)?.group === this.input.ownerGroup;
  }

  note(kind: FindingKind, subject: string, detail: string): void {
    this.findings.push({ kind, subject, detail });
  }

  /** "removed" in a real run, "would remove" in a dry run. */
  act(done: string, would: string): string {
    return this.input.dryRun === true ? would : done;
  }

  unbookEndpoint(id: string): void {
    this.endpoints.delete(id);
    this.putEndpoints.delete(id);
    this.deleteEndpoints.add(id);
  }

  unbookNetwork(id: string): void {
    for (const e of [...this.endpoints.values()]) if (e.networkId === id) this.unbookEndpoint(e.id);
    this.networks.delete(id);
    this.putNetworks.delete(id);
    this.deleteNetworks.add(id);
  }

  /** Lines that give a user's bridge back: our addresses off it, down again if it was. */
  releaseUserBridge(bridge: string, addrs: readonly string[], restoreDown: boolean): void {
    const l = this.link(bridge);
    if (l === undefined || [...this.networks.values()].some((n) => n.spec.bridge === bridge)) return;
    for (const a of addrs) if (l.addrs.includes(normAddr(a))) this.late.push(`address del ${normAddr(a)} dev ${safe(bridge)}`);
    if (restoreDown && l.up) this.late.push(`link set dev ${safe(bridge)} down`);
  }

  finish(): ReconcilePlan {
    // Never delete what a booked endpoint owns (an intent may name a veth that got booked later).
    for (const e of this.endpoints.values()) this.vethDeletes.delete(e.host);
    // Script order: new bridges, then veth removals (one link group, one RCU wait), then
    // addresses/enslaving/up, then bridge removals.
    const script: string[] = [...this.early];
    if (this.vethDeletes.size > 0) {
      for (const v of this.vethDeletes) script.push(`link set dev ${safe(v)} group ${RECONCILE_LINK_GROUP}`);
      script.push(`link del group ${RECONCILE_LINK_GROUP}`);
    }
    script.push(...this.late);
    for (const b of this.bridgeDeletes) script.push(`link del dev ${safe(b)}`);
    return {
      findings: this.findings,
      ipLines: script,
      sysctls: this.sysctls,
      deleteEndpoints: [...this.deleteEndpoints],
      deleteNetworks: [...this.deleteNetworks],
      putNetworks: [...this.putNetworks.values()],
      putEndpoints: [...this.putEndpoints.values()],
      clearIntents: this.clearIntents,
    };
  }
}

/** 1. Unfinished intents, oldest first: undo creations, finish deletions. */
function resolveIntents(st: PlanState): void {
  for (const intent of [...st.input.intents].sort((a, b) => a.createdAt - b.createdAt || a.batchId - b.batchId)) {
    for (const it of intent.items) resolveIntentItem(st, it, intent.batchId);
    st.clearIntents.push(intent.batchId);
  }
}

function resolveIntentItem(st: PlanState, it: Intent['items'][number], batch: number): void {
  switch (it.kind) {
    case 'endpoint-create': {
      const booked = st.endpoints.get(it.endpointId);
      if (booked !== undefined && booked.host === it.host) {
        // Finished after all (only the intent's removal failed): make sure the row is on disk.
        st.putEndpoints.set(booked.id, booked);
        return;
      }
      // Only a veth with our mark: the name may have been someone else's all along ("File exists").
      if (st.ours(it.host)) st.vethDeletes.add(it.host);
      st.note('intent-undone', it.endpointId, `endpoint creation was interrupted (batch ${batch}): never booked; its veth ${it.host} ${st.act('is removed if present', 'would be removed if present')}`);
      return;
    }
    case 'endpoint-delete': {
      const booked = st.endpoints.get(it.endpointId);
      if (booked !== undefined) {
        st.unbookEndpoint(it.endpointId);
        st.note('intent-finished', it.endpointId, `endpoint deletion was interrupted (batch ${batch}): ${st.act('finished', 'would be finished')} (veth ${booked.host} removed, endpoint unbooked)`);
      }
      if ((booked?.host === it.host && st.link(it.host) !== undefined) || st.ours(it.host)) st.vethDeletes.add(it.host);
      return;
    }
    case 'ports-program':
      st.note('intent-undone', it.endpointId, `port programming was interrupted (batch ${batch}): the endpoint's rules ${st.act('are', 'would be')} rolled back to the books`);
      return;
    case 'ports-revoke': {
      const booked = st.endpoints.get(it.endpointId);
      if (booked !== undefined && booked.mappings.length > 0) {
        const next: EndpointRecord = { ...booked, mappings: [] };
        st.endpoints.set(booked.id, next);
        st.putEndpoints.set(booked.id, next);
        st.note('intent-finished', it.endpointId, `port revocation was interrupted (batch ${batch}): ${st.act('finished', 'would be finished')} (${booked.mappings.length} binding(s) released)`);
      }
      return;
    }
    case 'network-create': {
      const bookedNet = st.networks.get(it.networkId);
      if (bookedNet !== undefined) {
        st.putNetworks.set(bookedNet.spec.id, bookedNet);
        return;
      }
      const usedByOther = [...st.networks.values()].some((n) => n.spec.bridge === it.bridge);
      // An intent that does not say the bridge was ours (older books) counts as the user's.
      if (it.createdBridge === true) {
        if (!usedByOther && st.ours(it.bridge)) st.candidateOrphanBridges.add(it.bridge);
      } else {
        st.releaseUserBridge(it.bridge, it.addrs ?? [], it.restoreDown === true);
      }
      st.note('intent-undone', it.networkId, `network creation was interrupted (batch ${batch}): never booked; ${it.createdBridge === true ? `bridge ${it.bridge} ${st.act('removed if present', 'would be removed if present')}` : `addresses we added to ${it.bridge} ${st.act('removed', 'would be removed')}`}`);
      return;
    }
    case 'network-delete': {
      const booked = st.networks.get(it.networkId);
      if (booked === undefined) {
        if (it.createdBridge === true && st.ours(it.bridge)) st.candidateOrphanBridges.add(it.bridge);
        return;
      }
      const eps = [...st.endpoints.values()].filter((e) => e.networkId === it.networkId);
      for (const e of eps) if (st.link(e.host) !== undefined) st.vethDeletes.add(e.host);
      st.unbookNetwork(it.networkId);
      if (booked.createdBridge) {
        if (st.link(booked.spec.bridge) !== undefined) st.bridgeDeletes.add(booked.spec.bridge);
      } else {
        st.releaseUserBridge(booked.spec.bridge, booked.addedAddrs, booked.restoreDown === true);
      }
      st.note('intent-finished', it.networkId, `network deletion was interrupted (batch ${batch}): ${st.act('finished', 'would be finished')} (${eps.length} endpoint(s), bridge ${booked.spec.bridge})`);
      return;
    }
  }
}

/** 2. Booked networks: bridge present, a bridge, up, addressed, marked if we made it. */
function checkNetworks(st: PlanState): void {
  const mark = st.input.ownerGroup;
  for (const n of st.networks.values()) {
    const br = n.spec.bridge;
    const link = st.link(br);
    if (link === undefined) {
      const rec: NetworkRecord = n.createdBridge ? n : { ...n, createdBridge: true, addedAddrs: [] };
      if (!n.createdBridge) st.putNetworks.set(n.spec.id, rec);
      st.early.push(`link add name ${safe(br)} group ${mark} address ${n.spec.bridgeMac}${n.spec.mtu > 0 ? ` mtu ${n.spec.mtu}` : ''} type bridge`);
      st.sysctls.push(...networkSysctls(n.spec));
      for (const a of bridgeAddrs(n.spec)) st.late.push(`address add ${normAddr(a)} dev ${br}`);
      st.late.push(`link set dev ${br} up`);
      st.note('bridge-missing', br, `bridge of network ${n.spec.id} is missing: ${st.act('re-created', 'would be re-created')} with its addresses${n.createdBridge ? '' : ' (the user-made bridge was gone; it is ours now and goes with the network)'}`);
      continue;
    }
    if (link.kind !== 'bridge') {
      st.note('bridge-not-a-bridge', br, `interface ${br} of network ${n.spec.id} is a ${link.kind ?? 'plain device'}, not a bridge: cannot fix, remove it by hand`);
      continue;
    }
    if (n.createdBridge && link.group !== mark) {
      st.late.push(`link set dev ${safe(br)} group ${mark}`);
      st.note('ownership-mark', br, `bridge of network ${n.spec.id} lacks our ownership mark (made by an older version): ${st.act('marked', 'would be marked')}`);
    }
    const wanted = n.createdBridge ? bridgeAddrs(n.spec) : n.addedAddrs;
    for (const a of wanted) {
      const na = normAddr(a);
      if (!link.addrs.includes(na)) {
        st.late.push(`address add ${na} dev ${safe(br)}`);
        st.note('address-missing', br, `address ${na} of network ${n.spec.id} is missing: ${st.act('added', 'would be added')}`);
      }
    }
    if (!link.up) {
      st.late.push(`link set dev ${safe(br)} up`);
      st.note('bridge-down', br, `bridge of network ${n.spec.id} is down: ${st.act('set up', 'would be set up')}`);
    }
  }
}

/** 3. Booked endpoints: host veth present, on its bridge, marked. */
function checkEndpoints(st: PlanState): void {
  for (const e of [...st.endpoints.values()]) {
    const net = st.networks.get(e.networkId);
    const link = st.link(e.host);
    if (net === undefined) {
      st.unbookEndpoint(e.id);
      if (link !== undefined) st.vethDeletes.add(e.host);
      st.note('orphan-veth', e.id, `endpoint ${e.id} belongs to no booked network: ${st.act('unbooked, veth removed', 'would be unbooked, veth removed')} (${e.host})`);
      continue;
    }
    if (link === undefined) {
      st.unbookEndpoint(e.id);
      st.note('endpoint-vanished', e.id, `veth ${e.host} of endpoint ${e.id} is gone (its container's namespace died): endpoint ${st.act('unbooked', 'would be unbooked')}${e.mappings.length > 0 ? `, ${e.mappings.length} binding(s) released` : ''}`);
      continue;
    }
    if (link.group !== st.input.ownerGroup) st.late.push(`link set dev ${safe(e.host)} group ${st.input.ownerGroup}`);
    if (link.master !== net.spec.bridge) {
      st.late.push(`link set dev ${safe(e.host)} master ${safe(net.spec.bridge)}`);
      st.late.push(`link set dev ${e.host} up`);
      st.note('veth-detached', e.host, `veth of endpoint ${e.id} is ${link.master === null ? 'on no bridge' : `on ${link.master}`}: ${st.act('put back', 'would be put back')} on ${net.spec.bridge}`);
    }
  }
}

/** 4. Interfaces with our mark that the books do not explain. Names never count. */
function findOrphans(st: PlanState): void {
  const booked = new Set<string>([...st.networks.values()].map((n) => n.spec.bridge));
  const owned = new Set<string>();
  for (const e of st.endpoints.values()) owned.add(e.host);
  const orphanBridges = new Set<string>();
  for (const l of st.input.kernel.links.values()) {
    if (l.group !== st.input.ownerGroup) continue;
    if (l.kind === 'bridge' && !booked.has(l.name)) orphanBridges.add(l.name);
    if (l.kind === 'veth' && !owned.has(l.name) && !st.vethDeletes.has(l.name)) {
      st.vethDeletes.add(l.name);
      st.note('orphan-veth', l.name, `veth with our mark owned by no booked endpoint${l.master === null ? '' : ` (on ${l.master})`}: ${st.act('removed', 'would be removed')}`);
    }
  }
  for (const b of st.candidateOrphanBridges) if (!booked.has(b)) orphanBridges.add(b);
  for (const b of st.bridgeDeletes) orphanBridges.delete(b); // already going, already reported
  for (const b of orphanBridges) {
    st.bridgeDeletes.add(b);
    st.note('orphan-bridge', b, `bridge with our mark used by no booked network: ${st.act('removed', 'would be removed')}`);
  }
}

/** Pure: parse `ip -j -d addr show`. */
export function parseKernelLinks(json: string): KernelSnapshot {
  const arr = JSON.parse(json === '' ? '[]' : json) as Array<{
    ifname?: unknown;
    master?: unknown;
    flags?: unknown;
    group?: unknown;
    linkinfo?: { info_kind?: unknown };
    addr_info?: Array<{ local?: unknown; prefixlen?: unknown }>;
  }>;
  const links = new Map<string, KernelLink>();
  for (const l of arr) {
    if (typeof l.ifname !== 'string') continue;
    const addrs = (l.addr_info ?? []).flatMap((a) => (typeof a.local === 'string' && typeof a.prefixlen === 'number' ? [normAddr(`${a.local}/${a.prefixlen}`)] : []));
    links.set(l.ifname, {
      name: l.ifname,
      kind: typeof l.linkinfo?.info_kind === 'string' ? l.linkinfo.info_kind : null,
      master: typeof l.master === 'string' ? l.master : null,
      up: Array.isArray(l.flags) && l.flags.includes('UP'),
      addrs,
      group: parseGroup(l.group),
    });
  }
  return { links };
}

/** `ip -j` prints a link group as a number, or as its name from /etc/iproute2/group ("default"). */
function parseGroup(v: unknown): number {
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : 0;
  return Number.isSafeInteger(n) ? n : 0;
}

const TAG_RE = /--comment "?(bb:(?:net|ep)=[A-Za-z0-9_-]+)"?/;

function countTags(lines: Iterable<string>): Map<string, number> {
  const out = new Map<string, number>();
  for (const l of lines) {
    const m = TAG_RE.exec(l);
    const tag = m?.[1] ?? '(untagged)';
    out.set(tag, (out.get(tag) ?? 0) + 1);
  }
  return out;
}

/**
 * Pure: how the rules in our chains (from `iptables-save`) differ from what the books want,
 * counted per owner tag. Empty when they agree and every hook rule is present exactly once.
 */
export function diffFirewall(save: string, books: Books, family: 4 | 6, dryRun = false): Finding[] {
  const have = countTags(save.split('\n').filter((l) => l.startsWith('-A BB-')));
  // Inserted rules (internal networks' drops, "-I CHAIN 1 …") show up as "-A" in iptables-save.
  const want = countTags(desiredRules(books, family).filter((r) => r.line.startsWith('-A ') || r.line.startsWith('-I ')).map((r) => r.line));
  const fix = dryRun ? 'chains would be rewritten from the books' : 'chains rewritten from the books';
  const out: Finding[] = [];
  for (const tag of new Set([...have.keys(), ...want.keys()])) {
    const h = have.get(tag) ?? 0;
    const w = want.get(tag) ?? 0;
    if (h === w) continue;
    const what = w === 0 ? 'no booking explains them' : h < w ? 'some are missing' : 'some are extra';
    out.push({ kind: 'firewall-drift', subject: tag, detail: `IPv${family}: ${h} rule(s) tagged ${tag} in our chains, the books want ${w} (${what}): ${fix}` });
  }
  const hooks = readHookState(save);
  if (hooks.forwardJumps !== 1 || hooks.preroutingJumps !== 1 || hooks.outputJumps !== 1 || hooks.postroutingJumps !== 1) {
    out.push({ kind: 'firewall-drift', subject: 'hooks', detail: `IPv${family}: the jumps into our chains are not each present exactly once: ${dryRun ? 'would be restored' : 'restored'}` });
  }
  return out;
}

// ------------------------------------------------------------------------------ kernel part

export interface ReconcileTarget {
  readonly books: Books;
  readonly store: StateStore;
  /** only exec() is used */
  readonly exec: Pick<KernelExecutor, 'exec'>;
  readonly tools: ToolPaths;
  readonly ports: PortAllocator | null;
  readonly log: Logger | null;
  /** our ownership mark (StateStore.ownerGroup) */
  readonly ownerGroup: number;
}

export interface ReconcileOptions {
  /** report only; change nothing */
  readonly dryRun?: boolean;
}

async function readKernel(t: ReconcileTarget): Promise<KernelSnapshot> {
  const r = await t.exec.exec(t.tools.ip, ['-j', '-d', 'addr', 'show']);
  if (r.exitCode !== 0) throw new KernelError(`cannot list interfaces: ${r.stderr.trim() || r.spawnError || 'ip failed'}`);
  return parseKernelLinks(r.stdout.trim());
}

/**
 * Compare and fix. The caller holds the driver's exclusive gate (or owns the books alone, as the
 * offline CLI does): no batch may run meanwhile.
 */
export async function reconcile(t: ReconcileTarget, opts: ReconcileOptions = {}): Promise<ReconcileReport> {
  const t0 = performance.now();
  const intents = t.store.loadIntents();
  const kernel = await readKernel(t);
  const plan = planReconcile({
    networks: [...t.books.networks.values()],
    endpoints: [...t.books.endpoints.values()],
    intents,
    kernel,
    ownerGroup: t.ownerGroup,
    dryRun: opts.dryRun === true,
  });
  const findings = [...plan.findings];
  const counts = { networks: t.books.networks.size, endpoints: t.books.endpoints.size, intents: intents.length };

  if (opts.dryRun) {
    // Firewall drift as the books stand now (the plan's book changes would add to it).
    for (const family of [4, 6] as const) {
      const save = await t.exec.exec(family === 4 ? t.tools.iptablesSave : t.tools.ip6tablesSave, []);
      if (save.exitCode === 0) findings.push(...diffFirewall(save.stdout, t.books, family, true));
    }
    return { findings, applied: false, ...counts, ms: performance.now() - t0 };
  }

  // Kernel first, books after: a crash here leaves the intents in place for the next run.
  if (plan.ipLines.length > 0) {
    const r = await t.exec.exec(t.tools.ip, ['-force', '-batch', '-'], `${plan.ipLines.join('\n')}\n`);
    if (r.spawnError !== null) throw new KernelError(`ip: ${r.spawnError}`);
    const parsed = parseIpErrors(r.stderr);
    for (const f of parsed.failures) {
      // Already-done outcomes are fine: the kernel moved on between the snapshot and now.
      if (/Cannot find device|No such device|File exists|Cannot assign requested address/i.test(f.message)) continue;
      findings.push({ kind: 'error', subject: plan.ipLines[f.line - 1] ?? `line ${f.line}`, detail: f.message });
    }
    if (parsed.unattributed !== '') findings.push({ kind: 'error', subject: 'ip -batch', detail: parsed.unattributed });
  }
  for (const s of plan.sysctls) {
    const err = await writeSysctl(s, t.tools.sysctlDir);
    if (err !== null) findings.push({ kind: 'error', subject: s.path, detail: err });
  }

  const changes: BookChanges = {
    putNetworks: plan.putNetworks,
    deleteNetworks: plan.deleteNetworks,
    putEndpoints: plan.putEndpoints,
    deleteEndpoints: plan.deleteEndpoints,
    clearIntents: plan.clearIntents,
  };
  const booksChanged = plan.putNetworks.length + plan.deleteNetworks.length + plan.putEndpoints.length + plan.deleteEndpoints.length > 0;
  if (booksChanged || plan.clearIntents.length > 0) {
    t.store.commit(changes);
    for (const id of plan.deleteEndpoints) {
      t.ports?.release(id);
      t.books.deleteEndpoint(id);
    }
    for (const id of plan.deleteNetworks) t.books.deleteNetwork(id);
    for (const n of plan.putNetworks) t.books.putNetwork(n);
    for (const e of plan.putEndpoints) {
      const old = t.books.endpoints.get(e.id);
      if (old !== undefined && old.mappings.length > 0 && e.mappings.length === 0) t.ports?.release(e.id);
      t.books.putEndpoint(e);
    }
  }

  // Firewall: compare our chains with the books as they are now; rewrite them when they differ.
  let drift = false;
  for (const family of [4, 6] as const) {
    const save = await t.exec.exec(family === 4 ? t.tools.iptablesSave : t.tools.ip6tablesSave, []);
    if (save.exitCode !== 0) {
      findings.push({ kind: 'error', subject: `iptables-save (IPv${family})`, detail: save.stderr.trim() || save.spawnError || 'failed' });
      continue;
    }
    const d = diffFirewall(save.stdout, t.books, family);
    if (d.length > 0) drift = true;
    findings.push(...d);
  }
  if (drift || booksChanged) {
    try {
      await syncFirewall(t.exec as KernelExecutor, t.tools, t.books);
    } catch (err) {
      findings.push({ kind: 'error', subject: 'firewall', detail: err instanceof Error ? err.message : String(err) });
    }
  }
  const report: ReconcileReport = { findings, applied: true, ...counts, ms: performance.now() - t0 };
  if (t.log !== null && findings.length > 0) t.log.warn({ findings }, `reconcile: ${findings.length} finding(s)`);
  return report;
}

/** One line per finding, for the CLI. */
export function formatReport(r: ReconcileReport): string {
  const head = `books: ${r.networks} network(s), ${r.endpoints} endpoint(s), ${r.intents} unfinished intent(s); ${r.findings.length === 0 ? 'kernel and books agree' : `${r.findings.length} finding(s)${r.applied ? ', fixed' : ' (dry run: nothing changed)'}`} (${Math.round(r.ms)} ms)`;
  return [head, ...r.findings.map((f) => `${f.kind} ${f.subject}: ${f.detail}`)].join('\n') + '\n';
}

/** Reconcile a running driver: waits for in-flight work, holds off new work while it runs. */
export async function reconcileDriver(driver: Driver, opts: ReconcileOptions = {}): Promise<ReconcileReport> {
  const release = await driver.gate.acquireExclusive();
  try {
    // A write-behind deletion in flight would look like an unfinished intent and an orphan veth.
    await driver.settleDeferred();
    return await reconcile(driver.reconcileTarget(), opts);
  } finally {
    release();
  }
}
