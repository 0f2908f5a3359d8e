// The version of this install, from its package.json (dist/src/config/ → the package root), read
// once. `batchbridge --version`, the start log line and `status` show it.
import { readFileSync } from 'node:fs';

let cached: string | null = null;

export function version(): string {
  if (cached !== null) return cached;
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    cached = typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    cached = 'unknown';
  }
  return cached;
}
