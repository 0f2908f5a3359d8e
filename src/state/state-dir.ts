// The state dir holds the books: every container's addresses and ports, and the intents that
// reconciliation acts on. Whoever can write there can make batchbridge delete or create kernel
// objects, so it must be root's alone, and no file in it may lead elsewhere through a symlink.
// (A symlinked batchbridge.db used to get its target chmodded before SQLite refused it.)
//
// Everything here refuses before it changes anything: a bad state dir is reported with what is
// wrong and how to fix it, and nothing is created, chmodded or opened for writing.
import { closeSync, constants, fchmodSync, fstatSync, lstatSync, mkdirSync, openSync, type Stats } from 'node:fs';
import { join, resolve } from 'node:path';
import { StateDirUnsafeError } from '../errors.js';

export const BOOKS_FILE = 'batchbridge.db';
/** Files SQLite makes beside the books; none may be a symlink when we open them. */
export const BOOKS_SIDE_FILES = [`${BOOKS_FILE}-wal`, `${BOOKS_FILE}-shm`, `${BOOKS_FILE}-journal`] as const;

function lstatOrNull(path: string): Stats | null {
  try {
    return lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

function unsafe(path: string, why: string, fix: string): StateDirUnsafeError {
  return new StateDirUnsafeError(`refusing to use ${path}: ${why}; nothing was changed (${fix})`);
}

/** Why a state dir (lstat'ed, so a symlink shows as one) may not hold books, or null. */
export function stateDirProblem(dir: string, st: Stats): StateDirUnsafeError | null {
  if (st.isSymbolicLink()) return unsafe(dir, 'the state dir is a symlink', 'give --state-dir the real directory');
  if (!st.isDirectory()) return unsafe(dir, 'the state dir is not a directory', 'point --state-dir at a directory');
  if (st.uid !== 0) return unsafe(dir, `the state dir is owned by uid ${st.uid}, not root`, `chown root: ${dir}`);
  if ((st.mode & 0o022) !== 0) {
    const who = [(st.mode & 0o020) !== 0 ? 'its group' : '', (st.mode & 0o002) !== 0 ? 'others' : ''].filter((w) => w !== '').join(' and ');
    return unsafe(dir, `the state dir is writable by ${who} (mode ${(st.mode & 0o777).toString(8)})`, `chmod 0700 ${dir}`);
  }
  return null;
}

/**
 * Make sure `dir` may hold books: create it 0700 if missing, otherwise it must be a real directory
 * (not a symlink) owned by root and not writable by group or others. Returns the absolute path.
 */
export function prepareStateDir(dir: string): string {
  const abs = resolve(dir);
  let st = lstatOrNull(abs);
  if (st === null) {
    mkdirSync(abs, { recursive: true, mode: 0o700 });
    st = lstatSync(abs);
  }
  const problem = stateDirProblem(abs, st);
  if (problem !== null) throw problem;
  return abs;
}

/** Refuse when any of `names` in `dir` is a symlink or something other than a regular file. */
export function refuseLinks(dir: string, names: readonly string[]): void {
  for (const name of names) {
    const path = join(dir, name);
    const st = lstatOrNull(path);
    if (st === null) continue;
    if (st.isSymbolicLink()) throw unsafe(path, 'it is a symlink', `remove the link; batchbridge never follows one in its state dir`);
    if (!st.isFile()) throw unsafe(path, 'it is not a regular file', 'remove it');
  }
}

/**
 * Open (creating it 0600 when `create`) a file of the state dir without following a symlink, and
 * make it 0600 root-owned through the descriptor (never chmod by path: that follows links).
 * Returns false when the file does not exist and `create` is false.
 */
export function securePrivateFile(dir: string, name: string, create: boolean): boolean {
  const path = join(dir, name);
  // (libuv adds O_CLOEXEC to every open.)
  const flags = constants.O_RDWR | constants.O_NOFOLLOW | constants.O_NONBLOCK | (create ? constants.O_CREAT : 0);
  let fd: number;
  try {
    fd = openSync(path, flags, 0o600);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && !create) return false;
    if (code === 'ELOOP') throw unsafe(path, 'it is a symlink', 'remove the link; batchbridge never follows one in its state dir');
    if (code === 'EISDIR' || code === 'ENXIO') throw unsafe(path, 'it is not a regular file', 'remove it');
    throw err;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw unsafe(path, 'it is not a regular file', 'remove it');
    if (st.uid !== 0) throw unsafe(path, `it is owned by uid ${st.uid}, not root`, `chown root: ${path}`);
    if ((st.mode & 0o777) !== 0o600) fchmodSync(fd, 0o600);
  } finally {
    closeSync(fd);
  }
  return true;
}
