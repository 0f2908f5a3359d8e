// docs/errors.md lists every error code of src/errors.ts, with its kind and HTTP status.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { renderError } from '../../src/api/render-error.js';
import { ALL_ERRORS, BbError } from '../../src/errors.js';

// compiled to dist/test/unit/, so the repository root is three levels up
const DOC = new URL('../../../docs/errors.md', import.meta.url);

interface Row {
  code: string;
  kind: string;
  status: number;
  when: string;
}

function docRows(): Map<string, Row> {
  const rows = new Map<string, Row>();
  for (const line of readFileSync(DOC, 'utf8').split('\n')) {
    const m = /^\|\s*`(BB_ERR_[A-Z_]+)`\s*\|\s*([a-z-]+)\s*\|\s*(\d{3})\s*\|(.*)\|\s*$/.exec(line);
    if (m === null) continue;
    const [, code, kind, status, when] = m as unknown as [string, string, string, string, string];
    assert.equal(rows.has(code), false, `${code} is listed twice`);
    rows.set(code, { code, kind, status: Number(status), when: when.trim() });
  }
  return rows;
}

const errors = Object.entries(ALL_ERRORS).map(([name, Cls]) => ({ name, err: new Cls('test message') }));

test('every error class has a distinct BB_ERR_ code', () => {
  const codes = errors.map((e) => e.err.code);
  assert.equal(new Set(codes).size, codes.length);
  for (const { name, err } of errors) {
    assert.ok(err instanceof BbError, name);
    assert.match(err.code, /^BB_ERR_[A-Z_]+$/, name);
  }
});

test('docs/errors.md lists every code with its kind and HTTP status', () => {
  const rows = docRows();
  for (const { name, err } of errors) {
    const row = rows.get(err.code);
    assert.ok(row, `docs/errors.md does not list ${err.code} (${name})`);
    assert.equal(row.kind, err.kind, `${err.code}: kind`);
    assert.equal(row.status, renderError(err).status, `${err.code}: HTTP status`);
    assert.ok(row.when.length > 20, `${err.code}: say when it happens`);
  }
});

test('docs/errors.md lists no code that does not exist', () => {
  const codes = new Set(errors.map((e) => e.err.code));
  for (const code of docRows().keys()) assert.ok(codes.has(code), `docs/errors.md lists unknown code ${code}`);
});

test('no error kind renders as 404, and the body is {Err}', () => {
  for (const { err } of errors) {
    const a = renderError(err);
    assert.notEqual(a.status, 404, err.code);
    assert.ok(a.status >= 400 && a.status < 600);
    assert.deepEqual(a.body, { Err: 'test message' });
    assert.equal(a.code, err.code);
  }
});

test('foreign errors: 4xx kept (never 404), anything else is a 500', () => {
  assert.equal(renderError(Object.assign(new Error('too large'), { statusCode: 413, code: 'FST_ERR_CTP_BODY_TOO_LARGE' })).status, 413);
  assert.equal(renderError(Object.assign(new Error('x'), { statusCode: 404 })).status, 500);
  assert.deepEqual(renderError(new TypeError('oops')).body, { Err: 'internal error: oops' });
});
