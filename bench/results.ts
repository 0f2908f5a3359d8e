// What a bench suite records (every repeat of every point, as benchmark.js measured it), how a
// point is summed up (median, and the spread of the repeats), and the Markdown table.

export interface Run {
  /** operations (veths, rules, lifecycles) per second */
  readonly opsPerSec: number;
  /** benchmark.js's relative margin of error (95 % confidence), percent */
  readonly rme: number;
  readonly samples: number;
}

export interface Point {
  readonly batch: number;
  /** one per repeat */
  readonly runs: Run[];
}

export interface Series {
  readonly name: string;
  readonly points: Point[];
  /** measured once without batching and drawn across all batch sizes */
  readonly reference?: boolean;
}

export interface SuiteResult {
  readonly suite: string;
  readonly title: string;
  readonly unit: string;
  readonly xLabel: string;
  readonly note: string;
  readonly series: Series[];
  /** load average (1, 5, 15 min) when the suite started */
  readonly loadavg: string;
  /** ISO time the suite started */
  readonly when: string;
  /** short commit of the measured code, "-dirty" when the work tree had changes */
  readonly commit: string;
  readonly repeats: number;
}

export interface Summary {
  readonly median: number;
  readonly min: number;
  readonly max: number;
  /** the ends of the error bar: slowest and fastest repeat, or benchmark.js's 95 % interval for one run */
  readonly low: number;
  readonly high: number;
}

export function summarize(p: Point): Summary {
  const v = p.runs.map((r) => r.opsPerSec).sort((a, b) => a - b);
  if (v.length === 0) return { median: 0, min: 0, max: 0, low: 0, high: 0 };
  const mid = v.length >> 1;
  const median = v.length % 2 === 1 ? (v[mid] as number) : ((v[mid - 1] as number) + (v[mid] as number)) / 2;
  const min = v[0] as number;
  const max = v[v.length - 1] as number;
  if (v.length > 1) return { median, min, max, low: min, high: max };
  const rme = (p.runs[0]?.rme ?? 0) / 100;
  return { median, min, max, low: median * (1 - rme), high: median * (1 + rme) };
}

/** Adds one repeat's measurement of `batch` to the series. */
export function record(s: Series, batch: number, run: Run): void {
  const p = s.points.find((q) => q.batch === batch);
  if (p === undefined) s.points.push({ batch, runs: [run] });
  else p.runs.push(run);
}

export function fmt(v: number): string {
  return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
}

export function markdown(r: SuiteResult): string {
  const sizes = [...new Set(r.series.flatMap((s) => s.points.map((p) => p.batch)))].sort((a, b) => a - b);
  const out = [
    `### ${r.title}`,
    '',
    r.note,
    '',
    `${r.unit} per second: ${r.repeats > 1 ? `median of ${r.repeats} repeats [slowest–fastest]; ± is benchmark.js's relative margin of error (95 %) within a repeat, averaged` : "one run per point; ± is benchmark.js's relative margin of error (95 %)"}. ` +
      `${r.when.slice(0, 10)}, commit ${r.commit}, load average at the start ${r.loadavg}.`,
    '',
    `| series | ${sizes.map((s) => `batch ${s}`).join(' | ')} |`,
    `|---|${sizes.map(() => '---:').join('|')}|`,
  ];
  for (const s of r.series) {
    const cells = sizes.map((b) => {
      const p = s.points.find((q) => q.batch === b);
      if (p === undefined || p.runs.length === 0) return '';
      const st = summarize(p);
      const rme = p.runs.reduce((a, x) => a + x.rme, 0) / p.runs.length;
      const range = p.runs.length > 1 ? ` [${fmt(st.min)}–${fmt(st.max)}]` : '';
      return `${fmt(st.median)}${range} ±${rme.toFixed(0)}%`;
    });
    out.push(`| ${s.name} | ${cells.join(' | ')} |`);
  }
  out.push('');
  return `${out.join('\n')}\n`;
}
