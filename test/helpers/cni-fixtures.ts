// CNI plugin directories and conflists for the runtime harnesses: the reference plugins from
// Debian's containernetworking-plugins (/usr/lib/cni), a recorder that logs what a runtime sends
// before handing the call to the real plugin, and a do-nothing plugin (the ceiling of any plugin a
// runtime executes once per call). Swapping in batchbridge = another binary and another conflist.
import { readFileSync, readdirSync } from 'node:fs';
import { realpath } from 'node:fs/promises';
import { chmod, mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export const REFERENCE_PLUGIN_DIR = '/usr/lib/cni';
export const REFERENCE_PLUGINS = ['bridge', 'host-local', 'portmap', 'loopback'] as const;

/** `dir` with symlinks to the reference plugins (libcni follows symlinks to regular files). */
export async function referencePluginDir(dir: string, plugins: readonly string[] = REFERENCE_PLUGINS): Promise<string> {
  await mkdir(dir, { recursive: true });
  for (const p of plugins) await symlink(join(REFERENCE_PLUGIN_DIR, p), join(dir, p));
  return dir;
}

export interface ReferenceConflistOptions {
  name: string;
  bridge: string;
  /** e.g. 198.18.64.0/24 (test addresses only). */
  subnet: string;
  /** host-local's dataDir: keep it private to the test. */
  dataDir: string;
  cniVersion?: string;
  ipMasq?: boolean;
  /** The plugin type of the bridge entry (a recorder's name, say). Default "bridge". */
  bridgeType?: string;
  /** The plugin type of the port mapping entry. Default "portmap"; null leaves it out. */
  portmapType?: string | null;
}

/** bridge + host-local (+ portmap): what the figures call the reference chain. */
export function referenceConflist(o: ReferenceConflistOptions): string {
  const plugins: unknown[] = [{
    type: o.bridgeType ?? 'bridge',
    bridge: o.bridge,
    isGateway: true,
    ipMasq: o.ipMasq ?? true,
    hairpinMode: true,
    ipam: {
      type: 'host-local',
      dataDir: o.dataDir,
      ranges: [[{ subnet: o.subnet }]],
      routes: [{ dst: '0.0.0.0/0' }],
    },
  }];
  if (o.portmapType !== null) plugins.push({ type: o.portmapType ?? 'portmap', capabilities: { portMappings: true }, snat: true });
  return `${JSON.stringify({ cniVersion: o.cniVersion ?? '1.0.0', name: o.name, plugins }, null, 1)}\n`;
}

/**
 * A plugin `dir/type` that records each call (CNI_* variables and stdin) under `logDir`, runs
 * `target` with the same stdin and records its stdout and exit status, which it passes on (stderr
 * goes straight through). Files: <logDir>/<ns>.<pid>.<type>.env, .in, .out, .rc (ns =
 * nanoseconds, so they sort by time; .rc is written last).
 */
export async function recorderPlugin(dir: string, type: string, target: string, logDir: string): Promise<string> {
  await mkdir(logDir, { recursive: true });
  const path = join(dir, type);
  await writeFile(path, [
    '#!/bin/sh',
    `f=${logDir}/$(date +%s%N).$$.${type}`,
    'env | grep "^CNI_" > "$f.env"',
    'cat > "$f.in"',
    `${target} < "$f.in" > "$f.out"`,
    'rc=$?',
    'cat "$f.out"',
    'echo $rc > "$f.rc"',
    'exit $rc',
    '',
  ].join('\n'));
  await chmod(path, 0o755);
  return path;
}

/**
 * A plugin dir for a runtime under test: every plugin of `from` (symlinked), except the types in
 * `record`, which become recorders (same name, so the conflist stays as it is) that log each call
 * under `logDir` and exec the real binary.
 */
export async function recordingPluginDir(dst: string, o: { from: readonly string[]; record: readonly string[]; logDir: string }): Promise<string> {
  await mkdir(dst, { recursive: true });
  const seen = new Set<string>();
  for (const d of o.from) {
    for (const name of readdirSync(d).sort()) {
      if (seen.has(name)) continue;
      seen.add(name);
      const real = await realpath(join(d, name));
      if (o.record.includes(name)) await recorderPlugin(dst, name, real, o.logDir);
      else await symlink(real, join(dst, name));
    }
  }
  for (const t of o.record) if (!seen.has(t)) throw new Error(`plugin ${t} not found in ${o.from.join(', ')}`);
  return dst;
}

/** The plugin types of a conflist, in order. */
export function conflistTypes(conflist: string): string[] {
  return ((JSON.parse(conflist) as { plugins?: Array<{ type?: unknown }> }).plugins ?? []).map((p) => String(p.type));
}

export interface RecordedCall {
  file: string;
  /** The recorder's name (the plugin type it stands for). */
  plugin: string;
  env: Record<string, string>;
  stdin: string;
  /** The plugin's stdout and exit status; rc is null while the call is still running. */
  stdout: string;
  rc: number | null;
}

/** The calls a recorderPlugin logged, oldest first. */
export function readRecordings(logDir: string): RecordedCall[] {
  const names = readdirSync(logDir).filter((n) => n.endsWith('.env')).sort();
  return names.map((n) => {
    const env: Record<string, string> = {};
    for (const line of readFileSync(join(logDir, n), 'utf8').split('\n')) {
      const i = line.indexOf('=');
      if (i > 0) env[line.slice(0, i)] = line.slice(i + 1);
    }
    const part = (ext: string): string | null => {
      try {
        return readFileSync(join(logDir, n.replace(/\.env$/, ext)), 'utf8');
      } catch {
        return null; // the call was still being recorded
      }
    };
    const rc = part('.rc');
    return {
      file: n, plugin: n.split('.').slice(2, -1).join('.'), env,
      stdin: part('.in') ?? '', stdout: part('.out') ?? '', rc: rc === null ? null : Number(rc.trim()),
    };
  });
}

/**
 * A plugin that does nothing, as cheaply as a shell can: VERSION answers the supported versions,
 * ADD a minimal valid result (no interfaces, no ips) in the version asked for, everything else
 * succeeds silently. It reads stdin only to learn that version.
 */
export async function noopPlugin(dir: string, type = 'noop'): Promise<string> {
  const path = join(dir, type);
  await writeFile(path, [
    '#!/bin/sh',
    'in=$(cat)',
    'case "$CNI_COMMAND" in',
    '  VERSION) echo \'{"cniVersion":"1.0.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}\' ;;',
    '  ADD) v=${in#*\\"cniVersion\\":\\"}; v=${v%%\\"*}; echo "{\\"cniVersion\\":\\"$v\\",\\"interfaces\\":[],\\"ips\\":[]}" ;;',
    'esac',
    '',
  ].join('\n'));
  await chmod(path, 0o755);
  return path;
}
