// The shape of src/, checked: imports flow one way between the layers docs/architecture.md
// names, with no cycles (type-only imports count too), and no file or function grows past a
// screenful or two. A backward import or a cycle fails here before anyone has to notice it.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const SRC = join(ROOT, 'src');

/**
 * Layers, lowest first. A module may import modules of its own folder and of lower layers only;
 * folders on one layer do not import each other. Keep in step with docs/architecture.md.
 */
export const LAYERS: readonly (readonly string[])[] = [
  ['errors.ts', 'log.ts'],
  ['domain'],
  ['state', 'tools'],
  ['ip', 'firewall', 'config', 'instance'],
  ['batching'],
  ['workers'],
  ['scheduler'],
  ['engine'],
  ['metrics'],
  ['api', 'cni'],
  ['server.ts'],
  ['cli'],
];

function unitOf(file: string): string {
  const rel = relative(SRC, file);
  const first = rel.split('/')[0] ?? rel;
  return rel.includes('/') ? first : rel;
}

function layerOf(unit: string): number {
  const i = LAYERS.findIndex((l) => l.includes(unit) || (unit.startsWith('cli-') && l.includes('cli')));
  return i;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) return sourceFiles(p);
    return p.endsWith('.ts') && !p.endsWith('.d.ts') ? [p] : [];
  });
}

interface Parsed {
  readonly imports: string[];
  readonly lines: number;
  readonly longFunctions: string[];
}

function parse(file: string): Parsed {
  const text = readFileSync(file, 'utf8');
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const imports: string[] = [];
  const longFunctions: string[] = [];
  const visit = (n: ts.Node): void => {
    const spec = (ts.isImportDeclaration(n) || ts.isExportDeclaration(n)) && n.moduleSpecifier !== undefined && ts.isStringLiteral(n.moduleSpecifier) ? n.moduleSpecifier.text : null;
    if (spec !== null && spec.startsWith('.')) imports.push(resolve(dirname(file), spec).replace(/\.js$/, '.ts'));
    if ((ts.isFunctionDeclaration(n) || ts.isMethodDeclaration(n) || ts.isArrowFunction(n) || ts.isFunctionExpression(n) || ts.isConstructorDeclaration(n)) && n.body !== undefined) {
      const a = sf.getLineAndCharacterOfPosition(n.getStart()).line;
      const b = sf.getLineAndCharacterOfPosition(n.end).line;
      if (b - a + 1 > 80) longFunctions.push(`${relative(ROOT, file)}:${a + 1} (${b - a + 1} lines)`);
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return { imports, lines: text.split('\n').length, longFunctions };
}

const files = sourceFiles(SRC);
const parsed = new Map(files.map((f) => [f, parse(f)]));

test('every src module belongs to a layer', () => {
  const unknown = files.filter((f) => layerOf(unitOf(f)) < 0).map((f) => relative(ROOT, f));
  assert.deepEqual(unknown, [], 'add new folders to LAYERS (and docs/architecture.md)');
});

test('imports flow one way: own folder or a lower layer only', () => {
  const bad: string[] = [];
  for (const [file, p] of parsed) {
    const from = unitOf(file);
    for (const target of p.imports) {
      const to = unitOf(target);
      if (to === from) continue;
      if (!(layerOf(to) < layerOf(from))) bad.push(`${relative(ROOT, file)} -> ${relative(ROOT, target)}`);
    }
  }
  assert.deepEqual(bad, []);
});

test('no import cycles, type-only imports included', () => {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[][] = [];
  let next = 0;
  const strong = (v: string): void => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of parsed.get(v)?.imports ?? []) {
      if (!parsed.has(w)) continue;
      if (!index.has(w)) {
        strong(w);
        low.set(v, Math.min(low.get(v) ?? 0, low.get(w) ?? 0));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v) ?? 0, index.get(w) ?? 0));
    }
    if (low.get(v) === index.get(v)) {
      const scc: string[] = [];
      for (let w = stack.pop(); w !== undefined; w = stack.pop()) {
        onStack.delete(w);
        scc.push(relative(ROOT, w));
        if (w === v) break;
      }
      if (scc.length > 1) cycles.push(scc);
    }
  };
  for (const f of files) if (!index.has(f)) strong(f);
  assert.deepEqual(cycles, []);
});

test('no src file over 400 lines, no function over 80', () => {
  const big = [...parsed].filter(([, p]) => p.lines > 400).map(([f, p]) => `${relative(ROOT, f)} (${p.lines} lines)`);
  assert.deepEqual(big, []);
  assert.deepEqual([...parsed.values()].flatMap((p) => p.longFunctions), []);
});
