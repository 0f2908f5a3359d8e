// Shared by the bench suites: benchmark.js driving for async kernel work, and the three outputs
// (JSON, Markdown table, hand-written SVG chart of operations/s against batch size).
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import Benchmark from 'benchmark';

export const SIZES = [1, 4, 16, 64, 256] as const;

export interface Point {
  readonly batch: number;
  /** operations (veths, rules, lifecycles) per second */
  readonly opsPerSec: number;
  /** relative margin of error of benchmark.js, percent */
  readonly rme: number;
  readonly samples: number;
}

export interface Series {
  readonly name: string;
  readonly points: Point[];
}

export interface SuiteResult {
  readonly suite: string;
  readonly title: string;
  readonly unit: string;
  readonly note: string;
  readonly series: Series[];
  readonly loadavg: string;
  readonly when: string;
}

export function loadavg(): string {
  try {
    return readFileSync('/proc/loadavg', 'utf8').trim().split(' ').slice(0, 3).join(' ');
  } catch {
    return '';
  }
}

/**
 * Runs `iteration` (which does `opsPerIteration` operations) under benchmark.js as a deferred
 * benchmark; `betweenSamples` runs synchronously after every sample, outside the clock (cleanup,
 * restocking).
 */
export function measure(
  name: string,
  opsPerIteration: number,
  iteration: () => Promise<void>,
  opts: { betweenSamples?: () => void; minSamples?: number; maxTime?: number } = {},
): Promise<{ opsPerSec: number; rme: number; samples: number }> {
  // One untimed warm-up iteration (first spawns, page cache, kernel caches).
  return iteration()
    .then(() => opts.betweenSamples?.())
    .then(() => measureOnly(name, opsPerIteration, iteration, opts));
}

function measureOnly(
  name: string,
  opsPerIteration: number,
  iteration: () => Promise<void>,
  opts: { betweenSamples?: () => void; minSamples?: number; maxTime?: number },
): Promise<{ opsPerSec: number; rme: number; samples: number }> {
  return new Promise((resolve, reject) => {
    let failed: unknown = null;
    const bench = new Benchmark(name, {
      defer: true,
      // Kernel iterations take 50 ms to seconds: one per sample, few samples.
      initCount: 1,
      minTime: 0.001,
      minSamples: opts.minSamples ?? 3,
      maxTime: opts.maxTime ?? 4,
      fn: (deferred: { resolve(): void }) => {
        iteration().then(
          () => deferred.resolve(),
          (e: unknown) => {
            failed = e;
            deferred.resolve();
          },
        );
      },
    });
    bench.on('cycle', () => opts.betweenSamples?.());
    bench.on('complete', () => {
      if (failed !== null) {
        reject(failed instanceof Error ? failed : new Error(String(failed)));
        return;
      }
      const hz = bench.hz;
      process.stderr.write(`  ${name}: ${(hz * opsPerIteration).toFixed(1)} ops/s ±${bench.stats.rme.toFixed(1)}% (${bench.stats.sample.length} samples)\n`);
      resolve({ opsPerSec: hz * opsPerIteration, rme: bench.stats.rme, samples: bench.stats.sample.length });
    });
    bench.on('error', () => reject(bench.error));
    bench.run({ async: true });
  });
}

// ------------------------------------------------------------------------------------------ output

export function writeResults(r: SuiteResult): string[] {
  const dir = new URL('../../bench/results/', import.meta.url);
  mkdirSync(dir, { recursive: true });
  const files = [`${r.suite}.json`, `${r.suite}.md`, `${r.suite}.svg`];
  writeFileSync(new URL(files[0] as string, dir), `${JSON.stringify(r, null, 2)}\n`);
  writeFileSync(new URL(files[1] as string, dir), markdown(r));
  writeFileSync(new URL(files[2] as string, dir), svgChart(r));
  return files.map((f) => `bench/results/${f}`);
}

export function markdown(r: SuiteResult): string {
  const sizes = [...new Set(r.series.flatMap((s) => s.points.map((p) => p.batch)))].sort((a, b) => a - b);
  const out = [`### ${r.title}`, '', r.note, '', `${r.unit} per second (benchmark.js, ± relative margin of error); load average at the start: ${r.loadavg}`, ''];
  out.push(`| series | ${sizes.map((s) => `batch ${s}`).join(' | ')} |`);
  out.push(`|---|${sizes.map(() => '---:').join('|')}|`);
  for (const s of r.series) {
    const cells = sizes.map((b) => {
      const p = s.points.find((q) => q.batch === b);
      return p === undefined ? '' : `${fmt(p.opsPerSec)} ±${p.rme.toFixed(0)}%`;
    });
    out.push(`| ${s.name} | ${cells.join(' | ')} |`);
  }
  out.push('');
  return `${out.join('\n')}\n`;
}

function fmt(v: number): string {
  return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b'];

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** Operations/s (log scale) against batch size (log2 scale), one line per series. */
export function svgChart(r: SuiteResult): string {
  const W = 640;
  const H = 400;
  const m = { l: 70, r: 20, t: 40, b: 80 };
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b;
  const pts = r.series.flatMap((s) => s.points);
  const sizes = [...new Set(pts.map((p) => p.batch))].sort((a, b) => a - b);
  const vals = pts.map((p) => p.opsPerSec).filter((v) => v > 0);
  const lo = Math.pow(10, Math.floor(Math.log10(Math.min(...vals, 1))));
  const hi = Math.pow(10, Math.ceil(Math.log10(Math.max(...vals, 10))));
  const xMin = Math.log2(sizes[0] ?? 1);
  const xMax = Math.log2(sizes[sizes.length - 1] ?? 256);
  const x = (b: number): number => m.l + (xMax === xMin ? pw / 2 : ((Math.log2(b) - xMin) / (xMax - xMin)) * pw);
  const y = (v: number): number => m.t + ph - ((Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * ph;
  const o: string[] = [];
  o.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  o.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  o.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="14" font-weight="bold">${esc(r.title)}</text>`);
  for (let d = lo; d <= hi; d *= 10) {
    for (const k of [1, 2, 5]) {
      const v = d * k;
      if (v > hi) break;
      const yy = y(v).toFixed(1);
      o.push(`<line x1="${m.l}" x2="${m.l + pw}" y1="${yy}" y2="${yy}" stroke="${k === 1 ? '#bbb' : '#eee'}"/>`);
      o.push(`<text x="${m.l - 6}" y="${yy}" text-anchor="end" dominant-baseline="middle" fill="#444">${fmt(v)}</text>`);
    }
  }
  for (const b of sizes) {
    const xx = x(b).toFixed(1);
    o.push(`<line x1="${xx}" x2="${xx}" y1="${m.t}" y2="${m.t + ph}" stroke="#eee"/>`);
    o.push(`<text x="${xx}" y="${m.t + ph + 16}" text-anchor="middle" fill="#444">${b}</text>`);
  }
  o.push(`<rect x="${m.l}" y="${m.t}" width="${pw}" height="${ph}" fill="none" stroke="#888"/>`);
  o.push(`<text x="${m.l + pw / 2}" y="${m.t + ph + 34}" text-anchor="middle">batch size</text>`);
  o.push(`<text transform="translate(16 ${m.t + ph / 2}) rotate(-90)" text-anchor="middle">${esc(r.unit)} per second (log)</text>`);
  r.series.forEach((s, i) => {
    const c = COLORS[i % COLORS.length] as string;
    const ps = [...s.points].sort((a, b) => a.batch - b.batch).filter((p) => p.opsPerSec > 0);
    if (ps.length > 1) o.push(`<polyline fill="none" stroke="${c}" stroke-width="2" points="${ps.map((p) => `${x(p.batch).toFixed(1)},${y(p.opsPerSec).toFixed(1)}`).join(' ')}"/>`);
    for (const p of ps) o.push(`<circle cx="${x(p.batch).toFixed(1)}" cy="${y(p.opsPerSec).toFixed(1)}" r="3.5" fill="${c}"><title>${esc(s.name)}: batch ${p.batch}: ${fmt(p.opsPerSec)}/s</title></circle>`);
    const ly = H - 34 + Math.floor(i / 2) * 16;
    const lx = m.l + (i % 2) * (pw / 2);
    o.push(`<line x1="${lx}" x2="${lx + 18}" y1="${ly}" y2="${ly}" stroke="${c}" stroke-width="2"/>`);
    o.push(`<text x="${lx + 24}" y="${ly}" dominant-baseline="middle">${esc(s.name)}</text>`);
  });
  o.push('</svg>');
  return `${o.join('\n')}\n`;
}
