// batchbridge's CNI front end for the runtime harnesses (containerd, Podman): the daemon
// (`batchbridge serve`) started in the namespace the runtime runs in, with its own state dir,
// Docker socket dir and CNI socket in a temp dir; `batchbridge cni-install` putting the forwarder
// and a conflist into a plugin dir that also has the reference `loopback` (containerd always runs
// it). Plus what the daemon holds, read three ways: its books (the SQLite state, read-only), its
// port list (`batchbridge ports`), and the rules it wrote into the kernel.
import { readFileSync } from 'node:fs';
import { mkdir, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { makeTempDir, type Scope } from './cleanup.js';
import { REFERENCE_PLUGIN_DIR } from './cni-fixtures.js';
import { iptablesSave, type Netns } from './netns.js';
import { PLUGIN_BIN, startPlugin, type Plugin } from './plugin.js';
import { runOk } from './proc.js';

export interface BbCniOptions {
  /** The network's name in the conflist. */
  network: string;
  /** IPv4 subnet (test addresses only). */
  subnet: string;
  bridge: string;
  /** cni-install --add-wait-ms (how long an ADD waits for a daemon that is down). */
  addWaitMs?: number;
}

export interface BbCni {
  plugin: Plugin;
  /** The plugin dir: batchbridge-cni and loopback. */
  binDir: string;
  /** The conflist cni-install wrote. */
  conflist: string;
  cniSocket: string;
}

export async function startBbCni(scope: Scope, host: Netns, o: BbCniOptions): Promise<BbCni> {
  const dir = scope.add(await makeTempDir('bbt-bbcni-'));
  const socketDir = join(dir.path, 'plugins');
  const binDir = join(dir.path, 'bin');
  const confDir = join(dir.path, 'net.d');
  const cniSocket = join(dir.path, 'cni.sock');
  await mkdir(socketDir);
  // The Docker socket in a private dir: no dockerd discovers it.
  const plugin = scope.add(await startPlugin({ ns: host, socketDir, extraArgs: ['--cni-socket', cniSocket] }));
  await runOk([
    process.execPath, PLUGIN_BIN, 'cni-install', '--bin-dir', binDir, '--socket', cniSocket,
    ...(o.addWaitMs === undefined ? [] : ['--add-wait-ms', String(o.addWaitMs)]),
    '--conf-dir', confDir, '--name', o.network, '--subnet', o.subnet, '--bridge', o.bridge,
  ], { timeoutMs: 30_000 });
  await symlink(join(REFERENCE_PLUGIN_DIR, 'loopback'), join(binDir, 'loopback'));
  const conflist = readFileSync(join(confDir, `10-${o.network}.conflist`), 'utf8');
  return { plugin, binDir, conflist, cniSocket };
}

export interface BookedNetwork {
  spec: { id: string; bridge: string; ipv4: { ip: string; prefix: number }; masquerade: boolean };
  cniName?: string;
}

export interface BookedEndpoint {
  id: string;
  networkId: string;
  host: string;
  peer: string;
  /** "ip/prefix" */
  ipv4: string;
  sandbox?: { containerId: string; netns: string };
}

/** The daemon's books, read-only from its SQLite state (WAL: a reader beside the live writer). */
export function readBooks(stateDir: string): { networks: BookedNetwork[]; endpoints: BookedEndpoint[] } {
  const db = new Database(join(stateDir, 'batchbridge.db'), { readonly: true, fileMustExist: true });
  try {
    const rows = (table: string) => (db.prepare(`SELECT record FROM ${table}`).all() as Array<{ record: string }>).map((r) => JSON.parse(r.record) as unknown);
    return { networks: rows('networks') as BookedNetwork[], endpoints: rows('endpoints') as BookedEndpoint[] };
  } finally {
    db.close();
  }
}

export interface PortBinding {
  proto: string;
  hostIp: string;
  hostPort: number;
  containerIp: string;
  containerPort: number;
  endpointId: string;
}

/** `batchbridge ports --json` against the running daemon. */
export async function bbPorts(p: Plugin): Promise<PortBinding[]> {
  const socketDir = p.socketPath.slice(0, p.socketPath.lastIndexOf('/'));
  const out = await runOk([process.execPath, PLUGIN_BIN, 'ports', '--name', p.name, '--socket-dir', socketDir, '--json'], { timeoutMs: 30_000 });
  return JSON.parse(out) as PortBinding[];
}

/** The rules of `host` (both families, every table) that sit in batchbridge's chains or name CNI chains. */
export async function bbAndCniRules(host: Netns): Promise<string[]> {
  const lines = [...await iptablesSave(host), ...await iptablesSave(host, { ipv6: true })];
  return lines.filter((l) => /^-A (BB-|CNI-)/.test(l) || /-j (BB-|CNI-)/.test(l));
}
