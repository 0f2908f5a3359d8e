// What the engine counts for operators: reconciliations and their repairs, tool-session restarts
// in the worker threads. `batchbridge status` and the Prometheus metrics both read these (one
// source, so the two never disagree); the pipelines count their own batches (Batcher).
import type { SessionRestarts } from '../batching/work.js';
import type { FindingKind, ReconcileReport } from './reconcile/types.js';

export type ReconcileTrigger = 'start' | 'timer' | 'demand';

export interface LastReconcile {
  readonly at: string;
  readonly trigger: ReconcileTrigger;
  readonly ms: number;
  /** false when it threw or a fix failed (a finding of kind `error`) */
  readonly ok: boolean;
  /** why it threw, if it did */
  readonly error: string | null;
  /** findings (repairs) by kind */
  readonly repairs: Partial<Record<FindingKind, number>>;
  /** the first findings, as reported */
  readonly findings: ReadonlyArray<{ kind: FindingKind; subject: string; detail: string }>;
}

/** How many findings of the last reconciliation status shows. */
const KEEP_FINDINGS = 20;

export class EngineStats {
  readonly startedAt = Date.now();
  /** reconciliations by outcome: ok, failed (threw or a fix failed), dry_run */
  readonly reconciliations = { ok: 0, failed: 0, dry_run: 0 };
  /** findings of real (not dry) runs, by kind: what reconciliation repaired */
  readonly repairs = new Map<FindingKind, number>();
  lastReconcile: LastReconcile | null = null;
  readonly toolRestarts = { ip: 0, iptablesRestore: 0 };

  noteSessionRestarts(r: SessionRestarts | undefined): void {
    if (r === undefined) return;
    this.toolRestarts.ip += r.ip;
    this.toolRestarts.iptablesRestore += r.iptablesRestore;
  }

  noteReconcile(trigger: ReconcileTrigger, r: ReconcileReport): void {
    if (!r.applied) {
      this.reconciliations.dry_run++;
      return;
    }
    const repairs: Partial<Record<FindingKind, number>> = {};
    for (const f of r.findings) {
      repairs[f.kind] = (repairs[f.kind] ?? 0) + 1;
      this.repairs.set(f.kind, (this.repairs.get(f.kind) ?? 0) + 1);
    }
    const ok = repairs.error === undefined;
    if (ok) this.reconciliations.ok++;
    else this.reconciliations.failed++;
    const findings = r.findings.slice(0, KEEP_FINDINGS).map((f) => ({ kind: f.kind, subject: f.subject, detail: f.detail }));
    this.lastReconcile = { at: new Date().toISOString(), trigger, ms: Math.round(r.ms), ok, error: null, repairs, findings };
  }

  noteReconcileFailure(trigger: ReconcileTrigger, err: unknown, ms: number): void {
    this.reconciliations.failed++;
    const error = err instanceof Error ? err.message : String(err);
    this.lastReconcile = { at: new Date().toISOString(), trigger, ms: Math.round(ms), ok: false, error, repairs: {}, findings: [] };
  }
}
