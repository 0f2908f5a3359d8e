// Support for the crash, reconcile, fault and backpressure kernel tests. These tests run inside
// the private network namespace that `unshare --net node --test` gives the runner, so the plugin
// is started right here as a child process (no nsenter), with its socket in a temp dir.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { Agent, request } from 'undici';
import { run, runOk, sleep } from '../helpers/proc.js';

export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const BIN = join(REPO_ROOT, 'bin', 'batchbridge.js');

// One guard for every kernel test file (test/netns/bb-kernel.ts).
export { assertPrivateNetns } from './bb-kernel.js';

export interface TempDir {
  readonly path: string;
  remove(): Promise<void>;
}

export async function tempDir(prefix = 'bbt-crash-'): Promise<TempDir> {
  const path = await mkdtemp(join('/tmp', prefix));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}

/**
 * After the test: kill the plugin running then (if any), run `more`, wipe the namespace, remove
 * the directory. `plugin` is read at teardown, so tests that restart the plugin stay covered.
 */
export function cleanUpAfter(t: TestContext, dir: TempDir, plugin: () => PluginProc | null, more?: () => Promise<void>): void {
  t.after(async () => {
    await plugin()?.kill9();
    await more?.();
    await wipeNamespace();
    await dir.remove();
  });
}

export interface CallResult {
  /** HTTP status, or -1 when the connection broke after the request was sent (outcome unknown) */
  readonly status: number;
  readonly body: Record<string, unknown>;
  readonly text: string;
  /** how often the request was sent again after a connection broke under it (resend mode) */
  readonly resent?: number;
}

/** Errors that mean the connection broke after (part of) the request went out. */
const BROKEN = new Set(['UND_ERR_SOCKET', 'ECONNRESET', 'EPIPE', 'UND_ERR_CLOSED']);

/**
 * A dockerd-like client: a connection that cannot be made (ECONNREFUSED, ENOENT: the plugin is
 * down) is retried for up to retryMs, as dockerd does. A connection that breaks after the request
 * went out is, by default, not retried (the outcome is unknown, status -1); with `resend` the
 * identical request is sent again within the same retryMs, as a client that keeps its request
 * body does (dockerd 20.10 resends the call with an empty body: test/e2e/dockerd-retry.test.ts).
 */
export class Client {
  private agent: Agent;

  constructor(
    readonly socketPath: string,
    private readonly retryMs = 30_000,
    private readonly resend = false,
  ) {
    this.agent = new Agent({ connect: { socketPath }, headersTimeout: 120_000, bodyTimeout: 120_000, pipelining: 0 });
  }

  async raw(path: string, body: string | undefined, headers: Record<string, string> = {}): Promise<CallResult> {
    const deadline = Date.now() + this.retryMs;
    let resent = 0;
    for (;;) {
      try {
        const res = await request(`http://localhost${path}`, {
          method: 'POST',
          dispatcher: this.agent,
          headers,
          ...(body === undefined ? {} : { body }),
        });
        const text = await res.body.text();
        let parsed: Record<string, unknown> = {};
        try {
          const v: unknown = JSON.parse(text);
          if (v !== null && typeof v === 'object') parsed = v as Record<string, unknown>;
        } catch {
          // not JSON: callers look at text
        }
        return { status: res.statusCode, body: parsed, text, resent };
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? '';
        const broken = this.resend && BROKEN.has(code);
        if ((code === 'ECONNREFUSED' || code === 'ENOENT' || broken) && Date.now() < deadline) {
          if (broken) resent++;
          await sleep(25);
          continue;
        }
        return { status: -1, body: {}, text: `${code}: ${(err as Error).message}`, resent };
      }
    }
  }

  call(method: string, body: unknown = {}): Promise<CallResult> {
    const path = method.includes('.') ? `/${method}` : `/NetworkDriver.${method}`;
    return this.raw(path, JSON.stringify(body), { 'content-type': 'application/vnd.docker.plugins.v1.2+json' });
  }

  async close(): Promise<void> {
    await this.agent.close().catch(() => undefined);
  }
}

export interface PluginProc {
  readonly pid: number;
  readonly socketPath: string;
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill9(): Promise<void>;
  /** SIGTERM and wait (SIGKILL after 15 s); returns the exit status */
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export interface PluginOptions {
  readonly name: string;
  readonly stateDir: string;
  readonly socketDir: string;
  readonly logPath: string;
  readonly extraArgs?: readonly string[];
  readonly env?: NodeJS.ProcessEnv;
}

/** Its own CNI socket beside the plugin socket, unless the test chose. */
function cniArgs(o: PluginOptions): string[] {
  return (o.extraArgs ?? []).some((a) => a === '--cni-socket' || a === '--no-cni') ? [] : ['--cni-socket', join(dirname(o.logPath), `${o.name}-cni.sock`)];
}

/** Start `batchbridge serve` in this namespace and wait until it answers Plugin.Activate. */
export async function startPlugin(o: PluginOptions, readyMs = 20_000): Promise<PluginProc> {
  const socketPath = join(o.socketDir, `${o.name}.sock`);
  const fd = openSync(o.logPath, 'a');
  let child: ChildProcess;
  try {
    child = spawn(
      process.execPath,
      [BIN, 'serve', '--name', o.name, '--state-dir', o.stateDir, '--socket-dir', o.socketDir, '--log-level', 'warn', ...cniArgs(o), ...(o.extraArgs ?? [])],
      { stdio: ['ignore', fd, fd], env: { ...process.env, ...(o.env ?? {}) } },
    );
  } finally {
    closeSync(fd);
  }
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('exit', (code, signal) => resolve({ code, signal }));
  });
  let done = false;
  void exited.then(() => {
    done = true;
  });
  const pid = child.pid ?? -1;
  const proc: PluginProc = {
    pid,
    socketPath,
    child,
    exited,
    kill9: async () => {
      if (!done) child.kill('SIGKILL');
      await exited;
    },
    stop: async () => {
      if (!done) child.kill('SIGTERM');
      const t = setTimeout(() => {
        if (!done) child.kill('SIGKILL');
      }, 15_000);
      const r = await exited;
      clearTimeout(t);
      return r;
    },
  };
  const probe = new Client(socketPath, 0);
  const deadline = Date.now() + readyMs;
  try {
    for (;;) {
      if (done) throw new Error(`plugin exited during start:\n${tail(o.logPath)}`);
      if (existsSync(socketPath)) {
        const r = await probe.call('Plugin.Activate', undefined);
        if (r.status === 200) return proc;
      }
      if (Date.now() > deadline) {
        await proc.kill9();
        throw new Error(`plugin not ready after ${readyMs} ms:\n${tail(o.logPath)}`);
      }
      await sleep(20);
    }
  } finally {
    await probe.close();
  }
}

export function tail(path: string, lines = 40): string {
  try {
    return readFileSync(path, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

// --------------------------------------------------------------------------- kernel vs books

export interface BookedNetwork {
  readonly id: string;
  readonly bridge: string;
  readonly createdBridge: boolean;
  readonly gateway: string; // "ip/prefix"
}

export interface BookedEndpoint {
  readonly id: string;
  readonly networkId: string;
  readonly host: string;
  readonly peer: string;
  readonly mappings: number;
  /** "ip/prefix" */
  readonly ipv4: string;
  readonly mac: string;
}

export interface BooksView {
  readonly networks: Map<string, BookedNetwork>;
  readonly endpoints: Map<string, BookedEndpoint>;
  readonly intents: number;
  /** the link group the plugin marks its interfaces with */
  readonly ownerGroup: number;
}

/** Read the books from SQLite directly (read-only; the plugin may be running). */
export function readBooks(stateDir: string): BooksView {
  const db = new Database(join(stateDir, 'batchbridge.db'), { readonly: true, fileMustExist: true });
  try {
    const networks = new Map<string, BookedNetwork>();
    for (const row of db.prepare('SELECT record FROM networks').all() as Array<{ record: string }>) {
      const r = JSON.parse(row.record) as { spec: { id: string; bridge: string; ipv4: { ip: string; prefix: number }; inhibitIpv4: boolean }; createdBridge: boolean };
      networks.set(r.spec.id, { id: r.spec.id, bridge: r.spec.bridge, createdBridge: r.createdBridge, gateway: `${r.spec.ipv4.ip}/${r.spec.ipv4.prefix}` });
    }
    const endpoints = new Map<string, BookedEndpoint>();
    for (const row of db.prepare('SELECT record FROM endpoints').all() as Array<{ record: string }>) {
      const r = JSON.parse(row.record) as { id: string; networkId: string; host: string; peer: string; mappings: unknown[]; ipv4: string; mac: string };
      endpoints.set(r.id, { id: r.id, networkId: r.networkId, host: r.host, peer: r.peer, mappings: r.mappings.length, ipv4: r.ipv4, mac: r.mac });
    }
    const intents = (db.prepare('SELECT COUNT(*) AS n FROM intents').get() as { n: number }).n;
    const mark = db.prepare("SELECT value FROM meta WHERE key = 'owner_group'").get() as { value: string } | undefined;
    return { networks, endpoints, intents, ownerGroup: Number(mark?.value ?? 0) };
  } finally {
    db.close();
  }
}

interface LinkJson {
  ifname: string;
  master?: string;
  flags?: string[];
  linkinfo?: { info_kind?: string };
  addr_info?: Array<{ local: string; prefixlen: number }>;
}

export async function kernelLinks(): Promise<Map<string, LinkJson>> {
  const out = await runOk(['ip', '-j', '-d', 'addr', 'show']);
  const arr = JSON.parse(out) as LinkJson[];
  return new Map(arr.map((l) => [l.ifname, l]));
}

const VETH_RE = /^veth[0-9a-f]{7}$/;
const TAG_RE = /--comment "?bb:(net|ep)=([A-Za-z0-9_-]+)"?/;

/**
 * Everything that must hold between the kernel and the books. Returns a list of problems
 * (empty when consistent). `userBridges`: bridges made by the test that must never be deleted.
 */
export async function checkConsistency(books: BooksView, userBridges: readonly string[] = []): Promise<string[]> {
  const problems: string[] = [];
  const links = await kernelLinks();
  const bridges = new Set([...books.networks.values()].map((n) => n.bridge));
  for (const n of books.networks.values()) {
    const l = links.get(n.bridge);
    if (l === undefined) problems.push(`network ${n.id}: bridge ${n.bridge} missing`);
    else {
      if (l.linkinfo?.info_kind !== 'bridge') problems.push(`network ${n.id}: ${n.bridge} is not a bridge`);
      if (!(l.flags ?? []).includes('UP')) problems.push(`network ${n.id}: bridge ${n.bridge} is down`);
      if (!(l.addr_info ?? []).some((a) => `${a.local}/${a.prefixlen}` === n.gateway)) problems.push(`network ${n.id}: bridge ${n.bridge} lacks ${n.gateway}`);
    }
  }
  const owned = new Set<string>();
  for (const e of books.endpoints.values()) {
    owned.add(e.host);
    owned.add(e.peer);
    const net = books.networks.get(e.networkId);
    if (net === undefined) problems.push(`endpoint ${e.id}: network ${e.networkId} not booked`);
    const l = links.get(e.host);
    if (l === undefined) problems.push(`endpoint ${e.id}: veth ${e.host} missing`);
    else if (net !== undefined && l.master !== net.bridge) problems.push(`endpoint ${e.id}: veth ${e.host} on ${l.master ?? 'no bridge'}, not ${net.bridge}`);
  }
  for (const l of links.values()) {
    // This namespace holds nothing but what the test and the plugin made: every veth+7hex is ours.
    if (VETH_RE.test(l.ifname) && !owned.has(l.ifname)) problems.push(`orphan veth ${l.ifname} (master ${l.master ?? '-'})`);
    if (l.linkinfo?.info_kind === 'bridge' && !bridges.has(l.ifname) && !userBridges.includes(l.ifname)) problems.push(`orphan bridge ${l.ifname}`);
  }
  for (const b of userBridges) if (!links.has(b)) problems.push(`user bridge ${b} was deleted`);

  // Firewall: every tagged rule in our chains is explained by the books, and bookings have rules.
  const save = await runOk(['iptables-save']);
  const netTags = new Map<string, number>();
  const epTags = new Map<string, number>();
  for (const line of save.split('\n')) {
    if (!line.startsWith('-A BB-')) continue;
    const m = TAG_RE.exec(line);
    if (m === null) continue;
    const map = m[1] === 'net' ? netTags : epTags;
    map.set(m[2] ?? '', (map.get(m[2] ?? '') ?? 0) + 1);
  }
  const netIds = new Set([...books.networks.keys()].map((id) => id.slice(0, 12)));
  for (const [tag, n] of netTags) if (!netIds.has(tag)) problems.push(`${n} orphan rule(s) tagged bb:net=${tag}`);
  for (const id of netIds) if (!netTags.has(id)) problems.push(`network ${id}: no rules`);
  const epWant = new Map<string, number>();
  for (const e of books.endpoints.values()) if (e.mappings > 0) epWant.set(e.id.slice(0, 12), (epWant.get(e.id.slice(0, 12)) ?? 0) + e.mappings);
  for (const [tag, n] of epTags) if ((epWant.get(tag) ?? 0) !== n) problems.push(`bb:ep=${tag}: ${n} rule(s), books want ${epWant.get(tag) ?? 0}`);
  for (const [tag, n] of epWant) if (!epTags.has(tag)) problems.push(`bb:ep=${tag}: no rules, books want ${n}`);
  return problems;
}

/** Remove everything the plugin could have left in this namespace (between tests). */
export async function wipeNamespace(): Promise<void> {
  const links = await kernelLinks();
  for (const l of links.values()) {
    if (VETH_RE.test(l.ifname) || l.linkinfo?.info_kind === 'bridge' || l.ifname.startsWith('bbt')) {
      await run(['ip', 'link', 'del', 'dev', l.ifname]);
    }
  }
  for (const [save, restore] of [['iptables-save', 'iptables-restore'], ['ip6tables-save', 'ip6tables-restore']] as const) {
    const text = await runOk([save]);
    // Drop our hooks and chains: keep the built-in chains' other rules.
    const kept = text.split('\n').filter((l) => !/BB-/.test(l));
    await run([restore], { input: `${kept.join('\n')}\n` });
  }
}
