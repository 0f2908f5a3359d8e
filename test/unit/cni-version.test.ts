// Version negotiation: the supported versions, what each command needs, and the codes.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cniErrorBody } from '../../src/cni/cni-error.js';
import { negotiateVersion, SUPPORTED_VERSIONS, versionAnswer, versionAtLeast, type CniCommand } from '../../src/cni/version.js';

function fails(raw: unknown, command: CniCommand, code: number, re: RegExp): void {
  assert.throws(() => negotiateVersion(raw, command), (e: unknown) => {
    const b = cniErrorBody(e);
    assert.equal(b.code, code, `${String(raw)} ${command}: ${b.msg}`);
    assert.match(b.msg, re);
    return true;
  });
}

test('every supported version is accepted for ADD and DEL and answered in kind', () => {
  assert.deepEqual([...SUPPORTED_VERSIONS], ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0']);
  for (const v of SUPPORTED_VERSIONS) {
    assert.equal(negotiateVersion(v, 'ADD'), v);
    assert.equal(negotiateVersion(v, 'DEL'), v);
  }
});

test('unsupported versions are code 1, unreadable ones code 6', () => {
  for (const v of ['0.1.0', '0.2.0', '', undefined, '2.0.0', '1.2.0', '1.0']) fails(v, 'ADD', 1, /incompatible CNI versions: config is ".*", batchbridge-cni supports 0\.3\.0, 0\.3\.1, 0\.4\.0, 1\.0\.0, 1\.1\.0/);
  for (const v of ['abc', '1.0.0.0', '1.x', '-1.0.0']) fails(v, 'ADD', 6, /invalid cniVersion/);
  fails(100, 'ADD', 6, /cniVersion must be a string/);
});

test('CHECK needs 0.4.0, GC and STATUS 1.1.0 (code 1)', () => {
  fails('0.3.1', 'CHECK', 1, /does not allow CHECK \(it needs 0\.4\.0 or later\)/);
  assert.equal(negotiateVersion('0.4.0', 'CHECK'), '0.4.0');
  for (const c of ['GC', 'STATUS'] as const) {
    fails('1.0.0', c, 1, new RegExp(`does not allow ${c}`));
    assert.equal(negotiateVersion('1.1.0', c), '1.1.0');
  }
});

test('version comparison as libcni; the VERSION answer', () => {
  assert.ok(versionAtLeast('1.0.0', '0.4.0'));
  assert.ok(versionAtLeast('0.4.0', '0.4.0'));
  assert.ok(!versionAtLeast('0.3.1', '0.4.0'));
  assert.ok(!versionAtLeast('', '0.2.0'), '"" is 0.1.0');
  assert.ok(versionAtLeast('0.10.0', '0.4.0'), 'numeric, not lexical');
  assert.deepEqual(JSON.parse(versionAnswer()), { cniVersion: '1.1.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
});
