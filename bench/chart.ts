// The bench charts, written by hand as SVG: operations/s against batch size, one line per series
// through the medians of the repeats, a bar from the slowest to the fastest repeat at each point,
// the legend below the plot (never over the data), and the date, commit and load on every chart.
// The y axis fits the data: linear when it spans at most a factor of 10, otherwise log with
// bounds on the 1-2-5 values just outside the data.
import { summarize, type Series, type SuiteResult } from './results.js';

export interface Axis {
  readonly kind: 'linear' | 'log';
  readonly lo: number;
  readonly hi: number;
  /** values that get a gridline and a label */
  readonly ticks: number[];
}

/** Past this ratio of largest to smallest value the y axis is logarithmic. */
export const LOG_RATIO = 10;

function niceStep(span: number, target: number): number {
  const raw = span / target;
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  return ([1, 2, 2.5, 5, 10].map((m) => m * p).find((s) => s >= raw) ?? 10 * p);
}

/** 1-2-5 values from below `lo` to above `hi` */
function oneTwoFive(lo: number, hi: number): number[] {
  const out: number[] = [];
  for (let e = Math.floor(Math.log10(lo)) - 1; e <= Math.ceil(Math.log10(hi)) + 1; e++) {
    for (const m of [1, 2, 5]) out.push(Number((m * Math.pow(10, e)).toPrecision(6)));
  }
  return out;
}

/** The y axis for data between `min` and `max` (both > 0 for a log axis). */
export function fitAxis(min: number, max: number): Axis {
  if (!(max > 0)) return { kind: 'linear', lo: 0, hi: 1, ticks: [0, 0.5, 1] };
  if (min > 0 && max / min > LOG_RATIO) {
    const c = oneTwoFive(min, max);
    const lo = [...c].reverse().find((v) => v <= min) ?? min;
    const hi = c.find((v) => v >= max) ?? max;
    let ticks = c.filter((v) => v >= lo && v <= hi);
    // Over many decades label the powers of ten (and the ends) only.
    if (ticks.length > 10) ticks = ticks.filter((v, i) => i === 0 || i === ticks.length - 1 || Math.log10(v) % 1 === 0);
    return { kind: 'log', lo, hi, ticks };
  }
  // From zero unless the data sit in the upper half: then fit a nice floor below them.
  let lo = min <= max / 2 ? 0 : min;
  let step = niceStep(max - lo || max, 5);
  lo = Math.floor(lo / step) * step;
  step = niceStep(max - lo, 5);
  lo = Math.floor(lo / step) * step;
  const hi = Math.ceil(max / step) * step;
  const ticks: number[] = [];
  for (let v = lo; v <= hi + step / 1e6; v += step) ticks.push(Number(v.toPrecision(10)));
  return { kind: 'linear', lo, hi, ticks };
}

export function tickLabel(v: number): string {
  if (v >= 10_000) return `${Number((v / 1000).toPrecision(4))}k`;
  return String(Number(v.toPrecision(4)));
}

/** Average width of a character at 12 px sans-serif, a little generous so nothing gets cut. */
const CHAR_PX = 7;

/** Splits `text` into lines of at most `px` pixels (estimated), at spaces. */
export function wrap(text: string, px: number): string[] {
  const max = Math.max(10, Math.floor(px / CHAR_PX));
  const lines: string[] = [];
  let cur = '';
  for (const w of text.split(' ')) {
    if (cur !== '' && cur.length + 1 + w.length > max) {
      lines.push(cur);
      cur = w;
    } else cur = cur === '' ? w : `${cur} ${w}`;
  }
  if (cur !== '') lines.push(cur);
  return lines;
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b'];

function marker(shape: number, x: number, y: number, c: string, title: string): string {
  const t = `<title>${esc(title)}</title>`;
  const p = (pts: Array<[number, number]>): string => pts.map(([a, b]) => `${(x + a).toFixed(1)},${(y + b).toFixed(1)}`).join(' ');
  switch (shape % 4) {
    case 1:
      return `<rect x="${(x - 4).toFixed(1)}" y="${(y - 4).toFixed(1)}" width="8" height="8" fill="${c}">${t}</rect>`;
    case 2:
      return `<polygon points="${p([[0, -5], [5, 4], [-5, 4]])}" fill="${c}">${t}</polygon>`;
    case 3:
      return `<polygon points="${p([[0, -5], [5, 0], [0, 5], [-5, 0]])}" fill="${c}">${t}</polygon>`;
    default:
      return `<circle cx="${x.toFixed(1)}" cy="${y.toFixed(1)}" r="4" fill="${c}">${t}</circle>`;
  }
}

/** What the bars mean, for the footer. */
export function barsMeaning(r: SuiteResult): string {
  const runs = Math.max(...r.series.flatMap((s) => s.points.map((p) => p.runs.length)), 0);
  return runs > 1
    ? `bars: slowest to fastest of ${runs} repeats, line through the medians`
    : 'bars: 95 % confidence interval of benchmark.js (one run; use --repeats for repeats)';
}

export interface ChartLayout {
  readonly width: number;
  readonly height: number;
  readonly plot: { readonly x: number; readonly y: number; readonly w: number; readonly h: number };
  /** y of each legend row (baseline middle) */
  readonly legendRows: number[];
  readonly axis: Axis;
}

const W = 720;
const M = { l: 78, r: 24, t: 46 };
const PLOT_H = 300;
const ROW = 17;

/** Positions of everything, apart from the drawing (tested on its own). */
export function layout(r: SuiteResult): ChartLayout & { legendText: string[][]; footer: string[] } {
  const pw = W - M.l - M.r;
  const bounds = r.series.flatMap((s) => s.points.map((p) => summarize(p))).filter((s) => s.max > 0);
  const axis = fitAxis(Math.min(...bounds.map((b) => b.low)), Math.max(...bounds.map((b) => b.high)));
  const legendText = r.series.map((s) => wrap(s.name + (s.reference === true ? ' (no batching: one measurement, drawn across)' : ''), pw - 34));
  const legendRows: number[] = [];
  let y = M.t + PLOT_H + 58;
  for (const lines of legendText) {
    legendRows.push(y);
    y += lines.length * ROW + 4;
  }
  const footer = wrap(`${r.when.slice(0, 10)} · commit ${r.commit} · load average at the start ${r.loadavg || '?'} · ${barsMeaning(r)}`, pw + M.l - 16);
  const height = y + 8 + footer.length * 15 + 6;
  return { width: W, height, plot: { x: M.l, y: M.t, w: pw, h: PLOT_H }, legendRows, axis, legendText, footer };
}

function seriesSvg(s: Series, i: number, n: number, X: (b: number) => number, Y: (v: number) => number, plot: ChartLayout['plot']): string[] {
  const o: string[] = [];
  const c = COLORS[i % COLORS.length] as string;
  const pts = [...s.points].sort((a, b) => a.batch - b.batch).map((p) => ({ p, st: summarize(p) })).filter((q) => q.st.median > 0);
  if (s.reference === true && pts.length > 0) {
    // One measurement drawn across the plot: a dashed line at its median in a band of its spread.
    const st = pts[0]?.st;
    if (st === undefined) return o;
    o.push(`<rect x="${plot.x}" y="${Y(st.high).toFixed(1)}" width="${plot.w}" height="${Math.max(1, Y(st.low) - Y(st.high)).toFixed(1)}" fill="${c}" fill-opacity="0.13"/>`);
    o.push(`<line x1="${plot.x}" x2="${plot.x + plot.w}" y1="${Y(st.median).toFixed(1)}" y2="${Y(st.median).toFixed(1)}" stroke="${c}" stroke-width="2" stroke-dasharray="7 4"><title>${esc(`${s.name}: ${tickLabel(st.median)}/s`)}</title></line>`);
    return o;
  }
  const dx = (i - (n - 1) / 2) * 5; // bars of series at the same batch size side by side
  if (pts.length > 1) o.push(`<polyline fill="none" stroke="${c}" stroke-width="2" points="${pts.map((q) => `${(X(q.p.batch) + dx).toFixed(1)},${Y(q.st.median).toFixed(1)}`).join(' ')}"/>`);
  for (const { p, st } of pts) {
    const x = X(p.batch) + dx;
    o.push(`<path d="M${(x - 4).toFixed(1)} ${Y(st.high).toFixed(1)}h8M${x.toFixed(1)} ${Y(st.high).toFixed(1)}V${Y(st.low).toFixed(1)}M${(x - 4).toFixed(1)} ${Y(st.low).toFixed(1)}h8" stroke="${c}" stroke-width="1.5" fill="none"/>`);
    o.push(marker(i, x, Y(st.median), c, `${s.name}: batch ${p.batch}: ${tickLabel(st.median)}/s (${tickLabel(st.low)}–${tickLabel(st.high)}, ${p.runs.length} run${p.runs.length === 1 ? '' : 's'})`));
  }
  return o;
}

export function svgChart(r: SuiteResult): string {
  const L = layout(r);
  const { plot, axis } = L;
  const sizes = [...new Set(r.series.flatMap((s) => s.points.map((p) => p.batch)))].sort((a, b) => a - b);
  const x0 = Math.log2(sizes[0] ?? 1);
  const x1 = Math.log2(sizes[sizes.length - 1] ?? 1);
  const pad = 18; // keep the end points and their bars off the frame
  const X = (b: number): number => plot.x + pad + (x1 === x0 ? (plot.w - 2 * pad) / 2 : ((Math.log2(b) - x0) / (x1 - x0)) * (plot.w - 2 * pad));
  const f = axis.kind === 'log' ? Math.log10 : (v: number): number => v;
  const Y = (v: number): number => plot.y + plot.h - ((f(Math.max(v, axis.kind === 'log' ? axis.lo : -Infinity)) - f(axis.lo)) / (f(axis.hi) - f(axis.lo))) * plot.h;
  const o: string[] = [];
  o.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${L.width}" height="${L.height}" viewBox="0 0 ${L.width} ${L.height}" font-family="DejaVu Sans, Verdana, sans-serif" font-size="12">`);
  o.push(`<rect width="${L.width}" height="${L.height}" fill="white"/>`);
  o.push(`<text x="${L.width / 2}" y="24" text-anchor="middle" font-size="15" font-weight="bold">${esc(r.title)}</text>`);
  // Every tick gets a gridline; a label only where it keeps clear of its neighbours (powers of
  // ten first on a log axis).
  const labelled: number[] = [];
  const first = axis.kind === 'log' ? [...axis.ticks].sort((a, b) => Number(Math.log10(b) % 1 === 0) - Number(Math.log10(a) % 1 === 0)) : axis.ticks;
  for (const v of first) if (labelled.every((u) => Math.abs(Y(u) - Y(v)) >= 18)) labelled.push(v);
  for (const v of axis.ticks) {
    const y = Y(v).toFixed(1);
    o.push(`<line x1="${plot.x}" x2="${plot.x + plot.w}" y1="${y}" y2="${y}" stroke="#e3e3e3"/>`);
    if (labelled.includes(v)) o.push(`<text x="${plot.x - 7}" y="${y}" text-anchor="end" dominant-baseline="middle" fill="#333">${tickLabel(v)}</text>`);
  }
  for (const b of sizes) {
    const x = X(b).toFixed(1);
    o.push(`<line x1="${x}" x2="${x}" y1="${plot.y}" y2="${plot.y + plot.h}" stroke="#f0f0f0"/>`);
    o.push(`<text x="${x}" y="${plot.y + plot.h + 17}" text-anchor="middle" fill="#333">${b}</text>`);
  }
  o.push(`<rect x="${plot.x}" y="${plot.y}" width="${plot.w}" height="${plot.h}" fill="none" stroke="#777"/>`);
  o.push(`<text x="${plot.x + plot.w / 2}" y="${plot.y + plot.h + 37}" text-anchor="middle">${esc(r.xLabel)}</text>`);
  o.push(`<text transform="translate(18 ${plot.y + plot.h / 2}) rotate(-90)" text-anchor="middle">${esc(`${r.unit} per second${axis.kind === 'log' ? ' (log scale)' : ''}`)}</text>`);
  r.series.forEach((s, i) => o.push(...seriesSvg(s, i, r.series.length, X, Y, plot)));
  r.series.forEach((s, i) => {
    const c = COLORS[i % COLORS.length] as string;
    const y = L.legendRows[i] as number;
    const ref = s.reference === true;
    o.push(`<line x1="${plot.x}" x2="${plot.x + 24}" y1="${y}" y2="${y}" stroke="${c}" stroke-width="2"${ref ? ' stroke-dasharray="7 4"' : ''}/>`);
    if (!ref) o.push(marker(i, plot.x + 12, y, c, s.name));
    (L.legendText[i] ?? []).forEach((line, k) => o.push(`<text x="${plot.x + 34}" y="${y + k * ROW}" dominant-baseline="middle">${esc(line)}</text>`));
  });
  const fy = (L.legendRows.length > 0 ? L.height - L.footer.length * 15 - 4 : plot.y + plot.h + 60);
  L.footer.forEach((line, k) => o.push(`<text x="12" y="${fy + k * 15}" font-size="11" fill="#555">${esc(line)}</text>`));
  o.push('</svg>');
  return `${o.join('\n')}\n`;
}
