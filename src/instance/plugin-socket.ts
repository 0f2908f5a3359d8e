// The plugin socket `<socket-dir>/<name>.sock`. A live socket is never unlinked (that is how a
// second instance used to take over a running plugin's clients, issue 10, E): only a socket
// nobody listens on (connect gives ECONNREFUSED) is replaced, anything that is not a socket is
// refused, and at exit the socket is removed only if it is still the one we bound.
import { chmodSync, lstatSync, readdirSync, renameSync, unlinkSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { connect } from 'node:net';
import { InstanceConflictError } from '../errors.js';

const PROBE_TIMEOUT_MS = 1000;

type Probe = 'absent' | 'stale' | 'live';

/** What is at `path`: nothing, a socket nobody listens on, or a socket somebody answers on. */
function probe(path: string): Promise<Probe> {
  return new Promise((resolve) => {
    const c = connect({ path });
    const done = (v: Probe): void => {
      clearTimeout(timer);
      c.destroy();
      resolve(v);
    };
    // A listener whose backlog is full does not accept in time; it is still alive.
    const timer = setTimeout(() => done('live'), PROBE_TIMEOUT_MS);
    c.on('connect', () => done('live'));
    c.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNREFUSED') done('stale');
      else if (err.code === 'ENOENT') done('absent');
      else done('live'); // EAGAIN (backlog full), EACCES, …: not provably dead, so not ours to remove
    });
  });
}

/**
 * Refuse (InstanceConflictError) when `path` is something other than a socket, or a socket that
 * answers (`whoAnswers` may name the process). Returns whether nothing or a stale socket is
 * there (bindSocketPath replaces it).
 */
export async function checkSocketPath(path: string, whoAnswers: () => Promise<string | null> = async () => null): Promise<'absent' | 'stale'> {
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'absent';
    throw err;
  }
  if (!isSocket) throw new InstanceConflictError(`${path} exists and is not a socket; batchbridge will not replace it (nothing was changed)`);
  const p = await probe(path);
  if (p === 'live') {
    const who = (await whoAnswers()) ?? 'another process (a running plugin?)';
    throw new InstanceConflictError(`${path} is answered by ${who}; batchbridge never unlinks a live socket and refuses to start (nothing was changed)`);
  }
  return p;
}

export interface SocketIdentity {
  readonly dev: number;
  readonly ino: number;
}

/**
 * Bind through `listen` and put the socket at `path`: a stale socket is replaced, a live one or a
 * non-socket refused. Returns the socket's identity for removeSocketIfOurs.
 *
 * libuv unlinks the path a server was bound to when the server closes, whatever is there by then
 * (measured: a file put in its place was deleted). So the server is bound to a private name next
 * to `path`, made 0600 there (before anyone looks for it), and renamed onto `path`: the rename
 * also replaces a stale socket atomically, and at close libuv unlinks only the private name,
 * which is gone by then; removeSocketIfOurs decides about `path`.
 */
export async function bindSocketPath(path: string, listen: (path: string) => Promise<unknown>): Promise<SocketIdentity> {
  await checkSocketPath(path);
  await removeStaleBindings(path);
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.binding`);
  await listen(tmp);
  // Anyone who can talk to this socket can change the host's network: root only.
  chmodSync(tmp, 0o600);
  const st = lstatSync(tmp);
  if (!st.isSocket()) throw new InstanceConflictError(`${tmp} was replaced while batchbridge bound it`);
  // Someone may have bound `path` since the first check: never replace a live socket.
  await checkSocketPath(path);
  renameSync(tmp, path);
  const placed = lstatSync(path);
  if (placed.dev !== st.dev || placed.ino !== st.ino) throw new InstanceConflictError(`${path} was replaced while batchbridge bound it`);
  return { dev: st.dev, ino: st.ino };
}

/** Private names of `path` left by a process killed while binding: stale sockets only. */
async function removeStaleBindings(path: string): Promise<void> {
  const prefix = `.${basename(path)}.`;
  for (const entry of readdirSync(dirname(path))) {
    if (!entry.startsWith(prefix) || !/^\d+\.binding$/.test(entry.slice(prefix.length))) continue;
    const p = join(dirname(path), entry);
    try {
      if (lstatSync(p).isSocket() && (await probe(p)) === 'stale') unlinkSync(p);
    } catch {
      // gone meanwhile
    }
  }
}

/** Remove the socket only if `path` is still the socket we bound. Returns whether it was removed. */
export function removeSocketIfOurs(path: string, ours: SocketIdentity): boolean {
  try {
    const st = lstatSync(path);
    if (st.dev !== ours.dev || st.ino !== ours.ino) return false;
    unlinkSync(path);
    return true;
  } catch {
    return false; // already gone
  }
}
