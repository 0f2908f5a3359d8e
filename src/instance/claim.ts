// Everything a process must own before it touches the kernel or the books, checked and taken in
// one place, cheapest refusal first and the one that creates files last: an existing state dir
// is validated, a plugin's socket path probed, the network namespace's guard taken, then the
// state dir's lock (creating the dir 0700 if missing). Any refusal happens before the first
// change, releases what was taken, and names the instance that holds what we wanted.
import { lstatSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { acquireNetnsGuard, netnsHolder, type NetnsGuard } from './netns-guard.js';
import { bindSocketPath, checkSocketPath, removeSocketIfOurs, type SocketIdentity } from './plugin-socket.js';
import { describeInstance, instanceInfo, StateDirLock, type InstanceInfo, type LockRole } from '../state/instance-lock.js';
import { prepareStateDir } from '../state/state-dir.js';

export interface Claim {
  readonly info: InstanceInfo;
  /** Release in reverse order: socket (if still ours), namespace guard, state dir lock. */
  release(): Promise<void>;
}

export interface PluginClaim extends Claim {
  readonly socketPath: string;
  /**
   * Bind the plugin socket through `listen` (a stale socket is replaced, a live one refused).
   * On a refusal after `listen` ran, `close` is called to unbind.
   */
  bindSocket(listen: (path: string) => Promise<unknown>, close: () => Promise<unknown>): Promise<void>;
  /** Whether release() found the socket still ours and removed it (null before release). */
  readonly socketRemoved: boolean | null;
}

/** Name the batchbridge of this namespace if it is the one answering at `socketPath`. */
async function pluginAt(socketPath: string): Promise<string | null> {
  const h = await netnsHolder();
  return h?.kind === 'batchbridge' && h.info.socketPath === socketPath ? describeInstance(h.info) : null;
}

/** Validate the state dir if it exists (creating nothing), then guard and lock. */
async function guardAndLock(stateDir: string, role: LockRole, before: () => Promise<unknown>): Promise<{ guard: NetnsGuard; lock: StateDirLock }> {
  let exists = true;
  try {
    lstatSync(stateDir);
  } catch {
    exists = false;
  }
  if (exists) prepareStateDir(stateDir);
  await before();
  const info = instanceInfo(role, stateDir);
  const guard = await acquireNetnsGuard(info);
  try {
    return { guard, lock: StateDirLock.acquire(info) };
  } catch (err) {
    await guard.release();
    throw err;
  }
}

/** For `batchbridge serve`: state dir, namespace and socket path, or InstanceConflictError/StateDirUnsafeError. */
export async function claimPlugin(o: { name: string; stateDir: string; socketDir: string }): Promise<PluginClaim> {
  const socketPath = join(o.socketDir, `${o.name}.sock`);
  // A live socket means another plugin (perhaps in another namespace, with other books).
  const { guard, lock } = await guardAndLock(o.stateDir, { role: 'serve', name: o.name, socketPath }, () => checkSocketPath(socketPath, () => pluginAt(socketPath)));
  let bound: SocketIdentity | null = null;
  let removed: boolean | null = null;
  let releasing: Promise<void> | null = null;
  return {
    info: lock.info,
    socketPath,
    get socketRemoved() {
      return removed;
    },
    bindSocket: async (listen, close) => {
      mkdirSync(o.socketDir, { recursive: true, mode: 0o755 });
      let listened = false;
      try {
        bound = await bindSocketPath(socketPath, async (p) => {
          await listen(p);
          listened = true;
        });
      } catch (err) {
        if (listened) await close();
        throw err;
      }
    },
    release: () =>
      (releasing ??= (async () => {
        if (bound !== null) removed = removeSocketIfOurs(socketPath, bound);
        await guard.release();
        lock.release();
      })()),
  };
}

/** For an offline `batchbridge reconcile`: the books and the namespace, for as long as it runs. */
export async function claimBooks(stateDir: string): Promise<Claim> {
  const { guard, lock } = await guardAndLock(stateDir, { role: 'reconcile', name: null, socketPath: null }, async () => undefined);
  return {
    info: lock.info,
    release: async () => {
      await guard.release();
      lock.release();
    },
  };
}
