// Support for the hostile-input tests: the app over a Driver whose executor records every script
// it would run (and checks each against a strict grammar), SQLite books in a temp dir, and
// generators of hostile values.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import fc from 'fast-check';
import { pino } from 'pino';
import { buildApp } from '../../src/api/app.js';
import type { BatchRequest, BatchResponse, FirewallChange, IpOp } from '../../src/batching/ops.js';
import { renderRestorePayload } from '../../src/batching/plan-firewall.js';
import { planIpBatch, type IpWork } from '../../src/batching/plan-ip.js';
import { Driver } from '../../src/scheduler/driver.js';
import { SqliteStateStore } from '../../src/state/sqlite-store.js';
import type { KernelExecutor } from '../../src/workers/pool.js';
import { DEFAULT_TOOLS, type ToolResult } from '../../src/workers/spawn.js';

// ------------------------------------------------------------------------------ the grammar

const IF = '[A-Za-z0-9_.-]{1,15}';
const ADDR = '[0-9a-f.:]+/\\d{1,3}';
const MAC = '(?:[0-9a-f]{2}:){5}[0-9a-f]{2}';
const MTU = '(?: mtu \\d{2,5})?';
const GROUP = '(?: group \\d{1,10})?';
/** Every line an `ip -batch` script of ours may contain. */
export const IP_LINE_GRAMMAR: readonly RegExp[] = [
  new RegExp(`^link add name ${IF}${GROUP} address ${MAC}${MTU} type bridge$`),
  new RegExp(`^address (?:add|del) ${ADDR} dev ${IF}$`),
  new RegExp(`^link set dev ${IF} (?:up|down)$`),
  new RegExp(`^link add name ${IF}${GROUP}${MTU} txqueuelen 0 master ${IF} up type veth peer name ${IF}${MTU} txqueuelen 0$`),
  new RegExp(`^link set dev ${IF} group \\d+$`),
  /^link del group \d+$/,
  new RegExp(`^link del dev ${IF}$`),
];

/** A rule token: option names, interface names, addresses, ports, tags, chain names. */
const TOKEN = /^(?:!|-{1,2}[a-z][a-z-]*|[A-Za-z0-9_.:/,=[\]-]+)$/;

export function checkIpScript(text: string, expectedLines: number): void {
  assert.ok(text.endsWith('\n'), 'script ends with a newline');
  const lines = text.slice(0, -1).split('\n');
  assert.equal(lines.length, expectedLines, `ip script has ${lines.length} lines, its operations make ${expectedLines}:\n${text}`);
  for (const l of lines) assert.ok(IP_LINE_GRAMMAR.some((g) => g.test(l)), `ip line outside the grammar: ${JSON.stringify(l)}`);
}

export function checkRestorePayload(text: string, expectedRules: number, tables: number): void {
  const lines = text.slice(0, -1).split('\n');
  assert.equal(lines.length, expectedRules + 2 * tables, `payload has ${lines.length} lines, expected ${expectedRules} rules in ${tables} table(s):\n${text}`);
  for (const l of lines) {
    if (/^\*(?:filter|nat|mangle|raw)$/.test(l) || l === 'COMMIT' || /^:BB-[A-Z0-9-]+ - \[0:0\]$/.test(l)) continue;
    const m = /^-(?:[AD] [A-Z][A-Z0-9-]*|I [A-Z][A-Z0-9-]* \d+) (.*)$/.exec(l);
    assert.ok(m, `iptables line outside the grammar: ${JSON.stringify(l)}`);
    for (const tok of (m[1] ?? '').split(' ')) assert.ok(TOKEN.test(tok), `iptables token outside the grammar: ${JSON.stringify(tok)} in ${JSON.stringify(l)}`);
  }
}

/** Lines planIpBatch must make for these operations (one per address, one per link change). */
export function expectedIpLines(works: readonly IpWork[]): number {
  let n = 0;
  let deletes = 0;
  for (const w of works) {
    for (const op of w.ops as readonly IpOp[]) {
      if (op.kind === 'bridge-addrs') n += op.addrs.length + (op.up ? 1 : 0);
      else if (op.kind === 'bridge-addrs-remove') n += op.addrs.length + (op.down === true ? 1 : 0);
      else if (op.kind === 'veth-delete') deletes++;
      else n += 1;
    }
  }
  return n + deletes + (deletes > 0 ? 1 : 0);
}

export function checkFirewallChange(c: FirewallChange): void {
  for (const lines of [c.v4, c.v6]) {
    if (lines.length === 0) continue;
    const { text } = renderRestorePayload([{ owner: 1, lines }]);
    checkRestorePayload(text, lines.length, new Set(lines.map((l) => l.table)).size);
  }
}

// ------------------------------------------------------------------------------ the executor

/** Succeeds at everything, records every script, and checks each against the grammar. */
export class RecordingExecutor implements KernelExecutor {
  readonly ipScripts: string[] = [];
  readonly fwChanges: FirewallChange[] = [];
  /** grammar violations (a throw here would only fail the batch, so they are collected) */
  readonly violations: string[] = [];
  batches = 0;

  async runBatch(req: BatchRequest): Promise<BatchResponse> {
    this.batches++;
    const check = (fn: () => void): void => {
      try {
        fn();
      } catch (err) {
        this.violations.push(err instanceof Error ? err.message : String(err));
      }
    };
    const works: IpWork[] = req.ops.flatMap((o) => (o.ip && o.ip.length > 0 ? [{ opId: o.opId, ops: o.ip }] : []));
    for (const w of works) {
      for (const op of w.ops) {
        if (op.kind === 'veth-create') this.made.set(op.host, op.peer);
        else if (op.kind === 'veth-delete') this.made.delete(op.host);
      }
    }
    const plan = planIpBatch(works, req.linkGroup);
    if (works.length > 0 && plan.text !== '') {
      check(() => checkIpScript(plan.text, expectedIpLines(works)));
      this.ipScripts.push(plan.text);
    }
    for (const o of req.ops) {
      for (const c of [o.fwBefore, o.fwAfter]) {
        if (c === undefined) continue;
        check(() => checkFirewallChange(c));
        this.fwChanges.push(c);
      }
    }
    return { batchId: req.batchId, results: req.ops.map((o) => ({ opId: o.opId, ok: true })), timings: { ipMs: 0, fwMs: 0, totalMs: 0, ipSpawns: 1, fwSpawns: 0 } };
  }

  /** host and peer names of the veths the recorded scripts made and not yet deleted */
  private readonly made = new Map<string, string>();

  linkPresent(name: string): boolean {
    return this.made.has(name) || [...this.made.values()].includes(name);
  }

  async exec(_file: string, args: readonly string[]): Promise<ToolResult> {
    // probeLink: no interface exists beforehand.
    if (args.includes('dev')) return { exitCode: 1, stdout: '', stderr: 'Device "x" does not exist.\n', spawnError: null };
    return { exitCode: 0, stdout: '', stderr: '', spawnError: null };
  }

  async close(): Promise<void> {}
}

// ------------------------------------------------------------------------------ the app

export interface FuzzRig {
  readonly app: FastifyInstance;
  readonly driver: Driver;
  readonly exec: RecordingExecutor;
  readonly store: SqliteStateStore;
  /** books + intents + how many scripts ran, as one comparable string */
  snapshot(): string;
  close(): Promise<void>;
}

export const BODY_LIMIT = 64 * 1024;

export async function fuzzRig(): Promise<FuzzRig> {
  const dir = mkdtempSync(join(tmpdir(), 'bbt-fuzz-'));
  const store = new SqliteStateStore(dir);
  const exec = new RecordingExecutor();
  const log = pino({ level: 'silent' });
  const driver = new Driver(store, exec, { batchMax: 64, windowMs: 1, maxInFlight: 2, tools: DEFAULT_TOOLS }, log);
  const app = await buildApp({ driver, logger: log, maxQueue: 1000, maxEventLoopDelayMs: 60_000, maxHeapUsedBytes: 8 * 1024 ** 3, bodyLimit: BODY_LIMIT });
  const snapshot = (): string =>
    JSON.stringify({
      networks: store.loadNetworks().map((n) => n.spec.id).sort(),
      endpoints: store.loadEndpoints().map((e) => [e.id, e.mappings.length, e.requested.length, e.exposed.length]).sort(),
      intents: store.loadIntents().length,
      books: [driver.books.networks.size, driver.books.endpoints.size],
      scripts: exec.ipScripts.length,
      fw: exec.fwChanges.length,
    });
  return {
    app,
    driver,
    exec,
    store,
    snapshot,
    close: async () => {
      await app.close();
      await driver.close();
      store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function post(app: FastifyInstance, url: string, payload: string | Buffer | undefined, contentType?: string): Promise<{ status: number; body: unknown; text: string }> {
  const res = await app.inject({
    method: 'POST',
    url,
    ...(payload === undefined ? {} : { payload }),
    headers: contentType === undefined ? {} : { 'content-type': contentType },
  });
  let body: unknown;
  try {
    body = JSON.parse(res.body);
  } catch {
    body = undefined;
  }
  return { status: res.statusCode, body, text: res.body };
}

/** A refusal as the protocol wants it: non-200, never 404, and {"Err": "<something>"}. */
export function assertRefused(r: { status: number; body: unknown; text: string }, what: string): void {
  assert.notEqual(r.status, 200, `${what}: accepted: ${r.text}`);
  assert.notEqual(r.status, 404, `${what}: 404 means "not implemented" to dockerd: ${r.text}`);
  assert.ok(r.status >= 400 && r.status <= 599, `${what}: status ${r.status}`);
  const err = (r.body as { Err?: unknown } | undefined)?.Err;
  assert.ok(typeof err === 'string' && err.length > 0, `${what}: no Err in ${r.text}`);
}

// ------------------------------------------------------------------------------ hostile values

/** Characters that must never reach a script: separators, quotes, shell and iptables syntax. */
export const NASTY_CHARS = ['\n', '\r', ' ', '\t', '"', "'", '`', '$', ';', '&', '|', '>', '<', '(', ')', '{', '}', '\\', '/', '*', '?', '!', '#', '%', '\0', 'é', 'ü', '∂', '😀', '\u202e', ',', ':', '=', '+', '@', '~'];

/** A string with at least one nasty character somewhere in otherwise plausible text. */
export const nastyString = (base: fc.Arbitrary<string> = fc.string({ maxLength: 20 })): fc.Arbitrary<string> =>
  fc.tuple(base, fc.constantFrom(...NASTY_CHARS), base, fc.nat(40)).map(([a, c, b, i]) => {
    const s = a + b;
    const at = i % (s.length + 1);
    return s.slice(0, at) + c + s.slice(at);
  });

/** Ids that are not valid network/endpoint ids. */
export const badId: fc.Arbitrary<unknown> = fc.oneof(
  nastyString(fc.stringMatching(/^[a-f0-9]{0,30}$/)),
  fc.constant(''),
  fc.stringMatching(/^[a-f0-9]{129,200}$/),
  fc.integer(),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.string(), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 5 }), fc.string({ maxLength: 5 }), { maxKeys: 2 }),
  fc.constantFrom('-leading-dash', '_x', 'a b', 'a\nb', '../../etc', 'x;reboot', '$(id)'),
);

/** Interface names the kernel (or we) must refuse. */
export const badIfName: fc.Arbitrary<unknown> = fc.oneof(
  nastyString(fc.stringMatching(/^[a-z0-9]{0,12}$/)),
  fc.stringMatching(/^[a-z0-9]{16,40}$/),
  fc.constantFrom('.', '..', 'br0 up', 'br0\nlink del dev eth0', 'bräcke', 'verylongbridgename', 'a/b'),
  fc.integer({ min: -5, max: 5 }).map((n) => ({ n })),
  fc.array(fc.nat(), { maxLength: 2 }),
);

/** CIDRs that must be refused as IPv4 pools. */
export const badCidr4: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(
    '224.0.0.0/24', '239.1.2.0/24', // multicast
    '::ffff:198.18.0.0/120', '::ffff:c612:0/120', // IPv4-mapped
    '198.18.0.0', '198.18.0.0/33', '198.18.0.0/-1', '198.18.0.0/24/1', '198.18.0.256/24', '198.018.0.0/24', '0x10.0.0.0/8',
    '198.18.0.0/24\n-A INPUT -j ACCEPT', '198.18.0.0/24 dev lo', '198.18.0.0/ 24', ' 198.18.0.0/24', '198.18.0.0/24;id',
    'fd00::/64', '0.0.0.0/0', '198.18.0.0/31', '198.18.0.0/32', '', '/24', 'localhost/24',
  ),
  nastyString(fc.constant('198.18.40.0/24')),
  fc.integer(),
  fc.constant(null),
);

/** Host ports and container ports out of range, and reversed ranges. */
export const badPortBinding: fc.Arbitrary<Record<string, unknown>> = fc.oneof(
  fc.record({ Proto: fc.constant(6), Port: fc.oneof(fc.integer({ min: 65536, max: 1e9 }), fc.integer({ max: 0 }), fc.constant(1.5), fc.constant('80')), HostPort: fc.constant(8080) }),
  fc.record({ Proto: fc.constant(6), Port: fc.constant(80), HostPort: fc.oneof(fc.integer({ min: 65536, max: 1e9 }), fc.integer({ max: -1 }), fc.constant(80.5), fc.constant('8080')) }),
  fc.integer({ min: 2, max: 65535 }).chain((hi) => fc.record({ Proto: fc.constant(17), Port: fc.constant(53), HostPort: fc.constant(hi), HostPortEnd: fc.integer({ min: 1, max: hi - 1 }) })),
  fc.record({ Proto: fc.oneof(fc.integer({ min: 200, max: 300 }), fc.constantFrom('icmp', 'tcp;', '', 'TCP ', null)), Port: fc.constant(80), HostPort: fc.constant(8080) }),
  fc.record({ Proto: fc.constant(6), Port: fc.constant(80), HostPort: fc.constant(8080), HostIP: fc.oneof(nastyString(fc.constant('198.18.0.1')), fc.constantFrom('::ffff:198.18.0.1', '198.18.0.1/32', '1.2.3', 'localhost', '198.18.0.1 -j ACCEPT')) }),
);
