// `npm run bench -- SUITE...` (= unshare --net node dist/bench/run.js): runs the named batch-size
// suites (bench/suites.ts) and writes <suite>.{json,md,svg} for each into a new dated folder.
import { realpathSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { runCmd, runOk } from '../scripts/load/exec.js';
import { isInitNetns } from '../scripts/load/run.js';
import { loadavg, SIZES } from './lib.js';
import { currentCommit, datedDir, renderDir, RESULTS_ROOT, writeResults } from './output.js';
import { BRIDGE, SUITES } from './suites.js';

const DEFAULT_REPEATS = 3;

export function usage(): string {
  const names = Object.keys(SUITES);
  const w = Math.max(...names.map((n) => n.length), 3) + 2;
  return `Usage: npm run bench -- [options] SUITE... | all
       (= unshare --net node dist/bench/run.js [options] SUITE...)

Measures kernel work and the plugin against batch size with benchmark.js and writes, per suite,
<suite>.json (every repeat), <suite>.md (table) and <suite>.svg (chart) into a new folder
bench/results/<YYYY-MM-DD>-<commit>[-dirty][-N]/, never over earlier results.

Suites:
${names.map((n) => `  ${n.padEnd(w)}${SUITES[n]?.about ?? ''}`).join('\n')}
  ${'all'.padEnd(w)}every suite above (a few minutes each with the defaults on 2 cores)

Options:
  --repeats N     measure every point N times, all sizes once per repeat (default: ${DEFAULT_REPEATS});
                  the charts draw the slowest to the fastest repeat as error bars
  --sizes LIST    batch sizes, comma-separated (default: ${SIZES.join(',')})
  --out DIR       write into DIR instead (replacing the files of the suites run)
  --render DIR    measure nothing: draw the tables and charts of DIR's JSON files again
  -h, --help      this text

The kernel suites work in the network namespace they run in and refuse the host's (npm run
bench runs them under unshare --net); pipeline starts its plugins in namespaces of their own.
Exit status: 0 when every suite ran, 1 on a failure, 2 on bad usage.
`;
}

class UsageError extends Error {}

export interface BenchArgs {
  readonly suites: string[];
  readonly repeats: number;
  readonly sizes: number[];
  readonly out: string | null;
  readonly render: string | null;
  readonly help: boolean;
}

export function parseBenchArgs(argv: string[]): BenchArgs {
  const { values, positionals } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: true,
    options: {
      repeats: { type: 'string' },
      sizes: { type: 'string' },
      out: { type: 'string' },
      render: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const repeats = values.repeats === undefined ? DEFAULT_REPEATS : Number(values.repeats);
  if (!/^\d+$/.test(values.repeats ?? '1') || repeats < 1 || repeats > 50) throw new UsageError(`--repeats must be a whole number from 1 to 50, got ${JSON.stringify(values.repeats)}`);
  const sizes = values.sizes === undefined ? [...SIZES] : values.sizes.split(',').map((x) => (/^\d+$/.test(x) ? Number(x) : NaN));
  if (sizes.some((b) => !(b >= 1 && b <= 4096))) throw new UsageError(`--sizes must be batch sizes from 1 to 4096, comma-separated, got ${JSON.stringify(values.sizes)}`);
  const names = positionals.includes('all') ? Object.keys(SUITES) : positionals;
  for (const n of names) {
    if (SUITES[n] === undefined) throw new UsageError(`unknown suite ${JSON.stringify(n)} (suites: ${Object.keys(SUITES).join(', ')}, all)`);
  }
  if (values.render !== undefined && names.length > 0) throw new UsageError('--render measures nothing: name no suite with it');
  return {
    suites: [...new Set(names)],
    repeats,
    sizes: [...new Set(sizes)].sort((a, b) => a - b),
    out: values.out ?? null,
    render: values.render ?? null,
    help: values.help === true,
  };
}

async function runSuites(a: BenchArgs): Promise<number> {
  const kernel = a.suites.some((n) => SUITES[n]?.kernel === true);
  if (kernel && isInitNetns(null)) throw new Error('refusing to run kernel benches in the root network namespace: run under `unshare --net` (npm run bench does)');
  const commit = currentCommit();
  const dir = a.out !== null ? resolve(a.out) : datedDir(RESULTS_ROOT, new Date(), commit, a.suites);
  process.stderr.write(`bench: ${a.suites.join(', ')}; ${a.repeats} repeat(s) of sizes ${a.sizes.join(',')}; commit ${commit}; results in ${dir}\n`);
  if (kernel) await runOk(['ip', '-batch', '-'], `link add name ${BRIDGE} type bridge\nlink set dev ${BRIDGE} up\n`);
  try {
    for (const n of a.suites) {
      const suite = SUITES[n];
      if (suite === undefined) continue;
      const la = loadavg();
      const when = new Date().toISOString();
      const t = performance.now();
      const out = await suite.run({ sizes: a.sizes, repeats: a.repeats });
      const files = writeResults(dir, { ...out, loadavg: la, when, commit, repeats: a.repeats });
      process.stderr.write(`  ${n}: ${((performance.now() - t) / 1000).toFixed(0)} s -> ${files.join(', ')}\n`);
    }
  } finally {
    if (kernel) await runCmd(['ip', 'link', 'del', BRIDGE]);
  }
  return 0;
}

export async function main(argv: string[]): Promise<number> {
  let a: BenchArgs;
  try {
    a = parseBenchArgs(argv);
  } catch (e) {
    if (!(e instanceof UsageError) && !String((e as NodeJS.ErrnoException).code).startsWith('ERR_PARSE_ARGS')) throw e;
    process.stderr.write(`bench: ${(e as Error).message}\nRun 'npm run bench -- --help' for usage.\n`);
    return 2;
  }
  if (a.help) {
    process.stdout.write(usage());
    return 0;
  }
  if (a.render !== null) {
    for (const f of renderDir(resolve(a.render))) process.stderr.write(`  ${f}\n`);
    return 0;
  }
  if (a.suites.length === 0) {
    // Running everything takes long and is rarely meant: say what there is instead.
    process.stderr.write(`bench: name the suites to run (or all)\n\n${usage()}`);
    return 2;
  }
  return runSuites(a);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) {
  main(process.argv.slice(2)).then(
    (c) => (process.exitCode = c),
    (e: unknown) => {
      process.stderr.write(`bench: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exitCode = 1;
    },
  );
}
