// Reading ip's failures: `ip -force -batch` prints each error's text, then `Command failed -:N`.
// The one classifier of "already done" outcomes for every ip caller (batches, reconciliation,
// probes).

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

/** Failure classes that mean the line's goal already holds. */
export type Tolerance = 'no-device' | 'exists' | 'no-address';

export function classifyIpError(message: string): Tolerance | null {
  if (/Cannot find device|No such device|does not exist/i.test(message)) return 'no-device';
  // With extended acks the kernel words address errors itself: "Error: ipv4: Address already
  // assigned." / "Error: ipv6: address not found." instead of the errno texts.
  if (/File exists|address already assigned/i.test(message)) return 'exists';
  if (/Cannot assign requested address|address not found/i.test(message)) return 'no-address';
  return null;
}
