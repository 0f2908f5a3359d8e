// Pure planner: the ip operations of many requests → one `ip -force -batch -` script plus, for
// every line, which operation owns it and which failures mean "already done".
//
// Facts this relies on (measured, see shared/design/testing.md and style.md):
// - `ip -force -batch` goes on after a failing line and reports `Command failed -:N`, N counting
//   every physical line; so each line is owned by exactly one operation.
// - Deleting a veth costs an RCU grace period (~17 ms); putting all doomed veths into one link
//   group and deleting the group pays that once per batch.
// - A syntax error (not a kernel error) makes ip exit at once, even with -force. Every name in a
//   script was validated before planning, so that can only happen when a device named as
//   `master` vanished behind our back; apply-ip.ts then verifies each op against the kernel.
import type { IpOp } from './ops.js';

/** Failure classes that mean the line's goal already holds. */
export type Tolerance = 'no-device' | 'exists' | 'no-address';

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

function mtuArg(mtu: number): string {
  return mtu > 0 ? ` mtu ${mtu}` : '';
}

function groupArg(group: number | undefined): string {
  if (group === undefined) return '';
  if (!Number.isInteger(group) || group <= 0 || group > 0xffffffff) throw new Error(`refusing link group ${String(group)}`);
  return ` group ${group}`;
}

export function planIpBatch(works: readonly IpWork[], linkGroup: number): IpPlan {
  const lines: string[] = [];
  const owners: LineOwner[] = [];
  const groupMembers: number[] = [];
  const push = (line: string, owner: LineOwner): void => {
    lines.push(line);
    owners.push(owner);
  };
  // Bridges first (creation), then veths, then the group delete, then bridge deletion, so one
  // batch can hold a network's whole teardown.
  const late: Array<[string, LineOwner]> = [];
  for (const w of works) {
    for (const op of w.ops) {
      switch (op.kind) {
        case 'bridge-create':
          push(`link add name ${op.bridge}${groupArg(op.group)} address ${op.mac}${mtuArg(op.mtu)} type bridge`, { opId: w.opId, tolerate: [] });
          break;
        case 'bridge-addrs':
          for (const a of op.addrs) push(`address add ${a} dev ${op.bridge}`, { opId: w.opId, tolerate: ['exists'] });
          if (op.up) push(`link set dev ${op.bridge} up`, { opId: w.opId, tolerate: [] });
          break;
        case 'bridge-addrs-remove':
          for (const a of op.addrs) late.push([`address del ${a} dev ${op.bridge}`, { opId: w.opId, tolerate: ['no-address', 'no-device'] }]);
          if (op.down === true) late.push([`link set dev ${op.bridge} down`, { opId: w.opId, tolerate: ['no-device'] }]);
          break;
        case 'veth-create':
          push(
            `link add name ${op.host}${groupArg(op.group)}${mtuArg(op.mtu)} txqueuelen 0 master ${op.bridge} up type veth peer name ${op.peer}${mtuArg(op.mtu)} txqueuelen 0`,
            { opId: w.opId, tolerate: [] },
          );
          break;
        case 'veth-delete':
          push(`link set dev ${op.host} group ${linkGroup}`, { opId: w.opId, tolerate: ['no-device'] });
          if (groupMembers[groupMembers.length - 1] !== w.opId) groupMembers.push(w.opId);
          break;
        case 'bridge-delete':
          late.push([`link del dev ${op.bridge}`, { opId: w.opId, tolerate: ['no-device'] }]);
          break;
      }
    }
  }
  if (groupMembers.length > 0) {
    push(`link del group ${linkGroup}`, { opId: -1, tolerate: ['no-device'], shared: true });
  }
  for (const [line, owner] of late) push(line, owner);
  return { text: lines.length ? `${lines.join('\n')}\n` : '', owners, groupMembers };
}

export interface IpFailure {
  readonly line: number;
  readonly message: string;
}

export interface ParsedIpErrors {
  readonly failures: readonly IpFailure[];
  /** error text that no `Command failed` line claimed: ip stopped early */
  readonly unattributed: string;
}

const FAILED_RE = /^Command failed (?:-|[^:]+):(\d+)$/;

/** Reads `ip -force -batch` stderr: each error's text comes before its `Command failed -:N`. */
export function parseIpErrors(stderr: string): ParsedIpErrors {
  const failures: IpFailure[] = [];
  let pending: string[] = [];
  for (const raw of stderr.split('\n')) {
    const line = raw.trimEnd();
    if (line === '') continue;
    const m = FAILED_RE.exec(line);
    if (m) {
      failures.push({ line: Number(m[1]), message: pending.join('; ') || 'failed' });
      pending = [];
    } else {
      pending.push(line);
    }
  }
  return { failures, unattributed: pending.join('; ') };
}

export function classifyIpError(message: string): Tolerance | null {
  if (/Cannot find device|No such device|does not exist/i.test(message)) return 'no-device';
  // With extended acks the kernel words address errors itself: "Error: ipv4: Address already
  // assigned." / "Error: ipv6: address not found." instead of the errno texts.
  if (/File exists|address already assigned/i.test(message)) return 'exists';
  if (/Cannot assign requested address|address not found/i.test(message)) return 'no-address';
  return null;
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
