// One batchbridge per state dir: two processes on the same books would each take the other's
// objects for orphans (issue 10, E). The lock must vanish with its process, kill -9 included,
// or a crash would keep the plugin from coming back.
//
// Node has no flock(2). SQLite takes POSIX record locks (fcntl F_SETLK), which the kernel drops
// when the process dies, and better-sqlite3 is already here. So the lock is a tiny SQLite
// database of its own, `batchbridge.lock`, held with `locking_mode=EXCLUSIVE` after one
// `BEGIN EXCLUSIVE`: SQLite then never releases its write lock until the connection closes.
// Not the books themselves: an exclusive lock on batchbridge.db would stop anyone else reading
// them (tests, `status`) while the plugin runs. Measured on this machine: a second process gets
// SQLITE_BUSY at once; after kill -9 of the holder the next one gets the lock at once;
// /proc/locks shows the holder's pid.
//
// POSIX locks belong to the process, and closing ANY descriptor of the file drops them all. So
// once the lock is held this process never opens the lock file except through SQLite (which
// knows), and a second acquire of a dir this process already holds is refused without touching it.
//
// Who holds it is written to `batchbridge.owner` (JSON) right after the lock is taken; it is
// believed only while the lock is held, and /proc/locks says which pid really holds it.
import { closeSync, constants, lstatSync, openSync, readFileSync, readlinkSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { InstanceConflictError } from '../errors.js';
import { prepareStateDir, refuseLinks, securePrivateFile } from './state-dir.js';

export const LOCK_FILE = 'batchbridge.lock';
export const OWNER_FILE = 'batchbridge.owner';
const OWNER_TMP = `${OWNER_FILE}.tmp`;
/** How long an acquire waits out a short hold (another process's `stateDirHolder` probe). */
const ACQUIRE_WAIT_MS = 500;

export interface InstanceInfo {
  readonly pid: number;
  /** `serve` (a plugin) or `reconcile` (an offline reconcile); `unknown` when only /proc/locks told us */
  readonly role: 'serve' | 'reconcile' | 'unknown';
  /** driver name and socket of a plugin; null otherwise */
  readonly name: string | null;
  readonly socketPath: string | null;
  readonly stateDir: string;
  /** the network namespace it runs in, as /proc/self/ns/net reads (`net:[4026531840]`) */
  readonly netns: string;
  readonly startedAt: string;
}

export function describeInstance(h: InstanceInfo): string {
  const what = h.role === 'serve' ? `batchbridge serve (pid ${h.pid}, name ${h.name ?? '?'}, socket ${h.socketPath ?? '?'}` : h.role === 'reconcile' ? `batchbridge reconcile (pid ${h.pid}` : `a process (pid ${h.pid}`;
  return `${what}, state dir ${h.stateDir}, network namespace ${h.netns})`;
}

export function ownNetns(): string {
  return readlinkSync('/proc/self/ns/net');
}

function dirKey(dir: string): string {
  const st = lstatSync(dir);
  return `${st.dev}:${st.ino}`;
}

/** Locks this process holds, by the state dir's dev:inode. */
const heldHere = new Map<string, InstanceInfo>();

function isBusy(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED';
}

/** The pid holding a POSIX write lock on `file`, from /proc/locks (null if none or unreadable). */
export function lockHolderPid(file: string): number | null {
  let text: string;
  try {
    const st = lstatSync(file, { bigint: true });
    text = readFileSync('/proc/locks', 'utf8');
    const major = ((st.dev >> 8n) & 0xfffn) | ((st.dev >> 32n) & ~0xfffn);
    const minor = (st.dev & 0xffn) | ((st.dev >> 12n) & ~0xffn);
    for (const line of text.split('\n')) {
      const m = /^\d+:\s+POSIX\s+\S+\s+WRITE\s+(\d+)\s+([0-9a-f]+):([0-9a-f]+):(\d+)\s/.exec(line);
      if (m === null) continue;
      if (BigInt(`0x${m[2]}`) === major && BigInt(`0x${m[3]}`) === minor && BigInt(m[4] ?? '-1') === st.ino) return Number(m[1]);
    }
  } catch {
    // no lock file, or no /proc
  }
  return null;
}

function readOwner(dir: string): InstanceInfo | null {
  let fd: number;
  try {
    fd = openSync(join(dir, OWNER_FILE), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch {
    return null;
  }
  try {
    const v = JSON.parse(readFileSync(fd, 'utf8')) as Partial<InstanceInfo>;
    if (typeof v.pid !== 'number' || typeof v.stateDir !== 'string' || typeof v.netns !== 'string') return null;
    return {
      pid: v.pid,
      role: v.role === 'serve' || v.role === 'reconcile' ? v.role : 'unknown',
      name: typeof v.name === 'string' ? v.name : null,
      socketPath: typeof v.socketPath === 'string' ? v.socketPath : null,
      stateDir: v.stateDir,
      netns: v.netns,
      startedAt: typeof v.startedAt === 'string' ? v.startedAt : '',
    };
  } catch {
    return null;
  } finally {
    closeSync(fd);
  }
}

function writeOwner(dir: string, info: InstanceInfo): void {
  const tmp = join(dir, OWNER_TMP);
  try {
    unlinkSync(tmp); // left by a crash; unlink removes a link itself, never its target
  } catch {
    // none
  }
  const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    writeSync(fd, `${JSON.stringify(info)}\n`);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, join(dir, OWNER_FILE));
}

/**
 * Does a process serve from (hold) this state dir, and which? Null when nobody holds it.
 * Safe to call from any process, the holder's own included.
 */
export function stateDirHolder(stateDir: string): InstanceInfo | null {
  let dir: string;
  try {
    dir = prepareStateDirReadOnly(stateDir);
  } catch {
    return null;
  }
  const mine = heldHere.get(dirKey(dir));
  if (mine !== undefined) return mine;
  const lockPath = join(dir, LOCK_FILE);
  try {
    if (!lstatSync(lockPath).isFile()) return null; // acquire refuses anything else, so nobody holds it
  } catch {
    return null;
  }
  let held = false;
  let probe: Database.Database | null = null;
  try {
    probe = new Database(lockPath, { readonly: true, fileMustExist: true, timeout: 0 });
    probe.prepare('SELECT count(*) FROM sqlite_master').get();
  } catch (err) {
    held = isBusy(err);
  } finally {
    probe?.close();
  }
  if (!held) return null;
  const owner = readOwner(dir);
  const pid = lockHolderPid(lockPath);
  if (owner !== null && (pid === null || owner.pid === pid)) return owner;
  return unknownHolder(dir, pid);
}

/** A holder known only from /proc/locks (its owner record is missing or not yet written). */
function unknownHolder(dir: string, pid: number | null): InstanceInfo {
  return { pid: pid ?? -1, role: 'unknown', name: null, socketPath: null, stateDir: dir, netns: '?', startedAt: '' };
}

/** Resolve a state dir that must already exist, without creating anything. */
function prepareStateDirReadOnly(stateDir: string): string {
  lstatSync(stateDir); // throws when missing: then nobody holds it
  return prepareStateDir(stateDir);
}

export type LockRole = Pick<InstanceInfo, 'role' | 'name' | 'socketPath'>;

/** Who this process is, for the lock's owner record and the namespace guard's answer. */
export function instanceInfo(role: LockRole, stateDir: string): InstanceInfo {
  return { pid: process.pid, ...role, stateDir: resolve(stateDir), netns: ownNetns(), startedAt: new Date().toISOString() };
}

/** The state dir's lock, held until release() or the process's death. */
export class StateDirLock {
  private released = false;

  private constructor(
    private readonly db: Database.Database,
    private readonly key: string,
    readonly info: InstanceInfo,
  ) {}

  /**
   * Validate the state dir (src/state/state-dir.ts; created 0700 if missing) and take its lock
   * for `info` (see instanceInfo), or throw InstanceConflictError naming the holder.
   */
  static acquire(info: InstanceInfo): StateDirLock {
    const dir = prepareStateDir(info.stateDir);
    const key = dirKey(dir);
    const mine = heldHere.get(key);
    if (mine !== undefined) throw conflict(dir, mine);
    refuseLinks(dir, [LOCK_FILE, `${LOCK_FILE}-journal`, OWNER_FILE, OWNER_TMP]);
    // Before SQLite opens it (see the top of this file about closing descriptors).
    securePrivateFile(dir, LOCK_FILE, true);
    const db = new Database(join(dir, LOCK_FILE), { timeout: ACQUIRE_WAIT_MS });
    try {
      db.pragma('locking_mode = EXCLUSIVE');
      db.pragma('journal_mode = MEMORY'); // no -journal file beside the lock
      db.exec('BEGIN EXCLUSIVE');
      db.exec('COMMIT');
    } catch (err) {
      db.close();
      if (!isBusy(err)) throw err;
      const holder = stateDirHolder(dir);
      throw conflict(dir, holder ?? unknownHolder(dir, lockHolderPid(join(dir, LOCK_FILE))));
    }
    try {
      writeOwner(dir, info);
    } catch (err) {
      db.close();
      throw err;
    }
    heldHere.set(key, info);
    return new StateDirLock(db, key, info);
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    try {
      unlinkSync(join(this.info.stateDir, OWNER_FILE));
    } catch {
      // already gone
    }
    heldHere.delete(this.key);
    this.db.close();
  }
}

function conflict(dir: string, holder: InstanceInfo): InstanceConflictError {
  return new InstanceConflictError(`the state dir ${dir} is in use by ${describeInstance(holder)}; one batchbridge per state dir (nothing was changed)`);
}
