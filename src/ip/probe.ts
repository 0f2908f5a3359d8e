// Is an interface there? A stat in procfs, no process.
import { existsSync } from 'node:fs';

/** Names that can be looked up as a path component (the books' names always are). */
const LOOKUP_NAME = /^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,14}$/;
const CONF_DIR = '/proc/sys/net/ipv4/conf/';

/**
 * /proc/sys/net/ipv4/conf/<name> exists exactly while an interface of that name is registered in
 * the reading thread's network namespace, for every MTU of at least 68 (networks are validated to
 * that range). /sys/class/net would show the namespace that mounted sysfs instead. It also goes
 * while the kernel unregisters the interface, before ip's answer (an RCU barrier later).
 */
export function linkPresent(name: string): boolean {
  if (!canLookUp(name)) return false;
  return existsSync(CONF_DIR + name);
}

/** Whether linkPresent can answer for this name. */
export function canLookUp(name: string): boolean {
  return LOOKUP_NAME.test(name);
}

/** Reading interface settings works in this namespace (not so without IPv4). */
export function canProbeLinks(): boolean {
  return existsSync(`${CONF_DIR}lo`);
}
