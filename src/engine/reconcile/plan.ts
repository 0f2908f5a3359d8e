// Reconciliation, the pure half: books + unfinished intents + a kernel snapshot → findings and
// the fixes (one `ip -force -batch` script rendered from the ip vocabulary, sysctls, book
// changes). Unit-tested without a kernel; run.ts reads the kernel and applies the plan.
//
// Reconciliation makes the kernel match the books, and the books match what the runtime was told.
//
// Runs at start (before the socket listens), on a timer and on demand (`batchbridge reconcile`),
// always under the driver's exclusive gate, so no batch runs beside it. Two parts:
//
//  - planReconcile() (here): pure.
//  - reconcile() (run.ts): reads the kernel (`ip -j -d addr show`, the firewall), applies the
//    plan, commits the book changes, then rewrites our firewall rules when they differ.
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
import { bridgeAddrs, networkSysctls } from '../../domain/network-setup.js';
import { normAddr } from '../../ip/read.js';
import type { EndpointRecord, NetworkRecord } from '../../state/records.js';
import { resolveIntents } from './intents.js';
import { PlanState } from './plan-state.js';
import { ABANDONED_AFTER_MS, type ReconcileInput, type ReconcilePlan } from './types.js';

export type { KernelLink } from '../../ip/read.js';
export { RECONCILE_LINK_GROUP } from '../../ip/ops.js';
export * from './types.js';

// ---------------------------------------------------------------------------------- planning


/** Pure: what is wrong and how to fix it. Does not touch the kernel, the store or the books. */
export function planReconcile(input: ReconcileInput): ReconcilePlan {
  const st = new PlanState(input);
  resolveIntents(st);
  checkNetworks(st);
  checkEndpoints(st);
  findOrphans(st);
  return st.finish();
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
      st.early.push({ op: 'bridge-add', name: br, group: mark, mac: n.spec.bridgeMac, mtu: n.spec.mtu });
      st.sysctls.push(...networkSysctls(n.spec));
      for (const a of bridgeAddrs(n.spec)) st.late.push({ op: 'addr-add', addr: a, dev: br });
      st.late.push({ op: 'link-up', dev: br });
      st.note('bridge-missing', br, `bridge of network ${n.spec.id} is missing: ${st.act('re-created', 'would be re-created')} with its addresses${n.createdBridge ? '' : ' (the user-made bridge was gone; it is ours now and goes with the network)'}`);
      continue;
    }
    if (link.kind !== 'bridge') {
      st.note('bridge-not-a-bridge', br, `interface ${br} of network ${n.spec.id} is a ${link.kind ?? 'plain device'}, not a bridge: cannot fix, remove it by hand`);
      continue;
    }
    if (n.createdBridge && link.group !== mark) {
      st.late.push({ op: 'set-group', dev: br, group: mark });
      st.note('ownership-mark', br, `bridge of network ${n.spec.id} lacks our ownership mark (made by an older version): ${st.act('marked', 'would be marked')}`);
    }
    const wanted = n.createdBridge ? bridgeAddrs(n.spec) : n.addedAddrs;
    for (const a of wanted) {
      const na = normAddr(a);
      if (!link.addrs.includes(na)) {
        st.late.push({ op: 'addr-add', addr: na, dev: br });
        st.note('address-missing', br, `address ${na} of network ${n.spec.id} is missing: ${st.act('added', 'would be added')}`);
      }
    }
    if (!link.up) {
      st.late.push({ op: 'link-up', dev: br });
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
    if (abandoned(st, e)) continue;
    if (link.group !== st.input.ownerGroup) st.late.push({ op: 'set-group', dev: e.host, group: st.input.ownerGroup });
    if (link.master !== net.spec.bridge) {
      st.late.push({ op: 'set-master', dev: e.host, master: net.spec.bridge });
      st.late.push({ op: 'link-up', dev: e.host });
      st.note('veth-detached', e.host, `veth of endpoint ${e.id} is ${link.master === null ? 'on no bridge' : `on ${link.master}`}: ${st.act('put back', 'would be put back')} on ${net.spec.bridge}`);
    }
  }
}

/** Whether a parked endpoint has waited past ABANDONED_AFTER_MS (then it is removed). */
function abandoned(st: PlanState, e: EndpointRecord): boolean {
  const { joined, parkedSince, now } = st.input;
  if (st.link(e.peer) === undefined || joined?.has(e.id) === true || parkedSince === undefined || now === undefined) return false;
  const since = parkedSince.get(e.id);
  if (since === undefined || now - since < ABANDONED_AFTER_MS) {
    st.parked.push(e.id);
    return false;
  }
  st.unbookEndpoint(e.id);
  st.vethDeletes.add(e.host);
  st.note('endpoint-abandoned', e.id, `endpoint ${e.id}'s container end has been in our namespace, unjoined, for ${Math.round((now - since) / 60_000)} min (its DeleteEndpoint was lost): ${st.act('removed with its veth and ports', 'would be removed with its veth and ports')}`);
  return true;
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

