// Shared by the bench suites: benchmark.js driving async kernel work (one measurement = one
// benchmark.js run of several samples). What is recorded and drawn: results.ts, chart.ts.
import { readFileSync } from 'node:fs';
import Benchmark from 'benchmark';
import type { Run } from './results.js';

export const SIZES = [1, 4, 16, 64, 256] as const;

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
): Promise<Run> {
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
): Promise<Run> {
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
