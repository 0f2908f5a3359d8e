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
    try {
      diffs = await this.core.firewall.verify(firewallState(this.core.books), () => this.changingEndpoints());
    } catch (err) {
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
      this.log.warn({ differences: diffs.slice(0, 20).map((d) => `${d.key}: ${d.have} rule(s), want ${d.want}`), total: diffs.length }, 'firewall rules restored');
    } catch (err) {
      this.log.error({ err }, 'firewall restore failed');
    } finally {
      this.resyncing = false;
    }
  }
}
