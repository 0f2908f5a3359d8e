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
//  - Orphans: a veth named like ours (veth + 7 hex) on one of our bridges, or named by an
//    unfinished intent, that no booked endpoint owns; a bridge named bb-* (our default names) or
//    created by an unfinished intent that no booked network uses. One plugin instance per
//    network namespace owns the bb-* names.
//  - Rules: our chains are rewritten from the books (syncFirewall) whenever the rules in them,
//    counted per owner tag (bb:net=… / bb:ep=…), differ from what the books want.
import type { Logger } from 'pino';
import type { SysctlWrite } from '../batching/ops.js';
import { parseIpErrors } from '../batching/plan-ip.js';
import { readHookState } from '../batching/plan-firewall.js';
import { parseCidr } from '../domain/addr.js';
import { isValidIfName, VETH_NAME_RE } from '../domain/names.js';
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

/** Default bridge names (bb-<12 chars of the network id>): ours by construction. */
const OUR_BRIDGE_RE = /^bb-[A-Za-z0-9_-]{1,12}$/;

// ------------------------------------------------------------------------------------- input

export interface KernelLink {
  readonly name: string;
  readonly kind: string | null;
  readonly master: string | null;
  readonly up: boolean;
  /** "ip/prefix", canonical */
  readonly addrs: readonly string[];
}

export interface KernelSnapshot {
  readonly links: ReadonlyMap<string, KernelLink>;
}

export interface ReconcileInput {
  readonly networks: readonly NetworkRecord[];
  readonly endpoints: readonly EndpointRecord[];
  readonly intents: readonly Intent[];
  readonly kernel: KernelSnapshot;
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
  const { kernel } = input;
  const findings: Finding[] = [];
  const note = (kind: FindingKind, subject: string, detail: string): void => void findings.push({ kind, subject, detail });

  // Books as they will be once the intents are resolved.
  const networks = new Map(input.networks.map((n) => [n.spec.id as string, n]));
  const endpoints = new Map(input.endpoints.map((e) => [e.id, e]));
  const deleteEndpoints = new Set<string>();
  const deleteNetworks = new Set<string>();
  const putNetworks = new Map<string, NetworkRecord>();
  const putEndpoints = new Map<string, EndpointRecord>();
  const clearIntents: number[] = [];

  const vethDeletes = new Set<string>(); // host-side (or lone) veth names to delete
  const bridgeDeletes = new Set<string>();
  const addrRemovals: Array<[string, string]> = []; // [bridge, addr] on user bridges
  const candidateOrphanBridges = new Set<string>(); // bridges an intent created and nobody books

  const unbookEndpoint = (id: string): void => {
    endpoints.delete(id);
    putEndpoints.delete(id);
    deleteEndpoints.add(id);
  };
  const unbookNetwork = (id: string): void => {
    for (const e of [...endpoints.values()]) if (e.networkId === id) unbookEndpoint(e.id);
    networks.delete(id);
    putNetworks.delete(id);
    deleteNetworks.add(id);
  };

  // 1. Unfinished intents (oldest first).
  for (const intent of [...input.intents].sort((a, b) => a.createdAt - b.createdAt || a.batchId - b.batchId)) {
    for (const it of intent.items) {
      switch (it.kind) {
        case 'endpoint-create': {
          const booked = endpoints.get(it.endpointId);
          if (booked !== undefined && booked.host === it.host) {
            // Finished after all (only the intent's removal failed): make sure the row is on disk.
            putEndpoints.set(booked.id, booked);
            break;
          }
          // Deleting either end removes the pair; the peer alone only if the host end is gone.
          const end = kernel.links.has(it.host) ? it.host : kernel.links.has(it.peer) ? it.peer : null;
          if (end !== null && isValidIfName(end)) vethDeletes.add(end);
          note('intent-undone', it.endpointId, `endpoint creation was interrupted (batch ${intent.batchId}): never booked; its veth ${it.host} is removed if present`);
          break;
        }
        case 'endpoint-delete': {
          const booked = endpoints.get(it.endpointId);
          if (booked !== undefined) {
            unbookEndpoint(it.endpointId);
            note('intent-finished', it.endpointId, `endpoint deletion was interrupted (batch ${intent.batchId}): finished (veth ${booked.host} removed, endpoint unbooked)`);
          }
          if (kernel.links.has(it.host) && isValidIfName(it.host)) vethDeletes.add(it.host);
          break;
        }
        case 'ports-program': {
          note('intent-undone', it.endpointId, `port programming was interrupted (batch ${intent.batchId}): the endpoint's rules are rolled back to the books`);
          break;
        }
        case 'ports-revoke': {
          const booked = endpoints.get(it.endpointId);
          if (booked !== undefined && booked.mappings.length > 0) {
            const next: EndpointRecord = { ...booked, mappings: [] };
            endpoints.set(booked.id, next);
            putEndpoints.set(booked.id, next);
            note('intent-finished', it.endpointId, `port revocation was interrupted (batch ${intent.batchId}): finished (${booked.mappings.length} binding(s) released)`);
          }
          break;
        }
        case 'network-create': {
          const bookedNet = networks.get(it.networkId);
          if (bookedNet !== undefined) {
            putNetworks.set(bookedNet.spec.id, bookedNet);
            break;
          }
          // Older intents did not say whether the bridge was ours: only a default name is.
          const created = it.createdBridge ?? OUR_BRIDGE_RE.test(it.bridge);
          const usedByOther = [...networks.values()].some((n) => n.spec.bridge === it.bridge);
          if (created && !usedByOther) {
            if (kernel.links.has(it.bridge)) candidateOrphanBridges.add(it.bridge);
          } else if (!created && !usedByOther && kernel.links.has(it.bridge)) {
            for (const a of it.addrs ?? []) if (kernel.links.get(it.bridge)?.addrs.includes(normAddr(a))) addrRemovals.push([it.bridge, a]);
          }
          note('intent-undone', it.networkId, `network creation was interrupted (batch ${intent.batchId}): never booked; ${created ? `bridge ${it.bridge} removed if present` : `addresses we added to ${it.bridge} removed`}`);
          break;
        }
        case 'network-delete': {
          const booked = networks.get(it.networkId);
          if (booked !== undefined) {
            const eps = [...endpoints.values()].filter((e) => e.networkId === it.networkId);
            for (const e of eps) if (kernel.links.has(e.host)) vethDeletes.add(e.host);
            if (booked.createdBridge) {
              if (kernel.links.has(booked.spec.bridge)) bridgeDeletes.add(booked.spec.bridge);
            } else if (kernel.links.has(booked.spec.bridge)) {
              for (const a of booked.addedAddrs) if (kernel.links.get(booked.spec.bridge)?.addrs.includes(normAddr(a))) addrRemovals.push([booked.spec.bridge, a]);
            }
            unbookNetwork(it.networkId);
            note('intent-finished', it.networkId, `network deletion was interrupted (batch ${intent.batchId}): finished (${eps.length} endpoint(s), bridge ${booked.spec.bridge})`);
          } else if ((it.createdBridge ?? OUR_BRIDGE_RE.test(it.bridge)) && kernel.links.has(it.bridge)) {
            candidateOrphanBridges.add(it.bridge);
          }
          break;
        }
      }
    }
    clearIntents.push(intent.batchId);
  }

  // 2. Booked networks: bridge present, a bridge, up, addressed.
  const bookedBridges = new Map<string, NetworkRecord>();
  for (const n of networks.values()) bookedBridges.set(n.spec.bridge, n);
  const lines: string[] = [];
  const sysctls: SysctlWrite[] = [];
  const late: string[] = [];
  const recreated = new Set<string>();
  for (const n of networks.values()) {
    const br = n.spec.bridge;
    const link = kernel.links.get(br);
    if (link === undefined) {
      const rec: NetworkRecord = n.createdBridge ? n : { ...n, createdBridge: true, addedAddrs: [] };
      if (!n.createdBridge) putNetworks.set(n.spec.id, rec);
      lines.push(`link add name ${safe(br)} address ${n.spec.bridgeMac}${n.spec.mtu > 0 ? ` mtu ${n.spec.mtu}` : ''} type bridge`);
      recreated.add(br);
      sysctls.push(...networkSysctls(n.spec));
      for (const a of bridgeAddrs(n.spec)) late.push(`address add ${normAddr(a)} dev ${br}`);
      late.push(`link set dev ${br} up`);
      note('bridge-missing', br, `bridge of network ${n.spec.id} is missing: re-created with its addresses${n.createdBridge ? '' : ' (the user-made bridge was gone; it is ours now and goes with the network)'}`);
      continue;
    }
    if (link.kind !== 'bridge') {
      note('bridge-not-a-bridge', br, `interface ${br} of network ${n.spec.id} is a ${link.kind ?? 'plain device'}, not a bridge: cannot fix, remove it by hand`);
      continue;
    }
    const wanted = n.createdBridge ? bridgeAddrs(n.spec) : n.addedAddrs;
    for (const a of wanted) {
      const na = normAddr(a);
      if (!link.addrs.includes(na)) {
        late.push(`address add ${na} dev ${safe(br)}`);
        note('address-missing', br, `address ${na} of network ${n.spec.id} is missing: added`);
      }
    }
    if (!link.up) {
      late.push(`link set dev ${safe(br)} up`);
      note('bridge-down', br, `bridge of network ${n.spec.id} is down: set up`);
    }
  }

  // 3. Booked endpoints: host veth present and on its bridge.
  for (const e of [...endpoints.values()]) {
    const net = networks.get(e.networkId);
    if (net === undefined) {
      unbookEndpoint(e.id);
      if (kernel.links.has(e.host)) vethDeletes.add(e.host);
      note('orphan-veth', e.id, `endpoint ${e.id} belongs to no booked network: unbooked, veth ${e.host} removed`);
      continue;
    }
    const link = kernel.links.get(e.host);
    if (link === undefined) {
      unbookEndpoint(e.id);
      note('endpoint-vanished', e.id, `veth ${e.host} of endpoint ${e.id} is gone (its container's namespace died): endpoint unbooked${e.mappings.length > 0 ? `, ${e.mappings.length} binding(s) released` : ''}`);
      continue;
    }
    if (link.master !== net.spec.bridge) {
      late.push(`link set dev ${safe(e.host)} master ${safe(net.spec.bridge)}`);
      late.push(`link set dev ${e.host} up`);
      note('veth-detached', e.host, `veth of endpoint ${e.id} is ${link.master === null ? 'on no bridge' : `on ${link.master}`}: put back on ${net.spec.bridge}`);
    }
  }

  // 4. Orphans.
  const ownedNames = new Set<string>();
  for (const e of endpoints.values()) {
    ownedNames.add(e.host);
    ownedNames.add(e.peer);
  }
  const orphanBridges = new Set<string>();
  for (const l of kernel.links.values()) {
    if (l.kind === 'bridge' && OUR_BRIDGE_RE.test(l.name) && !bookedBridges.has(l.name)) orphanBridges.add(l.name);
  }
  for (const b of candidateOrphanBridges) if (!bookedBridges.has(b)) orphanBridges.add(b);
  for (const b of bridgeDeletes) orphanBridges.delete(b); // already going, already reported
  const ourBridges = new Set<string>([...bookedBridges.keys(), ...orphanBridges, ...bridgeDeletes]);
  for (const l of kernel.links.values()) {
    if (!VETH_NAME_RE.test(l.name) || ownedNames.has(l.name) || vethDeletes.has(l.name)) continue;
    if (l.kind !== null && l.kind !== 'veth') continue;
    if (l.master !== null && ourBridges.has(l.master)) {
      vethDeletes.add(l.name);
      note('orphan-veth', l.name, `veth on bridge ${l.master} owned by no booked endpoint: removed`);
    }
  }
  // Never delete what a booked endpoint owns (an intent may name a veth that got booked later).
  for (const n of ownedNames) vethDeletes.delete(n);
  for (const b of orphanBridges) {
    bridgeDeletes.add(b);
    note('orphan-bridge', b, `bridge ${b} belongs to no booked network: removed`);
  }
  for (const [b, a] of addrRemovals) if (!bookedBridges.has(b)) late.push(`address del ${normAddr(a)} dev ${safe(b)}`);

  // Script order: new bridges, then veth removals (one link group, one RCU wait), then
  // addresses/enslaving/up, then bridge removals.
  const script: string[] = [...lines];
  if (vethDeletes.size > 0) {
    for (const v of vethDeletes) script.push(`link set dev ${safe(v)} group ${RECONCILE_LINK_GROUP}`);
    script.push(`link del group ${RECONCILE_LINK_GROUP}`);
  }
  script.push(...late);
  for (const b of bridgeDeletes) script.push(`link del dev ${safe(b)}`);

  return {
    findings,
    ipLines: script,
    sysctls,
    deleteEndpoints: [...deleteEndpoints],
    deleteNetworks: [...deleteNetworks],
    putNetworks: [...putNetworks.values()],
    putEndpoints: [...putEndpoints.values()],
    clearIntents,
  };
}

/** Pure: parse `ip -j -d addr show`. */
export function parseKernelLinks(json: string): KernelSnapshot {
  const arr = JSON.parse(json === '' ? '[]' : json) as Array<{
    ifname?: unknown;
    master?: unknown;
    flags?: unknown;
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
    });
  }
  return { links };
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
export function diffFirewall(save: string, books: Books, family: 4 | 6): Finding[] {
  const have = countTags(save.split('\n').filter((l) => l.startsWith('-A BB-')));
  const want = countTags(desiredRules(books, family).filter((r) => r.line.startsWith('-A ')).map((r) => r.line));
  const out: Finding[] = [];
  for (const tag of new Set([...have.keys(), ...want.keys()])) {
    const h = have.get(tag) ?? 0;
    const w = want.get(tag) ?? 0;
    if (h === w) continue;
    const what = w === 0 ? 'no booking explains them' : h < w ? 'some are missing' : 'some are extra';
    out.push({ kind: 'firewall-drift', subject: tag, detail: `IPv${family}: ${h} rule(s) tagged ${tag} in our chains, the books want ${w} (${what}): chains rewritten from the books` });
  }
  const hooks = readHookState(save);
  if (hooks.forwardJumps !== 1 || hooks.preroutingJumps !== 1 || hooks.outputJumps !== 1 || hooks.postroutingJumps !== 1) {
    out.push({ kind: 'firewall-drift', subject: 'hooks', detail: `IPv${family}: the jumps into our chains are not each present exactly once: restored` });
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
  });
  const findings = [...plan.findings];
  const counts = { networks: t.books.networks.size, endpoints: t.books.endpoints.size, intents: intents.length };

  if (opts.dryRun) {
    // Firewall drift as the books stand now (the plan's book changes would add to it).
    for (const family of [4, 6] as const) {
      const save = await t.exec.exec(family === 4 ? t.tools.iptablesSave : t.tools.ip6tablesSave, []);
      if (save.exitCode === 0) findings.push(...diffFirewall(save.stdout, t.books, family));
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
