// Latency samples per call, kept as numbers in growable typed arrays (no per-sample objects:
// the harness shares the CPU with the plugin).
export class Samples {
  private buf = new Float64Array(1024);
  private n = 0;
  errors = 0;

  add(ms: number): void {
    if (this.n === this.buf.length) {
      const next = new Float64Array(this.buf.length * 2);
      next.set(this.buf);
      this.buf = next;
    }
    this.buf[this.n++] = ms;
  }

  get count(): number {
    return this.n;
  }

  summary(): LatencySummary {
    const s = this.buf.slice(0, this.n).sort();
    const q = (p: number): number => (s.length === 0 ? 0 : (s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)] ?? 0));
    let sum = 0;
    for (const v of s) sum += v;
    return {
      count: this.n,
      errors: this.errors,
      meanMs: round(s.length ? sum / s.length : 0),
      p50Ms: round(q(0.5)),
      p90Ms: round(q(0.9)),
      p99Ms: round(q(0.99)),
      maxMs: round(s.length ? (s[s.length - 1] ?? 0) : 0),
    };
  }
}

export interface LatencySummary {
  readonly count: number;
  readonly errors: number;
  readonly meanMs: number;
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

export function round(v: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}
