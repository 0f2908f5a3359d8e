// Pure planner: the ip operations of many requests → one `ip -force -batch -` script plus, for
// every line, which operation owns it and which failures mean "already done".
//
// Facts this relies on (measured on this kind of machine; docs/architecture.md, "Batching"):
// - `ip -force -batch` goes on after a failing line and reports `Command failed -:N`, N counting
//   every physical line; so each line is owned by exactly one operation.
// - Deleting a veth costs an RCU grace period (~17 ms); putting all doomed veths into one link
//   group and deleting the group pays that once per batch.
// - A syntax error (not a kernel error) makes ip exit at once, even with -force. Every value in a
//   script is checked as it is rendered (lines.ts), so that can only happen when a device named
//   as `master` vanished behind our back; apply.ts then verifies each op against the kernel.
import { classifyIpError, type IpFailure, type Tolerance } from './errors.js';
import { renderIpScript, type IpLine } from './lines.js';
import type { IpOp } from './ops.js';

export interface LineOwner {
  readonly opId: number;
  readonly tolerate: readonly Tolerance[];
  /** the group delete line is shared by every veth-delete op of the batch */
  readonly shared?: boolean;
}

export interface IpPlan {
  readonly text: string;
  /** owners[n - 1] owns line n */
  readonly owners: readonly LineOwner[];
  /** opIds whose veths go through the group delete */
  readonly groupMembers: readonly number[];
}

export interface IpWork {
  readonly opId: number;
  readonly ops: readonly IpOp[];
}

type Owned = [IpLine, LineOwner];

/** The lines of one operation: `now` in order, `late` after every veth deletion of the batch. */
function linesOf(op: IpOp, opId: number, linkGroup: number, now: Owned[], late: Owned[]): void {
  const own = (tolerate: Tolerance[] = []): LineOwner => ({ opId, tolerate });
  switch (op.kind) {
    case 'bridge-create':
      now.push([{ op: 'bridge-add', name: op.bridge, mac: op.mac, mtu: op.mtu, group: op.group }, own()]);
      return;
    case 'bridge-addrs':
      for (const a of op.addrs) now.push([{ op: 'addr-add', addr: a, dev: op.bridge }, own(['exists'])]);
      if (op.up) now.push([{ op: 'link-up', dev: op.bridge }, own()]);
      return;
    case 'bridge-addrs-remove':
      for (const a of op.addrs) late.push([{ op: 'addr-del', addr: a, dev: op.bridge }, own(['no-address', 'no-device'])]);
      if (op.down === true) late.push([{ op: 'link-down', dev: op.bridge }, own(['no-device'])]);
      return;
    case 'veth-create':
      now.push([
        { op: 'veth-add', host: op.host, peer: op.peer, bridge: op.bridge, mtu: op.mtu, group: op.group, hostMac: op.hostMac, peerNetns: op.sandbox?.netns, peerMac: op.sandbox?.mac },
        own(),
      ]);
      if (op.hairpin === true) now.push([{ op: 'set-hairpin', dev: op.host }, own()]);
      return;
    case 'veth-delete':
      now.push([{ op: 'set-group', dev: op.host, group: linkGroup }, own(['no-device'])]);
      return;
    case 'bridge-delete':
      late.push([{ op: 'link-del', dev: op.bridge }, own(['no-device'])]);
      return;
    case 'sandbox-setup':
      return; // inside the container's namespace, in a process of its own (sandbox.ts)
  }
}

export function planIpBatch(works: readonly IpWork[], linkGroup: number): IpPlan {
  // Bridges first (creation), then veths, then the group delete, then bridge deletion, so one
  // batch can hold a network's whole teardown.
  const now: Owned[] = [];
  const late: Owned[] = [];
  const groupMembers: number[] = [];
  for (const w of works) {
    for (const op of w.ops) {
      linesOf(op, w.opId, linkGroup, now, late);
      if (op.kind === 'veth-delete' && groupMembers[groupMembers.length - 1] !== w.opId) groupMembers.push(w.opId);
    }
  }
  if (groupMembers.length > 0) now.push([{ op: 'del-group', group: linkGroup }, { opId: -1, tolerate: ['no-device'], shared: true }]);
  const all = [...now, ...late];
  return { text: renderIpScript(all.map(([l]) => l)), owners: all.map(([, o]) => o), groupMembers };
}

export interface LineVerdict {
  readonly failedOps: ReadonlyMap<number, string>;
  readonly groupDeleteFailed: boolean;
}

/** Attribute parsed failures to operations, ignoring the ones their line tolerates. */
export function attributeIpFailures(plan: IpPlan, failures: readonly IpFailure[]): LineVerdict {
  const failedOps = new Map<number, string>();
  let groupDeleteFailed = false;
  for (const f of failures) {
    const owner = plan.owners[f.line - 1];
    if (owner === undefined) continue;
    const cls = classifyIpError(f.message);
    if (cls !== null && owner.tolerate.includes(cls)) continue;
    if (owner.shared) {
      groupDeleteFailed = true;
      continue;
    }
    if (!failedOps.has(owner.opId)) failedOps.set(owner.opId, f.message);
  }
  return { failedOps, groupDeleteFailed };
}
