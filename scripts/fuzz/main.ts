// `npm run fuzz -- [options]` (= `unshare --net node dist/scripts/fuzz/main.js`): the scale
// fuzzer. Not part of CI. See HELP and docs/reliability.md ("Fuzzing at scale").
import { copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { runOk } from '../../test/helpers/proc.js';
import {
  assertPrivateNetns, checkConsistency, readBooks, startPlugin, tail, tempDir, wipeNamespace, type PluginProc,
} from '../../test/netns/crash-kit.js';
import { anyRequest, draw, hostileRequest, KNOWN_ROUTES, type Fixture, type Req } from './generate.js';
import { runSequences } from './sequences.js';
import { FuzzClient, Tally, type Expect } from './wire.js';

const HELP = `batchbridge scale fuzzer: sends generated requests to a plugin it starts in this network
namespace, in three phases, and checks after each that the plugin is alive, that every request
got a clear answer (200 with a JSON object, or non-200 with a non-empty Err; never 404 on a
known route; no answer later than --timeout-ms), and that the kernel and the books agree.

  routes     anything on every route (and on unknown ones): random bytes, JSON, content types;
             the kernel and the books must not change
  hostile    malicious ids, names, CIDRs, addresses, MACs, options and port bindings; every
             one must be refused, and the kernel and the books must not change
  sequences  dockerd-like clients run container lifecycles and network churn; any call may be
             repeated, sent twice at once, or sent on a connection closed before the answer
             and retried; identical calls must be answered alike; then everything is removed
             through the protocol and nothing of ours may remain

Usage: unshare --net node dist/scripts/fuzz/main.js [options]   (npm run fuzz -- [options])
  --requests N       requests in all (default 100000), split 40/30/30 over the phases
  --phases LIST      comma-separated subset of routes,hostile,sequences (default: all)
  --seed S           reproduce a run (default: time-based; printed)
  --concurrency N    requests in flight in the routes and hostile phases (default 32)
  --workers N        clients in the sequence phase, at most 16 (default 12)
  --timeout-ms MS    longest wait for one answer (default 15000)
  --plugin-arg ARG   extra argument for 'batchbridge serve' (repeatable), e.g.
                     --plugin-arg=--stale-endpoint-grace-ms --plugin-arg=500
  --json             print the summary as JSON as well
  --keep-log FILE    copy the plugin's log (level warn) to FILE at the end
Exit status: 0 when nothing broke a rule, 1 otherwise, 2 on bad usage.`;

const SHARES = { routes: 0.4, hostile: 0.3, sequences: 0.3 } as const;
type Phase = keyof typeof SHARES;
const FIXTURE: Fixture = { net: 'fuzzfixnet000001', ep: 'fuzzfixep0000001', subnet24: '198.18.150' };

interface Options {
  requests: number;
  phases: Phase[];
  seed: number;
  concurrency: number;
  workers: number;
  timeoutMs: number;
  pluginArgs: string[];
  json: boolean;
  keepLog: string | undefined;
}

function parse(argv: string[]): Options | null {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      requests: { type: 'string' }, phases: { type: 'string' }, seed: { type: 'string' }, concurrency: { type: 'string' },
      workers: { type: 'string' }, 'timeout-ms': { type: 'string' }, 'plugin-arg': { type: 'string', multiple: true },
      json: { type: 'boolean' }, 'keep-log': { type: 'string' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return null;
  const int = (v: string | undefined, name: string, dflt: number, min: number, max: number): number => {
    if (v === undefined) return dflt;
    if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) throw new Error(`--${name} must be a whole number from ${min} to ${max}`);
    return Number(v);
  };
  const phases = (values.phases ?? 'routes,hostile,sequences').split(',') as Phase[];
  for (const p of phases) if (!(p in SHARES)) throw new Error(`--phases: unknown phase ${p}`);
  return {
    requests: int(values.requests, 'requests', 100_000, 1, 100_000_000),
    phases,
    seed: int(values.seed, 'seed', Date.now() % 1_000_000, 0, 2 ** 31),
    concurrency: int(values.concurrency, 'concurrency', 32, 1, 1024),
    workers: int(values.workers, 'workers', 12, 1, 16),
    timeoutMs: int(values['timeout-ms'], 'timeout-ms', 15_000, 100, 600_000),
    pluginArgs: values['plugin-arg'] ?? [],
    json: values.json === true,
    keepLog: values['keep-log'],
  };
}

/** Links with addresses, and our rules, as one comparable string. */
async function kernelState(): Promise<string> {
  const links = JSON.parse(await runOk(['ip', '-j', '-d', 'addr', 'show'])) as Array<Record<string, unknown>>;
  const slim = links.map((l) => [l.ifname, l.master, l.mtu, (l.addr_info as Array<{ local: string; prefixlen: number }>).map((a) => `${a.local}/${a.prefixlen}`)]);
  const rules = [4, 6].map(async (f) => (await runOk([f === 4 ? 'iptables-save' : 'ip6tables-save'])).split('\n').filter((l) => /^[-:*]|^COMMIT/.test(l)).map((l) => l.replace(/\[\d+:\d+\]/, '')));
  return JSON.stringify({ slim, rules: await Promise.all(rules) });
}

function booksState(stateDir: string): string {
  return JSON.stringify(readBooks(stateDir), (_k, v: unknown) => (v instanceof Map ? [...v.entries()] : v));
}

/** Send every request of `reqs` with `concurrency` in flight. */
async function pump(client: FuzzClient, tally: Tally, phase: string, reqs: Iterable<Req>, expect: Expect, concurrency: number): Promise<void> {
  const it = reqs[Symbol.iterator]();
  const lane = async (): Promise<void> => {
    for (let n = it.next(); n.done !== true; n = it.next()) {
      const r = n.value;
      const a = await client.send(r.path, r.body, r.contentType);
      tally.record(phase, r.path, a, expect, () => JSON.stringify(String(r.body ?? '').slice(0, 160)));
    }
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
}

interface Run {
  readonly o: Options;
  readonly client: FuzzClient;
  readonly tally: Tally;
  readonly stateDir: string;
}

async function setUpFixture(client: FuzzClient): Promise<void> {
  const ok = async (method: string, body: unknown): Promise<void> => {
    const a = await client.call(method, body);
    if (a.status !== 200) throw new Error(`set-up ${method} failed: ${a.status} ${a.text}`);
  };
  const ids = { NetworkID: FIXTURE.net, EndpointID: FIXTURE.ep };
  await ok('CreateNetwork', { NetworkID: FIXTURE.net, Options: {}, IPv4Data: [{ Pool: `${FIXTURE.subnet24}.0/24`, Gateway: `${FIXTURE.subnet24}.1/24` }], IPv6Data: [] });
  await ok('CreateEndpoint', { ...ids, Interface: { Address: `${FIXTURE.subnet24}.5/24` }, Options: {} });
  await ok('Join', { ...ids, SandboxKey: '/x', Options: {} });
  await ok('ProgramExternalConnectivity', { ...ids, Options: { 'com.docker.network.portmap': [{ Proto: 6, Port: 80, HostPort: 18300, HostPortEnd: 18300 }] } });
}

/** The sequences, then everything removed through the protocol, as dockerd would; nothing may remain. */
async function sequencePhase(r: Run, n: number): Promise<void> {
  const held = await runSequences(r.client, r.tally, { workers: r.o.workers, budget: n, seed: r.o.seed, stateDir: r.stateDir });
  for (const p of await checkConsistency(readBooks(r.stateDir))) r.tally.violation('kernel and books disagree after the sequences', p);
  for (const [ep, net] of held) await r.client.call('DeleteEndpoint', { NetworkID: net, EndpointID: ep });
  for (const net of readBooks(r.stateDir).networks.keys()) if (net !== FIXTURE.net) await r.client.call('DeleteNetwork', { NetworkID: net });
  const stray = [...readBooks(r.stateDir).endpoints.values()].filter((e) => e.networkId !== FIXTURE.net || e.id !== FIXTURE.ep);
  for (const e of stray) r.tally.violation('booked after everything was removed', `${e.id} on ${e.networkId} (${e.ipv4})`);
}

/** One phase, and the checks after it. */
async function phase(r: Run, plugin: PluginProc, name: Phase, n: number, logPath: string): Promise<void> {
  const t0 = Date.now();
  const kernel0 = await kernelState();
  const books0 = booksState(r.stateDir);
  if (name === 'routes') await pump(r.client, r.tally, name, draw(anyRequest, n, r.o.seed), 'any', r.o.concurrency);
  if (name === 'hostile') await pump(r.client, r.tally, name, draw(hostileRequest(FIXTURE), n, r.o.seed + 7919), 'refuse', r.o.concurrency);
  if (name === 'sequences') await sequencePhase(r, n);
  if (plugin.child.exitCode !== null || plugin.child.signalCode !== null) throw new Error(`the plugin died in phase ${name}:\n${tail(logPath)}`);
  const alive = await r.client.call('Plugin.Activate', undefined);
  if (alive.status !== 200) r.tally.violation('not alive after a phase', `${name}: Plugin.Activate -> ${alive.status} ${alive.text}`);
  const books = readBooks(r.stateDir);
  if (books.intents !== 0) r.tally.violation('intents left after a phase', `${name}: ${books.intents}`);
  for (const p of await checkConsistency(books)) r.tally.violation(`kernel and books disagree after phase ${name}`, p);
  if (name !== 'sequences') {
    if ((await kernelState()) !== kernel0) r.tally.violation(`the kernel changed in phase ${name}`, 'links, addresses or rules differ from before the phase');
    if (booksState(r.stateDir) !== books0) r.tally.violation(`the books changed in phase ${name}`, 'networks or endpoints differ from before the phase');
  }
  process.stdout.write(`phase ${name}: ${n} requests in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
}

function summary(o: Options, tally: Tally, started: number): void {
  process.stdout.write(`${tally.report()}\nseed ${o.seed}; ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
  if (!o.json) return;
  const phases = Object.fromEntries([...tally.phases].map(([p, routes]) => [p, Object.fromEntries([...routes].map(([rt, c]) => [rt, { sent: c.sent, statuses: Object.fromEntries(c.statuses) }]))]));
  process.stdout.write(`${JSON.stringify({ seed: o.seed, total: tally.total, phases, violations: Object.fromEntries(tally.violations) })}\n`);
}

async function main(): Promise<number> {
  let o: Options | null;
  try {
    o = parse(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n\n${HELP}\n`);
    return 2;
  }
  if (o === null) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  assertPrivateNetns();
  const dir = await tempDir('bbt-fuzz-');
  const stateDir = join(dir.path, 'state');
  const logPath = join(dir.path, 'plugin.log');
  let plugin: PluginProc | null = null;
  const tally = new Tally(new Set<string>(KNOWN_ROUTES));
  const started = Date.now();
  process.stdout.write(`fuzz: seed ${o.seed}, ${o.requests} requests, phases ${o.phases.join(',')}\n`);
  try {
    plugin = await startPlugin({
      name: 'bbfuzz', stateDir, socketDir: join(dir.path, 'sock'), logPath,
      extraArgs: ['--reconcile-interval-ms', '0', '--firewall-check-ms', '3600000', ...o.pluginArgs],
    });
    const client = new FuzzClient(plugin.socketPath, Math.max(o.concurrency, 2 * o.workers + 2), o.timeoutMs);
    await setUpFixture(client);
    const total = o.phases.reduce((sum, p) => sum + SHARES[p], 0);
    const r: Run = { o, client, tally, stateDir };
    for (const p of o.phases) await phase(r, plugin, p, Math.max(1, Math.round((o.requests * SHARES[p]) / total)), logPath);
    await client.close();
    const stopped = await plugin.stop();
    if (stopped.code !== 0) tally.violation('SIGTERM did not exit 0', JSON.stringify(stopped));
    plugin = null;
  } finally {
    await plugin?.kill9();
    if (o.keepLog !== undefined) await copyFile(logPath, o.keepLog).catch(() => undefined);
    await wipeNamespace();
    await dir.remove();
  }
  summary(o, tally, started);
  return tally.violations.size === 0 ? 0 : 1;
}

main().then((code) => process.exit(code), (e: unknown) => {
  // The namespace guard's refusal is an AssertionError: its message says it all.
  const text = e instanceof Error ? (e.name === 'AssertionError' ? e.message : e.stack ?? e.message) : String(e);
  process.stderr.write(`fuzz: ${text}\n`);
  process.exit(1);
});
