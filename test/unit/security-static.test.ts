// Security properties that need no kernel: no shell and no process spawning outside
// src/tools/spawn.ts, and the books' files readable by root only.
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { SqliteStateStore } from '../../src/state/sqlite-store.js';

const SRC = fileURLToPath(new URL('../../../src/', import.meta.url));

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    return e.isDirectory() ? sources(p) : e.name.endsWith('.ts') ? [p] : [];
  });
}

/** Strip comments so that prose about `exec(` does not count. */
function code(text: string): string {
  return text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`])\/\/.*$/gm, '$1');
}

test('no shell, and process spawning only in src/tools/spawn.ts', () => {
  const files = sources(SRC);
  assert.ok(files.length > 20, `found only ${files.length} source files under ${SRC}`);
  const offenders: string[] = [];
  for (const f of files) {
    const rel = relative(SRC, f);
    const text = code(readFileSync(f, 'utf8'));
    if (/shell\s*:(?!\s*false\b)/.test(text)) offenders.push(`${rel}: a shell option other than false`);
    if (rel === join('tools', 'spawn.ts')) {
      assert.match(text, /shell:\s*false/, 'spawn.ts passes shell: false explicitly');
      continue;
    }
    if (/['"](?:node:)?child_process['"]/.test(text)) offenders.push(`${rel}: imports child_process`);
    if (/from\s+['"]execa['"]/.test(text)) offenders.push(`${rel}: imports execa`);
    // exec()/spawn() can only come from those two modules (any import form, static or dynamic,
    // names them in quotes), so banning the modules bans the calls. RegExp#exec and our own
    // KernelExecutor.exec() are not process spawns.
    if (/\bprocess\.binding\s*\(|['"]node:worker_threads['"]/.test(text) && !rel.startsWith('workers')) offenders.push(`${rel}: low-level process access`);
    if (/\b(?:execSync|execFileSync|spawnSync)\b/.test(text)) offenders.push(`${rel}: uses a synchronous spawn`);
    if (/\$\s*`|execaCommand|\beval\s*\(|new Function\s*\(/.test(text)) offenders.push(`${rel}: a command string or dynamic code`);
  }
  assert.deepEqual(offenders, []);
});

test('the books are 0600 in a 0700 directory (db, -wal, -shm)', () => {
  const parent = mkdtempSync(join(tmpdir(), 'bbt-sec-'));
  const old = process.umask(0o022); // a permissive umask must not matter
  try {
    const dir = join(parent, 'state');
    const store = new SqliteStateStore(dir);
    // Write something so that SQLite creates the -wal and -shm files.
    store.writeIntent({ batchId: 1, createdAt: 0, items: [] });
    store.commit({ clearIntents: [1] });
    const files = readdirSync(dir);
    for (const suffix of ['', '-wal', '-shm']) assert.ok(files.includes(`batchbridge.db${suffix}`), `batchbridge.db${suffix} exists (${files.join(', ')})`);
    for (const f of files) {
      const mode = statSync(join(dir, f)).mode & 0o777;
      assert.equal(mode.toString(8), '600', `${f} is mode ${mode.toString(8)}`);
    }
    assert.equal((statSync(dir).mode & 0o777).toString(8), '700', 'state dir');
    store.close();
  } finally {
    process.umask(old);
    rmSync(parent, { recursive: true, force: true });
  }
});
