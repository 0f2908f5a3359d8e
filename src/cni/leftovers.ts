// What the CNI side leaves on a host once the daemon is stopped, for `batchbridge cleanup`: a
// stale CNI socket (a killed daemon), the DEL spool beside it (DELs the forwarder recorded while
// the daemon was down: their pods' interfaces go with the bridges anyway), and the forwarder
// `cni-install` put in a plugin dir. The forwarder is recognised by its settings slot, never by
// its name alone. Conflists are the runtime's configuration: they are named, not removed.
import { connect } from 'node:net';
import { lstatSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SPOOL_NAME_RE } from './frame.js';
import { readSlot } from './install.js';
import { spoolDirFor } from './spool.js';

export const FORWARDER_FILE = 'batchbridge-cni';

export interface CniLeftovers {
  /** files to remove, each with how the report names it */
  readonly files: { readonly path: string; readonly label: string }[];
  /** directories to remove once emptied (innermost first) */
  readonly dirs: string[];
  /** things found and left, with why */
  readonly notes: string[];
}

/** Whether a process accepts connections on the unix socket at `path`. */
export function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ path });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

function kind(path: string): 'file' | 'socket' | 'dir' | 'other' | null {
  try {
    const st = lstatSync(path);
    return st.isFile() ? 'file' : st.isSocket() ? 'socket' : st.isDirectory() ? 'dir' : 'other';
  } catch {
    return null;
  }
}

function names(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** The spool's own names: recorded DELs, unreadable ones set aside, a forwarder's unfinished writes. */
function isSpoolName(n: string): boolean {
  const base = n.startsWith('bad-') ? n.slice(4) : n.startsWith('.tmp-') ? n.slice(5) : n;
  return SPOOL_NAME_RE.test(base);
}

function ourForwarder(path: string): { socketPath: string } | null {
  try {
    return readSlot(readFileSync(path));
  } catch {
    return null;
  }
}

function conflistsNaming(confDir: string): string[] {
  return names(confDir)
    .filter((n) => /\.(conflist|conf|json)$/.test(n))
    .filter((n) => {
      try {
        return readFileSync(join(confDir, n), 'utf8').includes(`"${FORWARDER_FILE}"`);
      } catch {
        return false;
      }
    })
    .map((n) => join(confDir, n));
}

export function findCniLeftovers(socketPath: string, binDir: string | null, confDir: string | null): CniLeftovers {
  const files: { path: string; label: string }[] = [];
  const dirs: string[] = [];
  const notes: string[] = [];
  if (kind(socketPath) === 'socket') files.push({ path: socketPath, label: `stale CNI socket ${socketPath}` });
  const spool = spoolDirFor(socketPath);
  if (kind(spool) === 'dir') {
    const all = names(spool);
    const ours = all.filter(isSpoolName);
    for (const n of ours) files.push({ path: join(spool, n), label: `spooled CNI DEL ${join(spool, n)}` });
    if (ours.length === all.length) dirs.push(spool);
    else notes.push(`${spool} holds files that are not ours; it is kept`);
  }
  if (binDir !== null) {
    const fwd = join(binDir, FORWARDER_FILE);
    const k = kind(fwd);
    const slot = k === 'file' ? ourForwarder(fwd) : null;
    if (slot !== null) files.push({ path: fwd, label: `CNI plugin ${fwd} (socket ${slot.socketPath})` });
    else if (k !== null) notes.push(`${fwd} is not a batchbridge-cni forwarder; it is kept`);
  }
  if (confDir !== null) {
    for (const c of conflistsNaming(confDir)) notes.push(`${c} names ${FORWARDER_FILE}: runtimes will fail to set up that network until it is removed (not removed: it is the runtime's configuration)`);
  }
  return { files, dirs, notes };
}
