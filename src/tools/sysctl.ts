// Sysctl writes for the namespace the process runs in (/proc/sys/net is per network namespace).
// The path is checked even though every caller builds it from validated names: a sysctl write is
// as powerful as a kernel script line.
import { readFile, writeFile } from 'node:fs/promises';
import type { SysctlWrite } from '../domain/network-setup.js';

/**
 * Writes the value unless it is already set; returns an error text, or null on success. `root` is
 * /proc/sys, or where a managed plugin sees a writable copy of it (`serve --sysctl-dir`).
 */
export async function writeSysctl(s: SysctlWrite, root = '/proc/sys'): Promise<string | null> {
  if (!/^[A-Za-z0-9_./-]+$/.test(s.path) || s.path.includes('..')) return `refusing sysctl path ${s.path}`;
  const full = `${root}/${s.path}`;
  try {
    if ((await readFile(full, 'utf8')).trim() !== s.value) await writeFile(full, s.value);
    return null;
  } catch (err) {
    return s.optional ? null : `sysctl ${s.path}: ${err instanceof Error ? err.message : String(err)}`;
  }
}
