// `batchbridge cni-install`: puts the forwarder where the runtime looks for plugins and, with
// --conf-dir, writes a conflist for one network. Files are replaced atomically (written under a
// dot-name that no runtime loads, fsynced, renamed, directory fsynced), so a runtime never
// executes or reads half a file.
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync, fchmodSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { BbError } from '../errors.js';
import { DEFAULT_CNI_SOCKET } from './cni-server.js';
import { buildConflist, checkSocketPath, conflistFileName, DEFAULT_ADD_WAIT_MS, MAX_ADD_WAIT_MS, patchSlot, type ConflistOptions } from './install.js';
import { parseNetworkName } from './net-config.js';

export const CNI_INSTALL_HELP = `Usage: batchbridge cni-install --bin-dir DIR [options]

Installs DIR/batchbridge-cni, the executable CNI runtimes (containerd, Podman, ...) call, and
with --conf-dir writes a conflist for one network. See docs/cni.md.

  --bin-dir DIR        where the runtime looks for plugins (containerd: bin_dir, often
                       /opt/cni/bin; Podman: cni_plugin_dirs)
  --socket PATH        the daemon's CNI socket, compiled into the installed copy and written into
                       the conflist (default: ${DEFAULT_CNI_SOCKET}; must match serve --cni-socket)
  --add-wait-ms MS     how long an ADD waits for a daemon that is down or restarting before it
                       fails with code 11 (default: ${DEFAULT_ADD_WAIT_MS}; 0 to ${MAX_ADD_WAIT_MS})

conflist (all of these need --conf-dir):
  --conf-dir DIR       where the runtime reads network configs (containerd: conf_dir, often
                       /etc/cni/net.d; Podman: network_config_dir)
  --name NET           the network's name (required with --conf-dir)
  --subnet CIDR        its IPv4 subnet (required with --conf-dir)
  --gateway IP         the IPv4 gateway (default: the subnet's first address)
  --subnet6 CIDR       an IPv6 subnet as well, with --gateway6 IP
  --bridge NAME        the bridge (default: bb- and 12 characters of the network's id)
  --mtu N              MTU of the bridge and the veths (default: the kernel's)
  --no-ip-masq         no NAT for traffic leaving the network (default: masquerade)
  --hairpin            hairpin mode on the bridge ports (default: off)
  --ipam TYPE          batchbridge (the daemon allocates, default) or an IPAM plugin in the
                       runtime's plugin dirs to delegate to, e.g. host-local
  --ipam-data-dir DIR  host-local's dataDir (with a delegated --ipam host-local)
  --cni-version V      cniVersion of the conflist (default: 1.0.0, the newest containerd 1.6
                       reads; 0.3.0 to 1.1.0)
  --conf-file NAME     file name (default: 10-<name>.conflist, so that containerd, which takes
                       the first file by name, picks it)
  --force              replace a different file of that name
`;

class InstallUsageError extends Error {}

/** Writes `data` to dir/name through a dot-named temporary file. */
export function writeAtomic(dir: string, name: string, data: Buffer, mode: number): void {
  const tmp = join(dir, `.${name}.tmp-${process.pid}`);
  const fd = openSync(tmp, 'w', mode);
  try {
    writeSync(fd, data);
    fchmodSync(fd, mode);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
  closeSync(fd);
  renameSync(tmp, join(dir, name));
  const dfd = openSync(dir, 'r');
  try {
    fsyncSync(dfd);
  } finally {
    closeSync(dfd);
  }
}

function num(v: string | undefined, flag: string, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d{1,9}$/.test(v) || Number(v) < min || Number(v) > max) throw new InstallUsageError(`${flag} must be a whole number from ${min} to ${max}, got ${JSON.stringify(v)}`);
  return Number(v);
}

const OPTIONS = {
  'bin-dir': { type: 'string' },
  socket: { type: 'string' },
  'add-wait-ms': { type: 'string' },
  'conf-dir': { type: 'string' },
  name: { type: 'string' },
  subnet: { type: 'string' },
  gateway: { type: 'string' },
  subnet6: { type: 'string' },
  gateway6: { type: 'string' },
  bridge: { type: 'string' },
  mtu: { type: 'string' },
  'no-ip-masq': { type: 'boolean' },
  hairpin: { type: 'boolean' },
  ipam: { type: 'string' },
  'ipam-data-dir': { type: 'string' },
  'cni-version': { type: 'string' },
  'conf-file': { type: 'string' },
  force: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

type Values = ReturnType<typeof parseArgs<{ args: string[]; options: typeof OPTIONS; strict: true; allowPositionals: false }>>['values'];

function conflistOptions(v: Values, socketPath: string): ConflistOptions {
  if (v.name === undefined || v.subnet === undefined) throw new InstallUsageError('--conf-dir needs --name and --subnet');
  const name = parseNetworkName(v.name);
  if (v.gateway6 !== undefined && v.subnet6 === undefined) throw new InstallUsageError('--gateway6 needs --subnet6');
  const mtu = num(v.mtu, '--mtu', 0, 65535);
  return {
    name,
    cniVersion: v['cni-version'] ?? '1.0.0',
    socketPath,
    subnet: v.subnet,
    ...(v.gateway !== undefined ? { gateway: v.gateway } : {}),
    ...(v.subnet6 !== undefined ? { subnet6: v.subnet6 } : {}),
    ...(v.gateway6 !== undefined ? { gateway6: v.gateway6 } : {}),
    ...(v.bridge !== undefined ? { bridge: v.bridge } : {}),
    ...(mtu !== undefined ? { mtu } : {}),
    ipMasq: v['no-ip-masq'] !== true,
    hairpinMode: v.hairpin === true,
    ipam: v.ipam ?? 'batchbridge',
    ...(v['ipam-data-dir'] !== undefined ? { ipamDataDir: v['ipam-data-dir'] } : {}),
  };
}

function install(v: Values): string[] {
  const binDir = v['bin-dir'];
  if (binDir === undefined) throw new InstallUsageError('--bin-dir is required');
  const socketPath = v.socket ?? DEFAULT_CNI_SOCKET;
  try {
    checkSocketPath(socketPath);
  } catch (err) {
    throw new InstallUsageError(`--socket: ${(err as Error).message}`);
  }
  const addWaitMs = num(v['add-wait-ms'], '--add-wait-ms', 0, MAX_ADD_WAIT_MS) ?? DEFAULT_ADD_WAIT_MS;
  const confDir = v['conf-dir'];
  const conflistFlags = ['name', 'subnet', 'gateway', 'subnet6', 'gateway6', 'bridge', 'mtu', 'no-ip-masq', 'hairpin', 'ipam', 'ipam-data-dir', 'cni-version', 'conf-file', 'force'] as const;
  if (confDir === undefined) {
    const stray = conflistFlags.filter((f) => v[f] !== undefined);
    if (stray.length > 0) throw new InstallUsageError(`--${stray[0]} needs --conf-dir`);
  }
  // Everything is checked before anything is written.
  const conflist = confDir === undefined ? null : buildConflist(conflistOptions(v, socketPath));
  const source = new URL('../../cni/batchbridge-cni', import.meta.url);
  if (!existsSync(source)) throw new Error(`${source.pathname} is missing: the build (npm ci, npm run build) compiles it with cc`);
  const binary = patchSlot(readFileSync(source), { socketPath, addWaitMs });

  mkdirSync(binDir, { recursive: true, mode: 0o755 });
  writeAtomic(binDir, 'batchbridge-cni', binary, 0o755);
  const done = [`installed ${join(binDir, 'batchbridge-cni')} (socket ${socketPath}, ADD waits up to ${addWaitMs} ms)`];
  if (confDir !== undefined && conflist !== null) {
    const file = v['conf-file'] ?? conflistFileName(String(conflist.name));
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,200}\.(conflist|json|conf)$/.test(file)) throw new InstallUsageError(`--conf-file must be a plain file name ending in .conflist, got ${JSON.stringify(file)}`);
    const text = Buffer.from(`${JSON.stringify(conflist, null, 2)}\n`);
    const target = join(confDir, file);
    if (existsSync(target) && !readFileSync(target).equals(text) && v.force !== true) {
      throw new InstallUsageError(`${target} exists with other content; --force replaces it`);
    }
    mkdirSync(confDir, { recursive: true, mode: 0o755 });
    writeAtomic(confDir, file, text, 0o644);
    done.push(`wrote ${target}`);
  }
  return done;
}

export async function cniInstall(args: string[]): Promise<number> {
  let values: Values;
  try {
    values = parseArgs({ args, options: OPTIONS, strict: true, allowPositionals: false }).values;
  } catch (err) {
    process.stderr.write(`batchbridge cni-install: ${(err as Error).message}\nRun 'batchbridge cni-install --help' for usage.\n`);
    return 2;
  }
  if (values.help === true) {
    process.stdout.write(CNI_INSTALL_HELP);
    return 0;
  }
  try {
    for (const line of install(values)) process.stdout.write(`${line}\n`);
    return 0;
  } catch (err) {
    const usage = err instanceof InstallUsageError;
    const text = err instanceof BbError ? `invalid network: ${err.message}` : (err as Error).message;
    process.stderr.write(`batchbridge cni-install: ${text}\n${usage ? "Run 'batchbridge cni-install --help' for usage.\n" : ''}`);
    return usage || err instanceof BbError ? 2 : 1;
  }
}
