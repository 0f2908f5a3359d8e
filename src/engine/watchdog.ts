// Keeps our firewall rules in place while the plugin runs. Someone may flush a table, one of our
// chains or a single DNAT bucket (a firewall reload, `iptables -F`, a script): every check counts
// all our rules per chain and owner against the books (the backend's verify), and a difference
// seen in two checks in a row makes it rewrite our rules from the books under the exclusive gate.
//
// Why two checks: the comparison leaves out endpoints with an operation in flight, but a
// Program/Revoke can start and finish between the kernel read and the books read; a real loss
// stays, a race does not. The second check comes soon after the first, so a loss is repaired
// within about one interval plus CONFIRM_MS (the bound is 5 s; the default interval 2 s).
import type { Logger } from 'pino';
import type { CensusDifference } from '../firewall/types.js';
import type { EngineCore } from './core.js';
import { firewallState } from './firewall-state.js';

const CONFIRM_MS = 250;

/** What `status` and the metrics show of the watchdog. */
export interface WatchdogState {
  readonly intervalMs: number;
  readonly checks: number;
  readonly checkFailures: number;
  readonly lastCheckAt: string | null;
  /** the last check could not read or count the rules */
  readonly lastCheckFailed: boolean;
  readonly restores: number;
  readonly restoreFailures: number;
  readonly lastRestoreAt: string | null;
  /** the last restore attempt failed (our rules are not what the books want) */
  readonly lastRestoreFailed: boolean;
  readonly lastError: string | null;
}

export class FirewallWatchdog {
  private timer: NodeJS.Timeout | null = null;
  private confirmTimer: NodeJS.Timeout | null = null;
  private checking = false;
  private resyncing = false;
  private stopped = false;
  /** the check running now: stop() waits for it, so the worker pool is not closed under it */
  private running: Promise<void> | null = null;
  /** keys that differed in the last check, awaiting confirmation */
  private suspect: ReadonlySet<string> | null = null;
  /** how many times our chains were rewritten because rules were missing or extra */
  restores = 0;
  lastRestoreAt: number | null = null;
  private checks = 0;
  private checkFailures = 0;
  private restoreFailures = 0;
  private lastCheckAt: number | null = null;
  private lastCheckFailed = false;
  private lastRestoreFailed = false;
  private lastError: string | null = null;

  constructor(
    private readonly core: EngineCore,
    private readonly log: Logger,
    private readonly intervalMs: number,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.check(), this.intervalMs);
    this.timer.unref();
  }

  /** No more checks; resolves once a check in progress is over. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== null) clearInterval(this.timer);
    if (this.confirmTimer !== null) clearTimeout(this.confirmTimer);
    this.timer = null;
    this.confirmTimer = null;
    await this.running;
  }

  /** One check now (also called when dockerd activates the plugin). */
  check(): Promise<void> {
    if (this.stopped || this.checking || this.resyncing) return Promise.resolve();
    const p = this.checkOnce().finally(() => {
      if (this.running === p) this.running = null;
    });
    this.running = p;
    return p;
  }

  private async checkOnce(): Promise<void> {
    this.checking = true;
    let diffs: CensusDifference[] | null;
    this.checks++;
    this.lastCheckAt = Date.now();
    try {
      diffs = await this.core.firewall.verify(firewallState(this.core.books), () => this.changingEndpoints());
      this.lastCheckFailed = false;
    } catch (err) {
      this.checkFailures++;
      this.lastCheckFailed = true;
      this.lastError = errText(err);
      this.log.error({ err }, 'firewall check failed');
      return;
    } finally {
      this.checking = false;
    }
    if (diffs === null) return; // network-wide work in progress: nothing to conclude
    if (diffs.length === 0) {
      this.suspect = null;
      return;
    }
    const confirmed = this.suspect === null ? [] : diffs.filter((d) => this.suspect?.has(d.key) === true);
    this.suspect = new Set(diffs.map((d) => d.key));
    if (confirmed.length > 0) {
      this.suspect = null;
      await this.resync(confirmed);
      return;
    }
    if (this.confirmTimer === null && this.timer !== null) {
      this.confirmTimer = setTimeout(() => {
        this.confirmTimer = null;
        void this.check();
      }, CONFIRM_MS);
      this.confirmTimer.unref();
    }
  }

  state(): WatchdogState {
    const iso = (t: number | null): string | null => (t === null ? null : new Date(t).toISOString());
    return {
      intervalMs: this.intervalMs,
      checks: this.checks,
      checkFailures: this.checkFailures,
      lastCheckAt: iso(this.lastCheckAt),
      lastCheckFailed: this.lastCheckFailed,
      restores: this.restores,
      restoreFailures: this.restoreFailures,
      lastRestoreAt: iso(this.lastRestoreAt),
      lastRestoreFailed: this.lastRestoreFailed,
      lastError: this.lastError,
    };
  }

  /** The networks and endpoints whose rules differed (owner tags carry 12 characters of an id). */
  private idsOf(diffs: readonly CensusDifference[]): { networkIds: string[]; endpointIds: string[] } {
    const full = (prefix: string, ids: Iterable<string>): string => [...ids].find((id) => id.startsWith(prefix)) ?? prefix;
    const networkIds = new Set<string>();
    const endpointIds = new Set<string>();
    for (const d of diffs) {
      const m = /bb:(net|ep)=([A-Za-z0-9_-]+)$/.exec(d.key);
      if (m === null) continue;
      if (m[1] === 'net') networkIds.add(full(m[2] ?? '', this.core.books.networks.keys()));
      else endpointIds.add(full(m[2] ?? '', this.core.books.endpoints.keys()));
    }
    return { networkIds: [...networkIds], endpointIds: [...endpointIds] };
  }

  /**
   * Endpoints whose rules may be changing right now (an operation in flight), or null while
   * network-wide work (a network created or deleted, reconciliation) is in progress.
   */
  private changingEndpoints(): Set<string> | null {
    if (this.core.gate.exclusiveActive) return null;
    return new Set(this.core.lanes.activeEndpoints());
  }

  private async resync(diffs: readonly CensusDifference[]): Promise<void> {
    this.resyncing = true;
    try {
      // Under the exclusive gate, so no batch changes rules while we rewrite our chains.
      await this.core.exclusively(() => this.core.firewall.sync(firewallState(this.core.books)));
      this.restores++;
      this.lastRestoreAt = Date.now();
      this.lastRestoreFailed = false;
      this.log.warn({ ...this.idsOf(diffs), differences: diffs.slice(0, 20).map((d) => `${d.key}: ${d.have} rule(s), want ${d.want}`), total: diffs.length }, 'firewall rules restored');
    } catch (err) {
      this.restoreFailures++;
      this.lastRestoreFailed = true;
      this.lastError = errText(err);
      this.log.error({ ...this.idsOf(diffs), err }, 'firewall restore failed');
    } finally {
      this.resyncing = false;
    }
  }
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
