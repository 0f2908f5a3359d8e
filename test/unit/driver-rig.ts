// Test rig: a Driver over the fake kernel and a real SqliteStateStore in a temp dir.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { pino } from 'pino';
import { parseEndpointId, parseNetworkId } from '../../src/domain/names.js';
import { OPT } from '../../src/domain/network-spec.js';
import { Driver } from '../../src/scheduler/driver.js';
import { SqliteStateStore } from '../../src/state/sqlite-store.js';
import type { BookChanges } from '../../src/state/store.js';
import { DEFAULT_TOOLS } from '../../src/workers/spawn.js';
import { FakeKernel } from './fake-kernel.js';

export const silent = pino({ level: 'silent' });

export interface Rig {
  dir: string;
  store: SqliteStateStore;
  kernel: FakeKernel;
  driver: Driver;
  commits: BookChanges[];
  /** idempotent; also run by the test's after hook */
  close(): Promise<void>;
}

/** Driver + fake kernel + SQLite books in a fresh temp dir, all closed by the test's after hook. */
export function rig(t: TestContext, opts: { dir?: string; kernel?: FakeKernel; batchMax?: number; writeBehindDeletes?: boolean; staleEndpointGraceMs?: number; holderVanishWaitMs?: number } = {}): Rig {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'bbt-unit-'));
  const store = new SqliteStateStore(dir);
  const commits: BookChanges[] = [];
  const commit = store.commit.bind(store);
  store.commit = (c) => {
    commits.push(c);
    commit(c);
  };
  const kernel = opts.kernel ?? new FakeKernel();
  const driver = new Driver(
    store,
    kernel,
    {
      batchMax: opts.batchMax ?? 64,
      windowMs: 2,
      maxInFlight: 2,
      writeBehindDeletes: opts.writeBehindDeletes ?? false,
      ...(opts.staleEndpointGraceMs === undefined ? {} : { staleEndpointGraceMs: opts.staleEndpointGraceMs }),
      ...(opts.holderVanishWaitMs === undefined ? {} : { holderVanishWaitMs: opts.holderVanishWaitMs }),
      tools: DEFAULT_TOOLS,
    },
    silent,
  );
  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    await driver.close();
    store.close();
    if (opts.dir === undefined) rmSync(dir, { recursive: true, force: true });
  };
  t.after(close);
  return { dir, store, kernel, driver, commits, close };
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

