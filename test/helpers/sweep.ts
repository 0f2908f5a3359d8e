// Sweeping what a container runtime harness leaves after a failure. Each harness gives its pods and
// containers a cgroup parent of its own (cgroupfs driver), a runc root of its own and a directory
// whose path its helper processes (shims, conmon) carry on their command lines, so that whatever
// is left can be found there and nothing else is ever touched.
import { existsSync, readFileSync, readdirSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { cmdlineOf, pidsMentioning, run, runSync, signalPid, sleep, waitPidExit } from './proc.js';

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

/** rmdir every directory of `parent`, deepest first (busy ones stay). Returns what is left. */
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

/** removeCgroups, retried for up to 2 s while the last processes exit. Returns what is left. */
export async function dropCgroups(parent: string): Promise<string[]> {
  for (let i = 0; i < 20 && removeCgroups(parent).length > 0; i++) await sleep(100);
  return cgroupDirs(parent);
}

/**
 * SIGKILL every process whose command line mentions `dir` (shims, conmon) and every process in
 * the cgroup `parent` (pods live in namespaces of their own and are found only there). Notes
 * what it killed in `problems`; returns the pids.
 */
export function killLeftovers(dir: string, parent: string, problems: string[]): number[] {
  const named = pidsMentioning(dir);
  if (named.length > 0) problems.push(`killed leftover processes: ${named.map((p) => `${p} ${cmdlineOf(p)[0] ?? ''}`).join(', ')}`);
  const inCg = pidsInCgroups(cgroupDirs(parent));
  if (inCg.length > 0) problems.push(`killed processes left in ${parent}: ${inCg.join(', ')}`);
  const all = [...new Set([...named, ...inCg])];
  for (const p of all) signalPid(p, 'SIGKILL');
  return all;
}

/** killLeftovers twice (a shim may start a process while dying), waiting for each wave to exit. */
export async function killLeftoversAndWait(dir: string, parent: string, problems: string[]): Promise<void> {
  for (const p of killLeftovers(dir, parent, problems)) await waitPidExit(p, 5_000);
  const again = killLeftovers(dir, parent, []);
  if (again.length > 0) problems.push(`processes survived the first sweep: ${again.join(', ')}`);
  for (const p of again) await waitPidExit(p, 5_000);
}

interface RuncState {
  id: string;
  status: string;
}

function parseRuncList(stdout: string): RuncState[] {
  const t = stdout.trim();
  return t === '' || t === 'null' ? [] : (JSON.parse(t) as RuncState[]);
}

/** `runc --root ROOT delete -f` every container there; returns what was there (with its status). */
export async function runcDeleteAll(root: string): Promise<RuncState[]> {
  if (!existsSync(root)) return [];
  const list = parseRuncList((await run(['runc', '--root', root, 'list', '--format', 'json'], { timeoutMs: 30_000 })).stdout);
  for (const c of list) await run(['runc', '--root', root, 'delete', '-f', c.id], { timeoutMs: 30_000 });
  return list;
}

export function runcDeleteAllSync(root: string): void {
  if (!existsSync(root)) return;
  for (const c of parseRuncList(runSync(['runc', '--root', root, 'list', '--format', 'json']).stdout)) {
    runSync(['runc', '--root', root, 'delete', '-f', c.id]);
  }
}

/** The runc roots below `dir` (containerd's shim uses <Root>/<namespace>). */
export function subdirs(dir: string): string[] {
  try {
    return readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => join(dir, e.name));
  } catch {
    return [];
  }
}
