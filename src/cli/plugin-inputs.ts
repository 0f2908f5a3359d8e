// Pure helpers of the plugin packaging: which shared libraries `ldd` names, and which installed
// packages the production build needs (from package-lock.json, so no registry is asked).

export interface LddResult {
  /** Absolute paths of the libraries and of the program interpreter. */
  readonly libs: string[];
  /** Libraries ldd could not resolve ("libfoo.so.1 => not found"). */
  readonly missing: string[];
}

/**
 * Parses `ldd FILE` output. Lines look like "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)",
 * "/lib64/ld-linux-x86-64.so.2 (0x…)", "linux-vdso.so.1 (0x…)" (in the kernel, no file) or
 * "libfoo.so => not found". A static binary prints "statically linked" or "not a dynamic
 * executable": no libraries.
 */
export function parseLdd(text: string): LddResult {
  const libs: string[] = [];
  const missing: string[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    const arrow = /^(\S+) => (.+?)(?: \(0x[0-9a-f]+\))?$/.exec(line);
    if (arrow) {
      const [, name, target] = arrow as unknown as [string, string, string];
      if (target === 'not found') missing.push(name);
      else if (target.startsWith('/')) libs.push(target);
      continue;
    }
    const direct = /^(\/\S+) \(0x[0-9a-f]+\)$/.exec(line);
    if (direct) libs.push(direct[1] as string);
  }
  return { libs, missing };
}

interface LockEntry {
  readonly dev?: boolean;
  readonly optional?: boolean;
  readonly link?: boolean;
}

export interface LockPackage {
  /** Path relative to the project, e.g. "node_modules/fastify" or "node_modules/a/node_modules/b". */
  readonly path: string;
  /** An optional dependency (absent when built for another platform). */
  readonly optional: boolean;
}

/**
 * The installed packages a production install has: every lockfile (v2/v3) entry under
 * node_modules/ that is not dev-only. Nested node_modules are entries of their own.
 */
export function productionPackages(lock: unknown): LockPackage[] {
  const packages = (lock as { packages?: Record<string, LockEntry> } | null)?.packages;
  if (packages === undefined || typeof packages !== 'object') {
    throw new Error('package-lock.json has no "packages" map (lockfile version 2 or later is needed)');
  }
  const out: LockPackage[] = [];
  for (const [path, entry] of Object.entries(packages)) {
    if (!path.startsWith('node_modules/') || entry.dev === true || entry.link === true) continue;
    // The key is a path inside the project: refuse anything that could step outside it.
    if (path.split('/').some((p) => p === '..' || p === '.' || p === '')) throw new Error(`package-lock.json: bad package path ${JSON.stringify(path)}`);
    out.push({ path, optional: entry.optional === true });
  }
  return out.sort((a, b) => a.path.localeCompare(b.path));
}
