// Where the CLI finds a plugin's socket. A hand-started or systemd plugin listens on
// <socket-dir>/<name>.sock. dockerd starts a managed plugin with /run/docker/plugins/<plugin id>/
// (whatever dockerd's --exec-root) mounted as the plugin's socket dir, so from the host its socket
// is <socket-dir>/<id>/<name>.sock.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { UsageError } from './usage.js';

/**
 * A plugin name, optionally with the tag Docker gives a managed plugin's driver name
 * (`batchbridge:latest`, as `docker network ls` shows it); the tag is not part of the socket name.
 */
const NAME_RE = /^([a-z0-9][a-z0-9_.-]{0,63})(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$/;

/** The socket name part of `name`, or null when `name` is not a valid plugin name. */
export function socketBaseName(name: string): string | null {
  return NAME_RE.exec(name)?.[1] ?? null;
}

/**
 * <socketDir>/<name>.sock when it exists; otherwise the one <socketDir>/<id>/<name>.sock of a
 * managed plugin. Falls back to the first path (for a clear "not running" message). Throws when
 * several managed plugins have that socket name.
 */
export function resolvePluginSocket(socketDir: string, base: string): string {
  const direct = join(socketDir, `${base}.sock`);
  if (existsSync(direct)) return direct;
  let entries: string[];
  try {
    entries = readdirSync(socketDir, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
  } catch {
    return direct;
  }
  const found = entries.map((d) => join(socketDir, d, `${base}.sock`)).filter((p) => existsSync(p));
  if (found.length > 1) {
    throw new Error(`several plugins have a socket named ${base}.sock: ${found.join(', ')}; pass --socket-dir with the folder of the one you mean`);
  }
  return found[0] ?? direct;
}

export const DEFAULT_SOCKET_DIR = '/run/docker/plugins';

/**
 * The socket of the plugin a CLI command names with --name and --socket-dir: hand-started,
 * systemd or managed. A bad name is a UsageError; several managed plugins of that name, an Error.
 */
export function locatePluginSocket(name: string | undefined, socketDir: string | undefined): string {
  const given = name ?? 'batchbridge';
  const base = socketBaseName(given);
  if (base === null) throw new UsageError(`invalid --name ${JSON.stringify(given)}: 1-64 characters of [a-z0-9_.-], optionally with a :TAG`);
  return resolvePluginSocket(socketDir ?? DEFAULT_SOCKET_DIR, base);
}
