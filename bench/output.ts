// Where bench results go and how they are written. By default a new folder per date and commit,
// bench/results/<YYYY-MM-DD>-<commit>[-dirty][-N]/, so committed results are never overwritten:
// a later run of the same suite on the same day and commit gets the next free -N.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { svgChart } from './chart.js';
import { markdown, type SuiteResult } from './results.js';

/** The repository (from dist/bench/). */
export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const RESULTS_ROOT = join(REPO_ROOT, 'bench', 'results');

/** Short commit of the checkout, with "-dirty" when tracked files differ from it. */
export function currentCommit(repo = REPO_ROOT): string {
  const git = (...args: string[]): string | null => {
    const r = spawnSync('git', ['-C', repo, ...args], { encoding: 'utf8' });
    return r.status === 0 ? r.stdout.trim() : null;
  };
  const head = git('rev-parse', '--short=7', 'HEAD');
  if (head === null) return 'unknown';
  return git('status', '--porcelain', '--untracked-files=no') === '' ? head : `${head}-dirty`;
}

export function suiteFiles(suite: string): string[] {
  return [`${suite}.json`, `${suite}.md`, `${suite}.svg`];
}

/**
 * The dated folder for this run: `<root>/<date>-<commit>`, or with -2, -3, … the first one that
 * holds none of `suites`' files yet (so suites run one after another on one day share a folder).
 */
export function datedDir(root: string, date: Date, commit: string, suites: readonly string[], exists: (p: string) => boolean = existsSync): string {
  const base = join(root, `${date.toISOString().slice(0, 10)}-${commit}`);
  for (let n = 1; ; n++) {
    const dir = n === 1 ? base : `${base}-${n}`;
    if (!suites.some((s) => suiteFiles(s).some((f) => exists(join(dir, f))))) return dir;
  }
}

/** Writes <suite>.json (unless `json` is false), .md and .svg into `dir`; returns their paths. */
export function writeResults(dir: string, r: SuiteResult, json = true): string[] {
  mkdirSync(dir, { recursive: true });
  const [j, md, svg] = suiteFiles(r.suite).map((f) => join(dir, f)) as [string, string, string];
  if (json) writeFileSync(j, `${JSON.stringify(r, null, 2)}\n`);
  writeFileSync(md, markdown(r));
  writeFileSync(svg, svgChart(r));
  return json ? [j, md, svg] : [md, svg];
}

/** Draws the tables and charts again from the JSON files in `dir` (after a change to the drawing). */
export function renderDir(dir: string): string[] {
  const written: string[] = [];
  for (const f of readdirSync(dir).filter((n) => n.endsWith('.json')).sort()) {
    const r = JSON.parse(readFileSync(join(dir, f), 'utf8')) as Partial<SuiteResult>;
    // Only suite results (targets-*.json and others have no series).
    if (typeof r.suite !== 'string' || !Array.isArray(r.series)) continue;
    written.push(...writeResults(dir, r as SuiteResult, false));
  }
  return written;
}
