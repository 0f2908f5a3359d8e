// libcni's skel refuses an ADD or DEL whose CNI_NETNS is the plugin's own network namespace:
// the "container" end of the veth would land in the host's namespace, with the container's
// address on it. The daemon is the plugin here, so it compares with its own namespace.
import { statSync } from 'node:fs';
import { CniEnvironmentError } from '../errors.js';

function ident(path: string): { dev: number; ino: number } | undefined {
  try {
    return statSync(path);
  } catch {
    return undefined; // gone, or not ours to look at: then it is not our namespace either
  }
}

/** Throws when `netns` is the namespace this process runs in; a path that is gone is fine. */
export function refuseOwnNetns(netns: string, own = '/proc/self/ns/net'): void {
  const a = ident(netns);
  const b = ident(own);
  if (a !== undefined && b !== undefined && a.dev === b.dev && a.ino === b.ino) {
    throw new CniEnvironmentError(`CNI_NETNS ${netns} is the batchbridge daemon's own network namespace, not a container's`);
  }
}
