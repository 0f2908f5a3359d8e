// The books' schema version (src/state/schema.ts): version-1 books, made here by SQL exactly as
// the first release made them, are migrated to version 2 on open and keep every row; books of a
// newer version are refused untouched; fresh books start at the current version.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { BooksVersionError } from '../../src/errors.js';
import { BOOKS_SCHEMA, OWNER_GROUP_BASE, OWNER_GROUP_MAX } from '../../src/state/schema.js';
import { readBooksSnapshot, SqliteStateStore } from '../../src/state/sqlite-store.js';

const NET = 'a'.repeat(64);
const EP = 'b'.repeat(64);

/** Books as the first release wrote them: its DDL, meta.schema '1', no owner_group, v1 records. */
function versionOneBooks(dir: string): void {
  const db = new Database(join(dir, 'batchbridge.db'));
  db.pragma('journal_mode = WAL');
  db.exec(`
    CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS networks (id TEXT PRIMARY KEY, bridge TEXT NOT NULL UNIQUE, record TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS endpoints (id TEXT PRIMARY KEY, network_id TEXT NOT NULL, host_if TEXT NOT NULL UNIQUE, record TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS endpoints_by_network ON endpoints(network_id);
    CREATE TABLE IF NOT EXISTS intents (batch_id INTEGER PRIMARY KEY, record TEXT NOT NULL);
  `);
  db.prepare("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema', '1')").run();
  const spec = { id: NET, bridge: 'bb-aaaaaaaaaaaa', mtu: 1500 };
  db.prepare('INSERT INTO networks(id, bridge, record) VALUES (?, ?, ?)').run(NET, spec.bridge, JSON.stringify({ spec, createdBridge: true, addedAddrs: [], createdAt: 1 }));
  const ep = { id: EP, networkId: NET, host: 'veth1234567', peer: 'veth7654321', ipv4: '198.18.0.2/24', ipv6: null, mac: '02:42:c6:12:00:02', joined: false, exposed: [], requested: [], mappings: [], createdAt: 2 };
  db.prepare('INSERT INTO endpoints(id, network_id, host_if, record) VALUES (?, ?, ?, ?)').run(EP, NET, ep.host, JSON.stringify(ep));
  db.prepare('INSERT INTO intents(batch_id, record) VALUES (?, ?)').run(7, JSON.stringify({ batchId: 7, createdAt: 3, items: [{ kind: 'endpoint-delete', endpointId: EP, host: ep.host }] }));
  db.close();
}

function meta(dir: string): Record<string, string> {
  const db = new Database(join(dir, 'batchbridge.db'), { readonly: true });
  try {
    return Object.fromEntries((db.prepare('SELECT key, value FROM meta').all() as Array<{ key: string; value: string }>).map((r) => [r.key, r.value]));
  } finally {
    db.close();
  }
}

function tempStateDir(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync('/tmp/bbt-books-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('version-1 books are migrated to version 2 on open, every row kept', (t) => {
  const dir = tempStateDir(t);
  versionOneBooks(dir);
  assert.equal(readBooksSnapshot(dir)?.ownerGroup, null, 'a version-1 snapshot has no mark yet');
  const store = new SqliteStateStore(dir);
  try {
    assert.equal(store.openedSchema, 1);
    const m = meta(dir);
    assert.equal(m.schema, String(BOOKS_SCHEMA));
    const group = Number(m.owner_group);
    assert.ok(group >= OWNER_GROUP_BASE && group <= OWNER_GROUP_MAX, `an owner group in our range: ${m.owner_group}`);
    assert.equal(store.ownerGroup(), group, 'the migrated mark is the one used');
    assert.deepEqual(store.loadNetworks().map((n) => n.spec.id), [NET]);
    const [ep] = store.loadEndpoints();
    assert.equal(ep?.id, EP);
    assert.equal(ep?.macChosen, undefined, 'absent means false: the rows are not rewritten');
    assert.deepEqual(store.loadIntents().map((i) => i.batchId), [7]);
  } finally {
    store.close();
  }
  // Opened again: already current, nothing to migrate, the mark stays.
  const again = new SqliteStateStore(dir);
  try {
    assert.equal(again.openedSchema, BOOKS_SCHEMA);
    assert.equal(again.ownerGroup(), Number(meta(dir).owner_group));
  } finally {
    again.close();
  }
});

test('books of a newer version are refused, and left untouched', (t) => {
  const dir = tempStateDir(t);
  versionOneBooks(dir);
  const db = new Database(join(dir, 'batchbridge.db'));
  db.prepare("UPDATE meta SET value = ? WHERE key = 'schema'").run(String(BOOKS_SCHEMA + 1));
  db.close();
  const before = readFileSync(join(dir, 'batchbridge.db'));
  assert.throws(() => new SqliteStateStore(dir), (err: unknown) => {
    assert.ok(err instanceof BooksVersionError);
    assert.match(err.message, new RegExp(`schema version ${BOOKS_SCHEMA + 1}, newer than this batchbridge understands \\(${BOOKS_SCHEMA}\\).*nothing was changed`));
    return true;
  });
  assert.throws(() => readBooksSnapshot(dir), BooksVersionError);
  assert.deepEqual(readFileSync(join(dir, 'batchbridge.db')), before, 'not a byte changed');
  assert.equal(meta(dir).schema, String(BOOKS_SCHEMA + 1));
});

test('an unreadable version is refused; fresh books start at the current version', (t) => {
  const dir = tempStateDir(t);
  versionOneBooks(dir);
  const db = new Database(join(dir, 'batchbridge.db'));
  db.prepare("UPDATE meta SET value = 'two' WHERE key = 'schema'").run();
  db.close();
  assert.throws(() => new SqliteStateStore(dir), /unknown schema version "two"/);
  const fresh = tempStateDir(t);
  const store = new SqliteStateStore(fresh);
  store.close();
  assert.equal(meta(fresh).schema, String(BOOKS_SCHEMA));
});
