import { join } from 'node:path';
import Database from 'better-sqlite3';
import { BOOKS_FILE, BOOKS_SIDE_FILES, prepareStateDir, refuseLinks, securePrivateFile } from './state-dir.js';
import type { BookChanges, StateStore } from './store.js';
import type { EndpointRecord, Intent, NetworkRecord } from './records.js';
import { BOOKS_SCHEMA, booksSchema, migrate, newOwnerGroup, refuseNewer, validOwnerGroup } from './schema.js';

const TABLES = `
  CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
  CREATE TABLE IF NOT EXISTS networks (id TEXT PRIMARY KEY, bridge TEXT NOT NULL UNIQUE, record TEXT NOT NULL);
  CREATE TABLE IF NOT EXISTS endpoints (id TEXT PRIMARY KEY, network_id TEXT NOT NULL, host_if TEXT NOT NULL UNIQUE, record TEXT NOT NULL);
  CREATE INDEX IF NOT EXISTS endpoints_by_network ON endpoints(network_id);
  CREATE TABLE IF NOT EXISTS intents (batch_id INTEGER PRIMARY KEY, record TEXT NOT NULL);
`;

export class SqliteStateStore implements StateStore {
  private readonly db: Database.Database;
  private readonly stmts;
  /** the schema version the books had when opened (null: made now); BOOKS_SCHEMA once open */
  readonly openedSchema: number | null;

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
    const path = join(dir, BOOKS_FILE);
    this.db = new Database(path);
    // Before anything is written: books of a newer batchbridge are refused untouched.
    try {
      this.openedSchema = booksSchema(this.db, path);
      refuseNewer(this.openedSchema, path);
    } catch (err) {
      this.db.close();
      throw err;
    }
    this.db.pragma('journal_mode = WAL');
    // NORMAL in WAL mode survives a process crash (kill -9) without fsync per commit; only a
    // power loss can drop the last transactions, and reconciliation repairs that.
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('busy_timeout = 5000');
    this.db.exec(TABLES);
    if (this.openedSchema === null) this.db.prepare("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema', ?)").run(String(BOOKS_SCHEMA));
    else if (this.openedSchema < BOOKS_SCHEMA) migrate(this.db, this.openedSchema);
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
    if (validOwnerGroup(have)) return have;
    const made = newOwnerGroup();
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

/** What `batchbridge cleanup` reads: the books as they are, opened read-only (no migration). */
export interface BooksSnapshot {
  readonly networks: NetworkRecord[];
  readonly endpoints: EndpointRecord[];
  readonly intents: Intent[];
  /** null for books that never had one (version 1 books before their first reconciliation) */
  readonly ownerGroup: number | null;
}

/** The books in `stateDir`, read-only; null when there are none. Newer books are refused. */
export function readBooksSnapshot(stateDir: string): BooksSnapshot | null {
  const dir = prepareStateDir(stateDir);
  refuseLinks(dir, [BOOKS_FILE, ...BOOKS_SIDE_FILES]);
  const path = join(dir, BOOKS_FILE);
  let db: Database.Database;
  try {
    db = new Database(path, { readonly: true, fileMustExist: true });
  } catch (err) {
    if ((err as { code?: unknown }).code === 'SQLITE_CANTOPEN') return null;
    throw err;
  }
  try {
    const schema = booksSchema(db, path);
    refuseNewer(schema, path);
    if (schema === null) return null;
    const rows = (sql: string): string[] => (db.prepare(sql).all() as Array<{ record: string }>).map((r) => r.record);
    const mark = db.prepare("SELECT value FROM meta WHERE key = 'owner_group'").get() as { value: string } | undefined;
    return {
      networks: rows('SELECT record FROM networks').map((r) => JSON.parse(r) as NetworkRecord),
      endpoints: rows('SELECT record FROM endpoints').map((r) => JSON.parse(r) as EndpointRecord),
      intents: rows('SELECT record FROM intents ORDER BY batch_id').map((r) => JSON.parse(r) as Intent),
      ownerGroup: mark !== undefined && validOwnerGroup(Number(mark.value)) ? Number(mark.value) : null,
    };
  } finally {
    db.close();
  }
}
