// Support for the exec tests of batchbridge's CNI front end (cni-exec-batchbridge*.test.ts): the
// real daemon (`batchbridge serve --cni-socket`) in the test runner's own private namespace, the
// executable installed by `batchbridge cni-install` (socket and ADD wait compiled into the copy,
// nothing in the environment), and the libcni harness (test/helpers/cni-exec.ts) calling it.
// Also: conflists, pod namespaces, and a snapshot of everything a failed call must not change.
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { ORDER, Scope, makeTempDir, type TempDir } from '../helpers/cleanup.js';
import { CniError, CniExec, parseConflist, type CallArgs, type CniCommand, type Json, type NetConfList, type RuntimeConf } from '../helpers/cni-exec.js';
import { createNetns, type Netns } from '../helpers/netns.js';
import { run, runOk, type RunOptions } from '../helpers/proc.js';
import { BIN, Client, assertPrivateNetns, startPlugin, tail, wipeNamespace, type PluginProc } from './crash-kit.js';

export const PLUGIN_TYPE = 'batchbridge-cni';

export interface CniDaemon {
  readonly dir: TempDir;
  readonly stateDir: string;
  readonly cniSocket: string;
  readonly spoolDir: string;
  readonly binDir: string;
  readonly cni: CniExec;
  /** the Docker remote-driver socket of the same daemon */
  readonly docker: Client;
  readonly proc: () => PluginProc | null;
  start(): Promise<void>;
  kill9(): Promise<void>;
  /** the daemon's log, for assertion messages */
  log(): string;
}

/**
 * Starts `serve` here (the runner's private namespace) with its own state dir, sockets and CNI
 * socket, and installs the executable. No periodic reconcile and a slow firewall watchdog, so
 * the damage the CHECK tests make stays until CHECK looks.
 */
export async function cniDaemon(scope: Scope, name: string, o: { addWaitMs?: number } = {}): Promise<CniDaemon> {
  assertPrivateNetns();
  const dir = await makeTempDir('bbt-cniexec-');
  const stateDir = join(dir.path, 'state');
  const socketDir = join(dir.path, 'sock');
  const cniSocket = join(socketDir, 'cni.sock');
  const binDir = join(dir.path, 'bin');
  const logPath = join(dir.path, 'serve.log');
  let proc: PluginProc | null = null;
  const docker = new Client(join(socketDir, `${name}.sock`), 5_000);
  scope.defer(`batchbridge serve ${name}`, async () => {
    await docker.close();
    await proc?.kill9();
    await wipeNamespace();
    await dir.close();
  }, ORDER.plugin);
  const start = async (): Promise<void> => {
    proc = await startPlugin({
      name, stateDir, socketDir, logPath,
      extraArgs: ['--cni-socket', cniSocket, '--reconcile-interval-ms', '0', '--firewall-check-ms', '3600000'],
    });
  };
  await start();
  await runOk([process.execPath, BIN, 'cni-install', '--bin-dir', binDir, '--socket', cniSocket, '--add-wait-ms', String(o.addWaitMs ?? 5000)]);
  // The installed copy must find the daemon by itself: no BATCHBRIDGE_* in what the plugins inherit.
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('BATCHBRIDGE_')) env[k] = v;
  const cni = new CniExec({ path: [binDir], cacheDir: join(dir.path, 'cache'), env, timeoutMs: 30_000 });
  return {
    dir, stateDir, cniSocket, spoolDir: `${cniSocket}.spool`, binDir, cni, docker,
    proc: () => proc,
    start,
    kill9: async () => {
      await proc?.kill9();
      proc = null;
    },
    log: () => tail(logPath),
  };
}

export interface ConflistOptions {
  readonly name: string;
  readonly socket: string;
  readonly bridge: string;
  readonly subnet: string;
  readonly subnet6?: string;
  readonly cniVersion?: string;
  readonly mtu?: number;
  readonly isDefaultGateway?: boolean;
  /** merged into the plugin entry last (bad values, unsupported fields) */
  readonly extra?: Record<string, Json>;
}

/** One batchbridge-cni entry, as `cni-install --conf-dir` writes it (capabilities all on). */
export function bbConflist(o: ConflistOptions): NetConfList {
  const ranges: Json[] = [[{ subnet: o.subnet }]];
  if (o.subnet6 !== undefined) ranges.push([{ subnet: o.subnet6 }]);
  const plugin: Record<string, Json> = {
    type: PLUGIN_TYPE,
    socket: o.socket,
    bridge: o.bridge,
    isGateway: true,
    isDefaultGateway: o.isDefaultGateway ?? true,
    ipMasq: true,
    ...(o.mtu !== undefined ? { mtu: o.mtu } : {}),
    ipam: { type: 'batchbridge', ranges },
    capabilities: { portMappings: true, ips: true, mac: true },
    ...(o.extra ?? {}),
  };
  return parseConflist(JSON.stringify({ cniVersion: o.cniVersion ?? '1.0.0', name: o.name, plugins: [plugin] }));
}

/** The same list in another cniVersion (the network stays the same). */
export function withVersion(list: NetConfList, cniVersion: string): NetConfList {
  return parseConflist(JSON.stringify({ ...JSON.parse(list.bytes) as object, cniVersion }));
}

/** A pod: a namespace under /run/netns (deleted by the scope) and its runtime arguments. */
export async function newPod(scope: Scope, rt: Partial<RuntimeConf> = {}): Promise<{ ns: Netns; rt: RuntimeConf }> {
  const ns = scope.add(await createNetns({ prefix: 'bbt-cxpod' }));
  return { ns, rt: { containerId: `ctr-${ns.name}`, netns: ns.path, ifName: 'eth0', ...rt } };
}

/** The failure of `p` as a CniError (assert.fail when it succeeded or failed otherwise). */
export async function cniFailure(p: Promise<unknown>): Promise<CniError> {
  const e = await p.then(() => undefined, (x: unknown) => x);
  assert.ok(e instanceof CniError, `expected a plugin error, got ${e === undefined ? 'success' : String(e)}`);
  return e;
}

/** One raw plugin execution (RawExec.ExecPlugin: all six CNI_* set, stdin as given). */
export function execRaw(cni: CniExec, command: CniCommand, stdin: string, a: Partial<CallArgs> = {}): Promise<string> {
  return cni.exec(command, PLUGIN_TYPE, stdin, { containerId: '', netns: '', ifName: '', path: cni.path, ...a });
}

/** The entry's stdin as libcni builds it for one plugin call. */
export function stdinOf(list: NetConfList, extra: Record<string, Json> = {}): string {
  return JSON.stringify({ ...list.plugins[0]?.raw, name: list.name, cniVersion: list.cniVersion, ...extra });
}

// ------------------------------------------------------------------------------------ state

/**
 * This namespace (the runner's and the daemon's) as a Netns handle, for helpers that take one
 * (createExternalPeer): commands run directly; closing it does nothing.
 */
export function selfNetns(): Netns {
  const path = `/proc/${process.pid}/ns/net`;
  const execOk = async (argv: readonly string[], opts?: RunOptions): Promise<string> => runOk(argv, opts);
  return {
    name: 'self',
    path,
    label: 'the runner\'s own namespace',
    order: ORDER.netns,
    argv: (argv) => [...argv],
    exec: (argv, opts) => run(argv, opts),
    execOk,
    delete: async () => {},
    close: async () => {},
    emergencyCloseSync: () => {},
  };
}

function linkView(json: string): Array<Record<string, unknown>> {
  const links = JSON.parse(json) as Array<{ ifname: string; master?: string; mtu: number; address?: string; linkinfo?: { info_kind?: string }; addr_info?: Array<{ local: string; prefixlen: number; scope: string }> }>;
  return links.map((l) => ({
    ifname: l.ifname,
    master: l.master ?? null,
    mtu: l.mtu,
    mac: l.address ?? null,
    kind: l.linkinfo?.info_kind ?? null,
    // link-local addresses come and go with DAD: not ours to compare
    addrs: (l.addr_info ?? []).filter((a) => a.scope !== 'link').map((a) => `${a.local}/${a.prefixlen}`).sort(),
  })).sort((a, b) => String(a.ifname).localeCompare(String(b.ifname)));
}

async function rules(save: string): Promise<string[]> {
  // Counters and the generation comments change on their own.
  return (await runOk([save])).split('\n').filter((l) => l !== '' && !l.startsWith('#')).map((l) => l.replace(/\[\d+:\d+\]/g, ''));
}

/** The books, read-only from SQLite (the daemon may be running). */
export function booksOf(stateDir: string): { networks: string[]; endpoints: Array<{ id: string; host: string; peer: string; ipv4: string; ipv6: string | null; mac: string; mappings: number }>; intents: number } {
  const db = new Database(join(stateDir, 'batchbridge.db'), { readonly: true, fileMustExist: true });
  try {
    const networks = (db.prepare('SELECT record FROM networks').all() as Array<{ record: string }>).map((r) => (JSON.parse(r.record) as { spec: { id: string } }).spec.id).sort();
    const endpoints = (db.prepare('SELECT record FROM endpoints').all() as Array<{ record: string }>).map((r) => {
      const e = JSON.parse(r.record) as { id: string; host: string; peer: string; ipv4: string; ipv6: string | null; mac: string; mappings: unknown[] };
      return { id: e.id, host: e.host, peer: e.peer, ipv4: e.ipv4, ipv6: e.ipv6, mac: e.mac, mappings: e.mappings.length };
    }).sort((a, b) => a.id.localeCompare(b.id));
    const intents = (db.prepare('SELECT COUNT(*) AS n FROM intents').get() as { n: number }).n;
    return { networks, endpoints, intents };
  } finally {
    db.close();
  }
}

/**
 * Everything a refused call must leave as it was: the links, addresses and rules of this
 * namespace, the books, the links and routes inside `pods`, the spool.
 */
export async function snapshot(d: CniDaemon, pods: readonly Netns[] = []): Promise<unknown> {
  const podState: Record<string, unknown> = {};
  for (const p of pods) {
    podState[p.name] = {
      links: linkView(await p.execOk(['ip', '-j', '-d', 'addr', 'show'])),
      routes: (await p.execOk(['ip', 'route', 'show'])) + (await p.execOk(['ip', '-6', 'route', 'show'])),
    };
  }
  return {
    links: linkView(await runOk(['ip', '-j', '-d', 'addr', 'show'])),
    v4: await rules('iptables-save'),
    v6: await rules('ip6tables-save'),
    books: booksOf(d.stateDir),
    pods: podState,
    spool: existsSync(d.spoolDir) ? readdirSync(d.spoolDir).sort() : [],
  };
}

/** Host veths of this namespace (the host ends of attachments). */
export async function hostVeths(): Promise<string[]> {
  const out = await runOk(['ip', '-j', 'link', 'show', 'type', 'veth']);
  return (JSON.parse(out) as Array<{ ifname: string }>).map((l) => l.ifname).filter((n) => /^veth[0-9a-f]{7}$/.test(n)).sort();
}

/** `ip -j -d link show dev NAME` in `ns` (or here), or undefined when it is not there. */
export async function linkIn(ns: Netns | null, name: string): Promise<{ ifname: string; mtu: number; address: string; master?: string; operstate?: string } | undefined> {
  const argv = ['ip', '-j', '-d', 'link', 'show', 'dev', name];
  const r = ns === null ? await run(argv) : await ns.exec(argv);
  if (r.code !== 0) return undefined;
  return (JSON.parse(r.stdout) as Array<{ ifname: string; mtu: number; address: string; master?: string }>)[0];
}

/** The nat table's lines that name a port (our DNAT rules). */
export async function dnatRules(v6 = false): Promise<string[]> {
  return (await rules(v6 ? 'ip6tables-save' : 'iptables-save')).filter((l) => /^-A BB-DNAT-/.test(l) && / -j DNAT /.test(l));
}
