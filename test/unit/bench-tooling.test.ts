// The bench tooling without measuring anything: command line, results folders, summaries, and the
// chart's axis, legend, error bars and labels.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { fitAxis, layout, svgChart, wrap } from '../../bench/chart.js';
import { datedDir } from '../../bench/output.js';
import { summarize, type SuiteResult } from '../../bench/results.js';
import { parseBenchArgs } from '../../bench/run.js';
import { SUITES } from '../../bench/suites.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

function result(values: number[][], names = ['a', 'b']): SuiteResult {
  const sizes = [1, 4, 16, 64, 256];
  return {
    suite: 'x', title: 'T', unit: 'things', xLabel: 'batch size', note: '', loadavg: '1.00 2.00 3.00',
    when: '2026-11-29T10:00:00.000Z', commit: 'abc1234', repeats: 3,
    series: names.map((name, i) => ({
      name,
      points: sizes.map((batch, k) => {
        const v = values[i]?.[k] ?? 100;
        return { batch, runs: [0.8 * v, v, 1.1 * v].map((opsPerSec) => ({ opsPerSec, rme: 5, samples: 5 })) };
      }),
    })),
  };
}

test('the y axis fits the data: log only past a factor of 10, bounds just outside the data', () => {
  const a = fitAxis(20, 2000);
  assert.equal(a.kind, 'log');
  assert.deepEqual([a.lo, a.hi], [20, 2000]);
  assert.deepEqual(a.ticks, [20, 50, 100, 200, 500, 1000, 2000]);
  const b = fitAxis(22, 351);
  assert.equal(b.kind, 'log');
  assert.deepEqual([b.lo, b.hi], [20, 500]);
  const c = fitAxis(90, 300);
  assert.equal(c.kind, 'linear');
  assert.equal(c.lo, 0);
  assert.ok(c.hi >= 300 && c.hi <= 400, String(c.hi));
  const d = fitAxis(700, 1000);
  assert.equal(d.kind, 'linear');
  assert.ok(d.lo > 0 && d.lo <= 700 && d.hi >= 1000 && d.hi <= 1100, JSON.stringify(d));
  for (const ax of [a, b, c, d]) assert.ok(ax.ticks.length >= 3 && ax.ticks.length <= 12, JSON.stringify(ax.ticks));
});

test('a point is summed up as median and spread of its repeats; one run falls back to the 95 % interval', () => {
  const s = summarize({ batch: 1, runs: [30, 10, 20].map((opsPerSec) => ({ opsPerSec, rme: 1, samples: 3 })) });
  assert.deepEqual(s, { median: 20, min: 10, max: 30, low: 10, high: 30 });
  const one = summarize({ batch: 1, runs: [{ opsPerSec: 100, rme: 40, samples: 3 }] });
  assert.deepEqual([one.low, one.high], [60, 140]);
});

test('legend and footer sit below the plot, wrap within the width, and the chart is tall enough for them', () => {
  const long = 'iptables-restore per batch with a very long description that would never fit on one line of the chart at all';
  const r = result([[20, 60, 150, 220, 250], [100, 400, 1400, 5500, 17800]], [long, 'short']);
  const L = layout(r);
  const plotBottom = L.plot.y + L.plot.h;
  assert.ok((L.legendRows[0] ?? 0) > plotBottom + 40, 'legend below the x axis and its label');
  assert.ok((L.legendText[0]?.length ?? 0) >= 2, 'long name wrapped');
  for (const line of L.legendText.flat()) assert.ok(line.length * 7 <= L.width - L.plot.x - 34, line);
  assert.ok((L.legendRows[1] ?? 0) >= (L.legendRows[0] ?? 0) + 2 * 17, 'rows do not overlap');
  const svg = svgChart(r);
  for (const m of svg.matchAll(/ y2?="(-?[\d.]+)"/g)) assert.ok(Number(m[1]) <= L.height && Number(m[1]) >= 0, `y ${m[1]} inside 0..${L.height}`);
  for (const m of svg.matchAll(/ x2?="(-?[\d.]+)"/g)) assert.ok(Number(m[1]) <= L.width && Number(m[1]) >= 0, `x ${m[1]} inside 0..${L.width}`);
  const footer = L.footer.join(' ');
  assert.match(footer, /^2026-11-29 · commit abc1234 · load average at the start 1\.00 2\.00 3\.00 · bars: slowest to fastest of 3 repeats/);
  for (const line of L.footer) assert.ok(svg.includes(`>${line}</text>`), line);
  assert.match(svg, /things per second \(log scale\)/);
  // One error bar per point of each series.
  assert.equal((svg.match(/<path d="M/g) ?? []).length, 10);
  assert.deepEqual(wrap('a b c', 1000), ['a b c']);
});

test('narrow data get a linear axis', () => {
  const svg = svgChart(result([[100, 120, 140, 150, 160], [90, 95, 100, 110, 130]]));
  assert.match(svg, />things per second</);
  assert.doesNotMatch(svg, /log scale/);
});

test('results go to a new dated folder; a folder already holding a suite is never reused for it', () => {
  const have = new Set(['/r/2026-11-29-abc1234/firewall.json', '/r/2026-11-29-abc1234-2/firewall.svg']);
  const exists = (p: string): boolean => have.has(p);
  const day = new Date('2026-11-29T23:00:00Z');
  assert.equal(datedDir('/r', day, 'abc1234', ['veth-create'], exists), '/r/2026-11-29-abc1234');
  assert.equal(datedDir('/r', day, 'abc1234', ['veth-create', 'firewall'], exists), '/r/2026-11-29-abc1234-3');
  assert.equal(datedDir('/r', day, 'def5678-dirty', ['firewall'], exists), '/r/2026-11-29-def5678-dirty');
});

test('bench arguments: suites by name or all, checked sizes and repeats', () => {
  assert.deepEqual(parseBenchArgs(['firewall', 'veth-create']).suites, ['firewall', 'veth-create']);
  assert.deepEqual(parseBenchArgs(['all']).suites, Object.keys(SUITES));
  assert.deepEqual(parseBenchArgs(['firewall', '--sizes', '16,1', '--repeats', '2']).sizes, [1, 16]);
  assert.throws(() => parseBenchArgs(['nope']), /unknown suite "nope" \(suites: veth-create, veth-delete, firewall, pipeline, all\)/);
  assert.throws(() => parseBenchArgs(['firewall', '--sizes', '0']), /--sizes/);
  assert.throws(() => parseBenchArgs(['firewall', '--repeats', 'x']), /--repeats/);
  assert.throws(() => parseBenchArgs(['firewall', '--render', '/tmp']), /--render/);
});

test('`bench --help` prints the suites; no suite named prints usage, exits 2 and measures nothing', () => {
  const bin = join(ROOT, 'dist', 'bench', 'run.js');
  const help = spawnSync(process.execPath, [bin, '--help'], { encoding: 'utf8' });
  assert.equal(help.status, 0);
  for (const n of [...Object.keys(SUITES), 'all', '--repeats', '--out DIR']) assert.ok(help.stdout.includes(n), n);
  const before = readdirSync(join(ROOT, 'bench', 'results')).sort();
  const none = spawnSync(process.execPath, [bin], { encoding: 'utf8' });
  assert.equal(none.status, 2);
  assert.match(none.stderr, /name the suites to run/);
  assert.deepEqual(readdirSync(join(ROOT, 'bench', 'results')).sort(), before, 'no results folder made');
  const bad = spawnSync(process.execPath, [bin, '--bogus'], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
});
