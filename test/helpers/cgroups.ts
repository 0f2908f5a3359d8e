// cgroup sweeping for the runtime harnesses: each harness gives its pods and containers a cgroup
// parent of its own (cgroupfs driver), so whatever a failure leaves can be found and removed there,
// and nothing else is ever touched.
import { existsSync, readFileSync, readdirSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';

const CGROUP_ROOT = '/sys/fs/cgroup';

/** Directories of the cgroup `parent` (e.g. "/bbt-ctd-1a2b") in every mounted hierarchy, deepest first. */
export function cgroupDirs(parent: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    try {
      for (const e of readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) walk(join(d, e.name));
    } catch {
      return;
    }
    out.push(d);
  };
  let hierarchies: string[] = [];
  try {
    hierarchies = readdirSync(CGROUP_ROOT).map((h) => join(CGROUP_ROOT, h));
  } catch {
    return [];
  }
  for (const h of [...hierarchies, CGROUP_ROOT]) if (existsSync(join(h, parent))) walk(join(h, parent));
  return [...new Set(out)];
}

/** Processes in any of `dirs`. */
export function pidsInCgroups(dirs: readonly string[]): number[] {
  const pids = new Set<number>();
  for (const d of dirs) {
    try {
      for (const l of readFileSync(join(d, 'cgroup.procs'), 'utf8').split('\n')) if (/^\d+$/.test(l)) pids.add(Number(l));
    } catch {
      /* not a cgroup dir, or gone */
    }
  }
  return [...pids];
}

/** rmdir every directory of `parent`, deepest first (best effort: busy ones stay). Returns what is left. */
export function removeCgroups(parent: string): string[] {
  for (const d of cgroupDirs(parent)) {
    try {
      rmdirSync(d);
    } catch {
      /* still has processes */
    }
  }
  return cgroupDirs(parent);
}
