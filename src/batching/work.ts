// The kernel work of one accepted operation, and of a batch of them, as plain data: it crosses
// into a worker thread by structured clone, so no classes and no functions here.
import type { SysctlWrite } from '../domain/network-setup.js';
import type { FirewallChange } from '../firewall/types.js';
import type { IpOp } from '../ip/ops.js';

export interface ConntrackFlush {
  readonly family: 4 | 6;
  readonly address: string;
}

/** Everything one operation asks of the kernel, in the order the stages run. */
export interface OpWork {
  readonly opId: number;
  /** firewall removals run before ip work (so no rule points at a vanishing veth) */
  readonly fwBefore?: FirewallChange;
  readonly ip?: readonly IpOp[];
  readonly sysctls?: readonly SysctlWrite[];
  /** additions run after ip work */
  readonly fwAfter?: FirewallChange;
  readonly conntrack?: readonly ConntrackFlush[];
}

/**
 * Operations that only change the firewall, in one direction (publishing adds, revoking
 * removes): they depend on no ip work, so they need not wait for any.
 */
export function isFirewallOnly(o: Omit<OpWork, 'opId'>): boolean {
  return (o.ip?.length ?? 0) === 0 && (o.sysctls?.length ?? 0) === 0 && (o.fwBefore === undefined) !== (o.fwAfter === undefined);
}

/**
 * Why an operation failed: the kernel refused an ip line (`ip`), a firewall transaction
 * (`firewall`) or a sysctl (`sysctl`); the worker thread died under the batch (`worker`); the
 * books could not be written (`books`); booking the result threw (`internal`, a bug).
 */
export type FailureKind = 'ip' | 'firewall' | 'sysctl' | 'worker' | 'books' | 'internal';

export const FAILURE_KINDS: readonly FailureKind[] = ['ip', 'firewall', 'sysctl', 'worker', 'books', 'internal'];

/**
 * Operations that only set up a container's namespace from inside (CNI): one process per pod,
 * nothing on the host side, so they need not hold the veth pipeline (scheduler/pipelines.ts).
 */
export function isSandboxOnly(o: Omit<OpWork, 'opId'>): boolean {
  const ip = o.ip ?? [];
  return ip.length > 0 && ip.every((op) => op.kind === 'sandbox-setup') && (o.sysctls?.length ?? 0) === 0 && o.fwBefore === undefined && o.fwAfter === undefined;
}

export interface OpResult {
  readonly opId: number;
  readonly ok: boolean;
  readonly message?: string;
  readonly kind?: FailureKind;
}

export interface BatchRequest {
  readonly batchId: number;
  readonly ops: readonly OpWork[];
  /** link group for this batch's veth deletions, unique among concurrent batches */
  readonly linkGroup: number;
  /**
   * Bumped whenever a bridge may have been deleted or made again under the same name: a thread
   * whose ip sessions predate it ends them first (ip caches ifindex by name; ip/session.ts).
   */
  readonly bridgeEpoch?: number;
}

export interface BatchTimings {
  readonly ipMs: number;
  readonly fwMs: number;
  readonly totalMs: number;
  readonly ipSpawns: number;
  readonly fwSpawns: number;
}

/** Tool sessions the thread restarted since its previous answer (they live in the thread). */
export interface SessionRestarts {
  readonly ip: number;
  readonly iptablesRestore: number;
}

export interface BatchResponse {
  readonly batchId: number;
  readonly results: readonly OpResult[];
  readonly timings: BatchTimings;
  readonly sessionRestarts?: SessionRestarts;
}
