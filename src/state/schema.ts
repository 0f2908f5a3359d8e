// The books' schema version, checked every time they are opened (meta.schema). Books newer than
// this code are refused before anything is written to them: an older batchbridge would misread
// what it does not know, and overwrite the version on its way. Older books are migrated in one
// transaction; docs/operations.md ("Upgrading") tells operators what each step changes.
//
//   1  the first release: networks, endpoints, intents, meta(schema). It wrote '1' on every open.
//   2  meta.owner_group (the link group that marks our interfaces; without it reconciliation
//      cannot tell ours from anyone's) is always present; endpoint records may carry macChosen
//      and ipv6Chosen (absent means false, so rows need no rewrite). Version 1 books get an
//      owner group drawn at random, and their booked interfaces the mark at the next
//      reconciliation (the books say they are ours).
import { randomInt } from 'node:crypto';
import type Database from 'better-sqlite3';
import { BooksVersionError } from '../errors.js';

export const BOOKS_SCHEMA = 2;

/**
 * Ownership marks are link groups 0x63000001..0x63ffffff: "c" in the high byte, away from the
 * groups batches use to delete veths (0x6262xxxx) and from the small numbers operators use.
 */
export const OWNER_GROUP_BASE = 0x63000000;
export const OWNER_GROUP_MAX = 0x63ffffff;

export function newOwnerGroup(): number {
  return OWNER_GROUP_BASE + randomInt(1, 0x1000000);
}

export function validOwnerGroup(v: number): boolean {
  return Number.isInteger(v) && v >= OWNER_GROUP_BASE && v <= OWNER_GROUP_MAX;
}

/** The version of open books: null for a database with no books in it yet. */
export function booksSchema(db: Database.Database, path: string): number | null {
  const meta = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").get();
  if (meta === undefined) return null;
  const row = db.prepare("SELECT value FROM meta WHERE key = 'schema'").get() as { value: string } | undefined;
  // Books without a version row predate the schema check; the first release wrote '1'.
  if (row === undefined) return 1;
  if (!/^[1-9]\d{0,5}$/.test(row.value)) throw new BooksVersionError(`the books at ${path} carry an unknown schema version ${JSON.stringify(row.value.slice(0, 20))}; nothing was changed`);
  return Number(row.value);
}

/** Refuses books newer than this code (before any write). */
export function refuseNewer(version: number | null, path: string): void {
  if (version !== null && version > BOOKS_SCHEMA) {
    throw new BooksVersionError(`the books at ${path} are schema version ${version}, newer than this batchbridge understands (${BOOKS_SCHEMA}): run the batchbridge that wrote them, or a newer one; nothing was changed`);
  }
}

const MIGRATIONS: Readonly<Record<number, (db: Database.Database) => void>> = {
  // 1 → 2: an owner group for books made before marks existed.
  1: (db) => {
    const row = db.prepare("SELECT value FROM meta WHERE key = 'owner_group'").get() as { value: string } | undefined;
    if (row === undefined || !validOwnerGroup(Number(row.value))) db.prepare("INSERT OR REPLACE INTO meta(key, value) VALUES ('owner_group', ?)").run(String(newOwnerGroup()));
  },
};

/** Migrates books of `from` to BOOKS_SCHEMA, in one transaction with the new version row. */
export function migrate(db: Database.Database, from: number): void {
  db.transaction(() => {
    for (let v = from; v < BOOKS_SCHEMA; v++) MIGRATIONS[v]?.(db);
    db.prepare("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema', ?)").run(String(BOOKS_SCHEMA));
  })();
}
