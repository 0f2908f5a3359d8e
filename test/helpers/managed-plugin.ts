// The batchbridge managed plugin in a test dockerd: the plugin folder is built once per test file
// (`batchbridge package-plugin`, ~5 s), then `docker plugin create` + `set` + `enable` install it
// into a dockerd (~10 s), with its books in a temp dir of the test instead of /var/lib/batchbridge.
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { makeTempDir, ORDER, type Scope } from './cleanup.js';
import type { Dockerd } from './dockerd.js';
import type { Netns } from './netns.js';
import { PLUGIN_BIN } from './plugin.js';
import { runOk } from './proc.js';

/** dockerd's fixed place for managed plugins' sockets, whatever its --exec-root. */
export const MANAGED_SOCKET_ROOT = '/run/docker/plugins';

export interface PluginFolder {
  /** The folder holding config.json and rootfs/. */
  readonly dir: string;
  /** The name the plugin serves under (its socket is <name>.sock). */
  readonly name: string;
  /** How long package-plugin took. */
  readonly ms: number;
}

/** `batchbridge package-plugin --out <temp>/plugin --name NAME`; the folder goes with `scope`. */
export async function buildPluginFolder(scope: Scope, name: string): Promise<PluginFolder> {
  const tmp = scope.add(await makeTempDir('bbt-pkg-'));
  const dir = join(tmp.path, 'plugin');
  const t0 = Date.now();
  await runOk([process.execPath, PLUGIN_BIN, 'package-plugin', '--out', dir, '--name', name], { timeoutMs: 180_000 });
  return { dir, name, ms: Date.now() - t0 };
}

export interface ManagedPlugin {
  /** What dockerd calls it, and the driver name for `docker network create -d`: NAME:latest. */
  readonly ref: string;
  readonly id: string;
  /** The host directory bind-mounted as its books. */
  readonly stateDir: string;
  /** Where dockerd expects its socket: /run/docker/plugins/<id>/<name>.sock. */
  readonly socketPath: string;
  /** `docker plugin create` and `enable` times. */
  readonly createMs: number;
  readonly enableMs: number;
}

/**
 * docker plugin create NAME DIR; set state.source=<temp dir>; enable. At clean-up (before dockerd
 * stops) a disabled plugin is enabled again, so that dockerd can remove the test's containers and
 * networks through it; its socket folder is removed after dockerd has stopped.
 */
export async function installManagedPlugin(scope: Scope, d: Dockerd, folder: PluginFolder, opts: { readonly enable?: boolean } = {}): Promise<ManagedPlugin> {
  const state = scope.add(await makeTempDir('bbt-books-'));
  const t0 = Date.now();
  await d.dockerOk(['plugin', 'create', folder.name, folder.dir], { timeoutMs: 180_000 });
  const createMs = Date.now() - t0;
  const ref = `${folder.name}:latest`;
  const id = (await d.dockerOk(['plugin', 'inspect', '-f', '{{.Id}}', ref])).trim();
  scope.defer(`re-enable plugin ${ref} for clean-up`, async () => {
    if ((await d.docker(['plugin', 'inspect', '-f', '{{.Enabled}}', ref])).stdout.trim() === 'false') {
      await d.docker(['plugin', 'enable', ref]);
    }
  });
  scope.defer(`socket folder of plugin ${id.slice(0, 12)}`, async () => {
    const dir = join(MANAGED_SOCKET_ROOT, id);
    if (id !== '' && existsSync(dir)) await rm(dir, { recursive: true, force: true });
  }, ORDER.plugin);
  await d.dockerOk(['plugin', 'set', ref, `state.source=${state.path}`]);
  let enableMs = 0;
  if (opts.enable ?? true) {
    const t1 = Date.now();
    await d.dockerOk(['plugin', 'enable', ref]);
    enableMs = Date.now() - t1;
  }
  return { ref, id, stateDir: state.path, socketPath: join(MANAGED_SOCKET_ROOT, id, `${folder.name}.sock`), createMs, enableMs };
}

/** Lines of iptables-save and ip6tables-save in `ns` that are ours: BB-* chains, jumps, our tags. */
export async function ourFirewallLines(ns: Netns): Promise<string[]> {
  const out: string[] = [];
  for (const bin of ['iptables-save', 'ip6tables-save']) {
    for (const l of (await ns.execOk([bin])).split('\n')) if (/BB-|bb:(net|ep)=/.test(l)) out.push(`${bin}: ${l}`);
  }
  return out;
}
