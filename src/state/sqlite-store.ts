import { join } from 'node:path';
import { randomInt } from 'node:crypto';
import Database from 'better-sqlite3';
import { BOOKS_FILE, BOOKS_SIDE_FILES, prepareStateDir, refuseLinks, securePrivateFile } from './state-dir.js';
import type { BookChanges, StateStore } from './store.js';
import type { EndpointRecord, Intent, NetworkRecord } from './records.js';

const SCHEMA_VERSION = '1';
/**
 * Ownership marks are link groups 0x63000001..0x63ffffff: "c" in the high byte, away from the
 * groups batches use to delete veths (0x6262xxxx) and from the small numbers operators use.
 */
const OWNER_GROUP_BASE = 0x63000000;
const OWNER_GROUP_MAX = 0x63ffffff;

export class SqliteStateStore implements StateStore {
  private readonly db: Database.Database;
  private readonly stmts;

  constructor(stateDir: string) {
    // Everything is checked before anything is created or opened (src/state/state-dir.ts).
    const dir = prepareStateDir(stateDir);
    refuseLinks(dir, [BOOKS_FILE, ...BOOKS_SIDE_FILES]);
    // Create the file 0600 before SQLite opens it: the books name every container's addresses.
    securePrivateFile(dir, BOOKS_FILE, true);
    // SQLite gives new -wal/-shm files the database file's mode; this tightens those of an older
    // run. Only before SQLite opens them: closing any other descriptor of a file drops this
    // process's POSIX locks on it, SQLite's included.
    for (const side of BOOKS_SIDE_FILES) securePrivateFile(dir, side, false);
    this.db = new Database(join(dir, BOOKS_FILE));
    this.db.pragma('journal_mode = WAL');
    // NORMAL in WAL mode survives a process crash (kill -9) without fsync per commit; only a
    // power loss can drop the last transactions, and reconciliation repairs that.
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('busy_timeout = 5000');
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS networks (id TEXT PRIMARY KEY, bridge TEXT NOT NULL UNIQUE, record TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS endpoints (id TEXT PRIMARY KEY, network_id TEXT NOT NULL, host_if TEXT NOT NULL UNIQUE, record TEXT NOT NULL);
      CREATE INDEX IF NOT EXISTS endpoints_by_network ON endpoints(network_id);
      CREATE TABLE IF NOT EXISTS intents (batch_id INTEGER PRIMARY KEY, record TEXT NOT NULL);
    `);
    this.db.prepare('INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)').run('schema', SCHEMA_VERSION);
    this.stmts = {
      putNetwork: this.db.prepare('INSERT OR REPLACE INTO networks(id, bridge, record) VALUES (?, ?, ?)'),
      delNetwork: this.db.prepare('DELETE FROM networks WHERE id = ?'),
      putEndpoint: this.db.prepare('INSERT OR REPLACE INTO endpoints(id, network_id, host_if, record) VALUES (?, ?, ?, ?)'),
      delEndpoint: this.db.prepare('DELETE FROM endpoints WHERE id = ?'),
      putIntent: this.db.prepare('INSERT OR REPLACE INTO intents(batch_id, record) VALUES (?, ?)'),
      delIntent: this.db.prepare('DELETE FROM intents WHERE batch_id = ?'),
    };
  }

  ownerGroup(): number {
    const row = this.db.prepare("SELECT value FROM meta WHERE key = 'owner_group'").get() as { value: string } | undefined;
    const have = row === undefined ? NaN : Number(row.value);
    if (Number.isInteger(have) && have >= OWNER_GROUP_BASE && have <= OWNER_GROUP_MAX) return have;
    const made = OWNER_GROUP_BASE + randomInt(1, 0x1000000);
    this.db.prepare("INSERT OR REPLACE INTO meta(key, value) VALUES ('owner_group', ?)").run(String(made));
    return made;
  }

  loadNetworks(): NetworkRecord[] {
    return (this.db.prepare('SELECT record FROM networks').all() as Array<{ record: string }>).map((r) => JSON.parse(r.record) as NetworkRecord);
  }

  loadEndpoints(): EndpointRecord[] {
    return (this.db.prepare('SELECT record FROM endpoints').all() as Array<{ record: string }>).map((r) => JSON.parse(r.record) as EndpointRecord);
  }

  loadIntents(): Intent[] {
    return (this.db.prepare('SELECT record FROM intents ORDER BY batch_id').all() as Array<{ record: string }>).map((r) => JSON.parse(r.record) as Intent);
  }

  writeIntent(intent: Intent): void {
    this.stmts.putIntent.run(intent.batchId, JSON.stringify(intent));
  }

  commit(changes: BookChanges): void {
    this.commitAll([changes]);
  }

  commitAll(list: readonly BookChanges[]): void {
    this.db.transaction(() => {
      for (const changes of list) {
        for (const id of changes.deleteEndpoints ?? []) this.stmts.delEndpoint.run(id);
        for (const id of changes.deleteNetworks ?? []) this.stmts.delNetwork.run(id);
        for (const n of changes.putNetworks ?? []) this.stmts.putNetwork.run(n.spec.id, n.spec.bridge, JSON.stringify(n));
        for (const e of changes.putEndpoints ?? []) this.stmts.putEndpoint.run(e.id, e.networkId, e.host, JSON.stringify(e));
        for (const b of changes.clearIntents ?? []) this.stmts.delIntent.run(b);
      }
    })();
  }

  close(): void {
    this.db.close();
  }
}
