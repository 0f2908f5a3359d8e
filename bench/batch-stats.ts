// Preload for the plugin (node --import): subscribes to the batcher's diagnostics channel
// (bb:batch:applied) and, at exit, writes per-batch statistics to $BB_BATCH_STATS (JSON).
//   BB_BATCH_STATS=/tmp/b.json npm run load -- --spawn --plugin-node-arg=--import=$PWD/dist/bench/batch-stats.js ...
import { subscribe } from 'node:diagnostics_channel';
import { writeFileSync } from 'node:fs';

interface Ev {
  label?: string;
  size: number;
  failed: number;
  queueMs: number;
  timings: { ipMs: number; fwMs: number; totalMs: number; ipSpawns: number; fwSpawns: number } | null;
}

const out = process.env.BB_BATCH_STATS;
if (out !== undefined && out !== '') {
  const evs: Ev[] = [];
  subscribe('bb:batch:applied', (m) => {
    evs.push(m as Ev);
  });
  const summarize = (evs: readonly Ev[]): Record<string, number> => {
    const n = evs.length;
    const sum = (f: (e: Ev) => number): number => evs.reduce((a, e) => a + f(e), 0);
    const sizes = evs.map((e) => e.size).sort((a, b) => a - b);
    const q = (p: number): number => sizes[Math.min(sizes.length - 1, Math.floor(p * sizes.length))] ?? 0;
    const ops = sum((e) => e.size);
    return {
      batches: n,
      ops,
      meanSize: ops / Math.max(1, n),
      sizeP10: q(0.1),
      sizeP50: q(0.5),
      sizeP90: q(0.9),
      sizeMax: sizes[sizes.length - 1] ?? 0,
      meanBatchMs: sum((e) => e.queueMs) / Math.max(1, n),
      meanWorkerMs: sum((e) => e.timings?.totalMs ?? 0) / Math.max(1, n),
      meanIpMs: sum((e) => e.timings?.ipMs ?? 0) / Math.max(1, n),
      meanFwMs: sum((e) => e.timings?.fwMs ?? 0) / Math.max(1, n),
      ipSpawns: sum((e) => e.timings?.ipSpawns ?? 0),
      fwSpawns: sum((e) => e.timings?.fwSpawns ?? 0),
      totalIpMs: sum((e) => e.timings?.ipMs ?? 0),
      totalFwMs: sum((e) => e.timings?.fwMs ?? 0),
      totalWorkerMs: sum((e) => e.timings?.totalMs ?? 0),
    };
  };
  process.on('exit', () => {
    // One summary per pipeline (the batchers of src/scheduler/pipelines.ts), and all together.
    const byLabel: Record<string, Record<string, number>> = { all: summarize(evs) };
    for (const label of new Set(evs.map((e) => e.label ?? 'batch'))) byLabel[label] = summarize(evs.filter((e) => (e.label ?? 'batch') === label));
    writeFileSync(out, `${JSON.stringify(byLabel, null, 2)}\n`);
  });
}
