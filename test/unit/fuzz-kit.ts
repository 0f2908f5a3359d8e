// Support for the hostile-input tests: the app over a Driver whose executor records every script
// it would run (and checks each against a strict grammar), SQLite books in a temp dir, and
// generators of hostile values.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { buildApp } from '../../src/api/app.js';
import type { BatchRequest, BatchResponse } from '../../src/batching/work.js';
import { DEFAULT_ENGINE_OPTIONS } from '../../src/engine/core.js';
import { Engine } from '../../src/engine/engine.js';
import { renderRestorePayload } from '../../src/firewall/iptables/lines.js';
import type { FirewallChange } from '../../src/firewall/types.js';
import type { IpOp } from '../../src/ip/ops.js';
import type { IpWork } from '../../src/ip/plan.js';
import { DEFAULT_TUNING } from '../../src/scheduler/pipelines.js';
import { SqliteStateStore } from '../../src/state/sqlite-store.js';
import type { ToolResult } from '../../src/tools/spawn.js';
import { testDriver, type TestDriver } from './driver-rig.js';
import { FakeKernel } from './fake-kernel.js';

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

/**
 * The fake kernel (at the tool boundary), recording every ip script and iptables-restore payload
 * the real worker code renders and checking each against the grammar.
 */
export class RecordingExecutor extends FakeKernel {
  readonly ipScripts: string[] = [];
  readonly fwChanges: string[] = [];
  /** grammar violations (a throw here would only fail the batch, so they are collected) */
  readonly violations: string[] = [];

  private check(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.violations.push(err instanceof Error ? err.message : String(err));
    }
  }

  override async runBatch(req: BatchRequest): Promise<BatchResponse> {
    const works: IpWork[] = req.ops.flatMap((o) => (o.ip && o.ip.length > 0 ? [{ opId: o.opId, ops: o.ip }] : []));
    const before = this.ipScripts.length;
    const res = await super.runBatch(req);
    // The batch's own script (verification or one-by-one fallbacks would come after it).
    const script = this.ipScripts[before];
    if (works.length > 0 && script !== undefined) this.check(() => checkIpScript(script, expectedIpLines(works)));
    return res;
  }

  override async run(file: string, args: readonly string[], input?: string): Promise<ToolResult> {
    if (file === 'ip' && args.join(' ') === '-force -batch -' && input !== undefined) {
      this.ipScripts.push(input);
      this.check(() => checkIpScript(input, input.split('\n').length - 1));
    }
    if (/restore$/.test(file) && input !== undefined) {
      this.fwChanges.push(input);
      const lines = input.split('\n').filter((l) => l !== '' && !l.startsWith('*') && l !== 'COMMIT');
      const tables = input.split('\n').filter((l) => l.startsWith('*')).length;
      this.check(() => checkRestorePayload(input, lines.length, tables));
    }
    return super.run(file, args, input);
  }
}

// ------------------------------------------------------------------------------ the app

export interface FuzzRig {
  readonly app: FastifyInstance;
  readonly driver: TestDriver;
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
  const engine = new Engine({ store, exec, tools: exec.tools, firewall: exec.env.firewall, log }, { ...DEFAULT_ENGINE_OPTIONS, ...DEFAULT_TUNING, batchMax: 64 });
  const driver = testDriver(engine);
  const app = await buildApp({ protocol: driver, logger: log, maxQueue: 1000, maxEventLoopDelayMs: 60_000, maxHeapUsedBytes: 8 * 1024 ** 3, bodyLimit: BODY_LIMIT });
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

// The generators live in test/helpers/hostile.ts (the scale fuzzer in scripts/fuzz uses them too).
export { NASTY_CHARS, nastyString, badId, badIfName, badCidr4, badPortBinding } from '../helpers/hostile.js';
