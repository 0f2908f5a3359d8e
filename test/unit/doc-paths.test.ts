// Every file or folder the docs name still exists, so the docs cannot drift from the code's
// layout again (issue 11 moved most of src/ and left docs pointing at files that were gone).
// Checked: paths under src/, test/, bench/ and scripts/ (also as `dist/…` compiled output, whose
// source is the .ts beside it, and as `../…` links from docs/), and code spans that are a bare
// file name (`lines.ts`), which must name a file somewhere in those folders.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const TREES = ['src', 'test', 'bench', 'scripts'];

function docs(): string[] {
  const inDocs = readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`);
  const readmes = walk('src').filter((f) => basename(f) === 'README.md');
  return ['README.md', ...inDocs, ...readmes];
}

function walk(rel: string): string[] {
  return readdirSync(join(ROOT, rel), { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(`${rel}/${e.name}`) : [`${rel}/${e.name}`],
  );
}

// Not preceded by a name character or a slash, so `--reply-src/--reply-dst` and paths of other
// projects do not count; a leading `dist/` or `../` is kept apart. Placeholders end the match
// (`bench/results/<date>-<commit>/` checks `bench/results/`).
const PATH = /(?<![\w./-])(dist\/|\.\.\/)?((?:src|test|bench|scripts)\/[\w.*/-]*)/g;
const BARE = /`([\w.-]+\.(?:ts|c|sh|mjs|cjs))`/g;

/** The repository path a mention stands for: compiled output maps to its TypeScript source. */
function sourceOf(prefix: string | undefined, path: string): string {
  const p = path.replace(/[.,]+$/, '');
  return prefix === 'dist/' ? p.replace(/\.js$/, '.ts') : p;
}

function exists(path: string): boolean {
  if (!path.includes('*')) return existsSync(join(ROOT, path));
  // A glob in the last part only: at least one file must match it.
  const dir = dirname(path);
  const re = new RegExp(`^${basename(path).split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
  return existsSync(join(ROOT, dir)) && readdirSync(join(ROOT, dir)).some((f) => re.test(f));
}

test('every src/, test/, bench/ and scripts/ path the docs name exists', () => {
  const missing: string[] = [];
  let seen = 0;
  for (const doc of docs()) {
    const lines = readFileSync(join(ROOT, doc), 'utf8').split('\n');
    lines.forEach((line, i) => {
      for (const m of line.matchAll(PATH)) {
        seen++;
        const path = sourceOf(m[1], m[2] ?? '');
        if (!exists(path)) missing.push(`${doc}:${i + 1}: ${m[0]}`);
      }
    });
  }
  assert.ok(seen > 100, `only ${seen} path mentions found: is the pattern still right?`);
  assert.deepEqual(missing, [], 'the docs name paths that do not exist');
});

test('every bare file name in a code span names a file of the repository', () => {
  const names = new Set(TREES.flatMap((t) => walk(t)).map((f) => basename(f)));
  const missing: string[] = [];
  for (const doc of docs()) {
    const lines = readFileSync(join(ROOT, doc), 'utf8').split('\n');
    lines.forEach((line, i) => {
      for (const m of line.matchAll(BARE)) if (!names.has(m[1] ?? '')) missing.push(`${doc}:${i + 1}: ${m[0]}`);
    });
  }
  assert.deepEqual(missing, [], 'the docs name files that do not exist');
});

test('the checks see a missing path', () => {
  // Guards the two patterns themselves: a stale mention of each kind must be caught.
  const stale = 'see `src/scheduler/driver.ts`, (../bench/gone.svg), `dist/scripts/gone/main.js` and `plan-ports.ts`';
  const paths = [...stale.matchAll(PATH)].map((m) => sourceOf(m[1], m[2] ?? ''));
  assert.deepEqual(paths, ['src/scheduler/driver.ts', 'bench/gone.svg', 'scripts/gone/main.ts']);
  assert.ok(paths.every((p) => !exists(p)));
  assert.deepEqual([...stale.matchAll(BARE)].map((m) => m[1]), ['plan-ports.ts']);
  assert.ok(exists('bench/results/2026-11-27-f1676f1/targets-*.json'));
  assert.ok(!exists('bench/results/2026-11-27-f1676f1/nothing-*.json'));
  assert.deepEqual([...'conntrack -D --reply-src/--reply-dst'.matchAll(PATH)], []);
});
