// What every subcommand shares: the usage error (exit status 2) and the checks of the plugin's
// name, which becomes a socket file name and a driver name.
import { isValidIfName } from '../domain/names.js';

export class UsageError extends Error {}

const NAME_RE = /^[a-z0-9][a-z0-9_.-]{0,63}$/;
const BUILTIN_DRIVERS = ['bridge', 'host', 'null', 'overlay', 'macvlan', 'ipvlan', 'none'];

/** The plugin name, or UsageError: 1-64 safe characters, never a built-in Docker driver's. */
export function checkName(name: string, flag = '--name'): string {
  if (!isValidIfName(name.slice(0, 15)) || !NAME_RE.test(name)) {
    throw new UsageError(`${flag} must be 1-64 characters of [a-z0-9_.-], got ${JSON.stringify(name)}`);
  }
  if (BUILTIN_DRIVERS.includes(name)) {
    throw new UsageError(`${flag} ${name} is a built-in Docker driver name: dockerd would never call the plugin`);
  }
  return name;
}

/** Whether `err` is a usage error: ours, or one of node:util parseArgs's. */
export function isUsageError(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  return err instanceof UsageError || code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' || code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' || code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL';
}
