// Every error the daemon can meet becomes the spec's error structure with a deliberate code;
// docs/cni.md lists the codes.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { CNI_CODE, CNI_CODE_OF, cniErrorBody, renderCniError } from '../../src/cni/cni-error.js';
import { ALL_ERRORS, CniDelegateError, OverloadedError, ShuttingDownError, CniConfigError, KernelError } from '../../src/errors.js';

const DOC = new URL('../../../docs/cni.md', import.meta.url);

test('every error code of src/errors.ts has its CNI code chosen explicitly', () => {
  for (const [name, Cls] of Object.entries(ALL_ERRORS)) {
    const err = new Cls('x');
    assert.ok(err.code in CNI_CODE_OF, `${name} (${err.code}) has no entry in CNI_CODE_OF`);
    assert.equal(cniErrorBody(err).code, CNI_CODE_OF[err.code], name);
  }
  const used = new Set(Object.values(CNI_CODE_OF));
  for (const c of [1, 2, 3, 4, 5, 6, 7, 11]) assert.ok(used.has(c), `spec code ${c} is used`);
});

test('the body is {cniVersion, code, msg[, details]} and the exit status 1', () => {
  const a = renderCniError(new CniConfigError('bad thing'), { cniVersion: '0.4.0' });
  assert.equal(a.exitCode, 1);
  assert.equal(a.stdout, '{"cniVersion":"0.4.0","code":7,"msg":"bad thing"}\n');
  assert.deepEqual(cniErrorBody(new KernelError('x')), { cniVersion: '1.1.0', code: 105, msg: 'x' }, 'default version 1.1.0');
  assert.deepEqual(cniErrorBody(new TypeError('boom')), { cniVersion: '1.1.0', code: 100, msg: 'internal error: boom' });
  assert.deepEqual(cniErrorBody('weird'), { cniVersion: '1.1.0', code: 100, msg: 'internal error: weird' });
});

test('a delegated plugin\'s own code and details pass through; without a code it is 107', () => {
  assert.deepEqual(cniErrorBody(new CniDelegateError('IPAM plugin host-local failed (ADD): no IP addresses available', 7, 'range 198.18.64.0/30 full')), {
    cniVersion: '1.1.0', code: 7, msg: 'IPAM plugin host-local failed (ADD): no IP addresses available', details: 'range 198.18.64.0/30 full',
  });
  assert.equal(cniErrorBody(new CniDelegateError('x')).code, 107);
});

test('"cannot serve now" is 11, and 50 for STATUS', () => {
  for (const e of [new OverloadedError('busy'), new ShuttingDownError('bye')]) {
    assert.equal(cniErrorBody(e).code, 11);
    assert.equal(cniErrorBody(e, { command: 'STATUS' }).code, 50);
    assert.equal(cniErrorBody(e, { command: 'ADD' }).code, 11);
  }
  assert.equal(cniErrorBody(new CniConfigError('x'), { command: 'STATUS' }).code, 7, 'other STATUS errors keep their code');
});

test('docs/cni.md lists every CNI code batchbridge answers with', () => {
  const doc = readFileSync(DOC, 'utf8');
  for (const [name, code] of Object.entries(CNI_CODE)) {
    assert.match(doc, new RegExp(`^\\| ${code} \\|`, 'm'), `docs/cni.md has no row for code ${code} (${name})`);
  }
});
