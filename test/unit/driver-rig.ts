// Test rig: the Docker protocol over a real engine, the fake kernel (at the tool boundary) and a
// real SqliteStateStore in a temp dir. `driver` answers the protocol calls and, for inspection,
// carries the engine's books and lifecycle calls.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { pino } from 'pino';
import { OPT } from '../../src/api/network-options.js';
import { DockerProtocol } from '../../src/api/protocol.js';
import { parseEndpointId, parseNetworkId } from '../../src/domain/names.js';
import { DEFAULT_ENGINE_OPTIONS } from '../../src/engine/core.js';
import { Engine } from '../../src/engine/engine.js';
import { DEFAULT_TUNING } from '../../src/scheduler/pipelines.js';
import { SqliteStateStore } from '../../src/state/sqlite-store.js';
import type { BookChanges } from '../../src/state/store.js';
import { FakeKernel } from './fake-kernel.js';

export const silent = pino({ level: 'silent' });

/** The protocol, with the engine's books and lifecycle for tests to look at. */
export type TestDriver = DockerProtocol & Pick<Engine, 'books' | 'close' | 'drain' | 'settleDeferred' | 'settleVanished' | 'unsavedBookChanges' | 'flushUnsavedBooks'>;

export interface Rig {
  dir: string;
  store: SqliteStateStore;
  kernel: FakeKernel;
  engine: Engine;
  driver: TestDriver;
  commits: BookChanges[];
  /** idempotent; also run by the test's after hook */
  close(): Promise<void>;
}

export function testDriver(engine: Engine): TestDriver {
  const p = new DockerProtocol(engine);
  const d = Object.assign(p, {
    books: engine.books,
    close: () => engine.close(),
    drain: () => engine.drain(),
    settleDeferred: () => engine.settleDeferred(),
    settleVanished: () => engine.settleVanished(),
    flushUnsavedBooks: () => engine.flushUnsavedBooks(),
  });
  return Object.defineProperty(d, 'unsavedBookChanges', { get: () => engine.unsavedBookChanges }) as TestDriver;
}

export interface RigOptions {
  dir?: string;
  kernel?: FakeKernel;
  batchMax?: number;
  writeBehindDeletes?: boolean;
  staleEndpointGraceMs?: number;
  holderVanishWaitMs?: number;
}

/** Engine + fake kernel + SQLite books in a fresh temp dir, all closed by the test's after hook. */
export function rig(t: TestContext, opts: RigOptions = {}): Rig {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'bbt-unit-'));
  const store = new SqliteStateStore(dir);
  const commits: BookChanges[] = [];
  const commit = store.commit.bind(store);
  store.commit = (c) => {
    commits.push(c);
    commit(c);
  };
  const kernel = opts.kernel ?? new FakeKernel();
  const engine = new Engine(
    { store, exec: kernel, tools: kernel.tools, firewall: kernel.env.firewall, log: silent },
    {
      ...DEFAULT_ENGINE_OPTIONS,
      ...DEFAULT_TUNING,
      batchMax: opts.batchMax ?? 64,
      writeBehindDeletes: opts.writeBehindDeletes ?? false,
      ...(opts.staleEndpointGraceMs === undefined ? {} : { staleEndpointGraceMs: opts.staleEndpointGraceMs }),
      ...(opts.holderVanishWaitMs === undefined ? {} : { holderVanishWaitMs: opts.holderVanishWaitMs }),
    },
  );
  const driver = testDriver(engine);
  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    await engine.close();
    store.close();
    if (opts.dir === undefined) rmSync(dir, { recursive: true, force: true });
  };
  t.after(close);
  return { dir, store, kernel, engine, driver, commits, close };
}

export const nid = (s: string) => parseNetworkId(s);
export const eid = (s: string) => parseEndpointId(s);

export function netReq(id: string, subnet = '198.18.20.0/24', generic: Record<string, unknown> = {}, top: Record<string, unknown> = {}) {
  const gw = subnet.replace(/0\/(\d+)$/, '1/$1');
  return { NetworkID: nid(id), Options: { [OPT.generic]: generic, ...top }, IPv4Data: [{ Pool: subnet, Gateway: gw }], IPv6Data: [] as unknown[] };
}

export function epReq(net: string, ep: string, address: string, extra: Record<string, unknown> = {}) {
  return { NetworkID: nid(net), EndpointID: eid(ep), Interface: { Address: address, ...extra }, Options: {} };
}
