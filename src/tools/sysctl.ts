// Sysctl writes for the namespace the process runs in (/proc/sys/net is per network namespace).
// The path is checked even though every caller builds it from validated names: a sysctl write is
// as powerful as a kernel script line.
import { readFile, writeFile } from 'node:fs/promises';
import type { SysctlWrite } from '../domain/network-setup.js';

/** Writes the value unless it is already set; returns an error text, or null on success. */
export async function writeSysctl(s: SysctlWrite): Promise<string | null> {
  if (!/^[A-Za-z0-9_./-]+$/.test(s.path) || s.path.includes('..')) return `refusing sysctl path ${s.path}`;
  const full = `/proc/sys/${s.path}`;
  try {
    if ((await readFile(full, 'utf8')).trim() !== s.value) await writeFile(full, s.value);
    return null;
  } catch (err) {
    return s.optional ? null : `sysctl ${s.path}: ${err instanceof Error ? err.message : String(err)}`;
  }
}
