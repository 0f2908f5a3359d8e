// FifoGate, Lanes and the Batcher with a fake runner.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setImmediate as tick } from 'node:timers/promises';
import { Batcher, type BatchEntry, type BatchHooks, type BatchRunner } from '../../src/batching/batcher.js';
import type { BatchResponse, OpResult, OpWork } from '../../src/batching/work.js';
import type { IntentItem } from '../../src/state/records.js';
import type { BookChanges } from '../../src/state/store.js';
import { FifoGate } from '../../src/scheduler/gate.js';
import { Lanes } from '../../src/scheduler/lanes.js';

interface Deferred<T> {
  promise: Promise<T>;
  resolve: (v: T) => void;
  reject: (e: unknown) => void;
}

function deferred<T = void>(): Deferred<T> {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

async function settle(n = 5): Promise<void> {
  for (let i = 0; i < n; i++) await tick();
}

async function acquireShared(gate: FifoGate): Promise<() => void> {
  const got = gate.acquireShared();
  return typeof got === 'function' ? got : got;
}

describe('FifoGate', () => {
  test('shared holders run together; the fast path needs no promise', async () => {
    const gate = new FifoGate();
    const a = gate.acquireShared();
    const b = gate.acquireShared();
    assert.equal(typeof a, 'function');
    assert.equal(typeof b, 'function');
    assert.equal(gate.sharedHolders, 2);
    (a as () => void)();
    (b as () => void)();
    assert.equal(gate.sharedHolders, 0);
  });

  test('an exclusive waits for every shared holder', async () => {
    const gate = new FifoGate();
    const r1 = await acquireShared(gate);
    const r2 = await acquireShared(gate);
    let got = false;
    const ex = gate.acquireExclusive().then((rel) => {
      got = true;
      return rel;
    });
    await settle();
    assert.equal(got, false);
    r1();
    await settle();
    assert.equal(got, false);
    r2();
    const release = await ex;
    assert.equal(got, true);
    release();
    assert.equal(gate.waiting, 0);
  });

  test('a later shared request waits behind a queued exclusive', async () => {
    const gate = new FifoGate();
    const r1 = await acquireShared(gate);
    const order: string[] = [];
    const ex = gate.acquireExclusive().then((rel) => {
      order.push('exclusive');
      return rel;
    });
    const later = gate.acquireShared();
    assert.notEqual(typeof later, 'function', 'must not take the fast path while an exclusive waits');
    const sh = Promise.resolve(later).then((rel) => {
      order.push('shared');
      return rel;
    });
    await settle();
    assert.deepEqual(order, []);
    r1();
    const exRel = await ex;
    await settle();
    assert.deepEqual(order, ['exclusive'], 'the shared waiter must wait for the exclusive holder to finish');
    exRel();
    (await sh)();
    assert.deepEqual(order, ['exclusive', 'shared']);
  });

  test('waiters are served in arrival order; consecutive shared waiters are granted together', async () => {
    const gate = new FifoGate();
    const order: string[] = [];
    const first = await gate.acquireExclusive();
    const waits: Array<Promise<() => void>> = [];
    const push = (name: string, p: Promise<() => void> | (() => void)) =>
      waits.push(Promise.resolve(p).then((rel) => {
        order.push(name);
        return rel;
      }));
    push('s1', gate.acquireShared());
    push('s2', gate.acquireShared());
    push('x1', gate.acquireExclusive());
    push('s3', gate.acquireShared());
    push('x2', gate.acquireExclusive());
    await settle();
    assert.deepEqual(order, []);
    first();
    const [s1, s2, x1, s3, x2] = waits as [Promise<() => void>, Promise<() => void>, Promise<() => void>, Promise<() => void>, Promise<() => void>];
    (await s1)();
    await settle();
    assert.deepEqual(order, ['s1', 's2']);
    assert.equal(gate.sharedHolders, 1);
    (await s2)();
    (await x1)();
    (await s3)();
    (await x2)();
    assert.deepEqual(order, ['s1', 's2', 'x1', 's3', 'x2']);
    assert.equal(gate.waiting, 0);
    assert.equal(gate.sharedHolders, 0);
  });

  test('exclusives exclude each other', async () => {
    const gate = new FifoGate();
    let inside = 0;
    let maxInside = 0;
    await Promise.all(
      Array.from({ length: 10 }, async () => {
        const rel = await gate.acquireExclusive();
        inside++;
        maxInside = Math.max(maxInside, inside);
        await settle(2);
        inside--;
        rel();
      }),
    );
    assert.equal(maxInside, 1);
  });
});

describe('Lanes', () => {
  test('operations of one endpoint run strictly one after another, in order, past failures', async () => {
    const lanes = new Lanes();
    const events: string[] = [];
    const gates = [deferred(), deferred(), deferred()];
    const runs = gates.map((d, i) =>
      lanes.run('n1', 'e1', async () => {
        events.push(`start${i}`);
        await d.promise;
        events.push(`end${i}`);
        if (i === 1) throw new Error('boom');
        return i;
      }),
    );
    await settle();
    assert.deepEqual(events, ['start0']);
    gates[2]?.resolve();
    gates[1]?.resolve();
    await settle();
    assert.deepEqual(events, ['start0'], 'a later op must not start while an earlier one runs');
    gates[0]?.resolve();
    const results = await Promise.allSettled(runs);
    assert.deepEqual(events, ['start0', 'end0', 'start1', 'end1', 'start2', 'end2']);
    assert.equal(results[0]?.status, 'fulfilled');
    assert.equal(results[1]?.status, 'rejected');
    assert.deepEqual(results[2], { status: 'fulfilled', value: 2 });
    await settle();
    assert.equal(lanes.active, 0, 'finished endpoints are forgotten');
  });

  test('different endpoints (and networks) run concurrently', async () => {
    const lanes = new Lanes();
    const started: string[] = [];
    const hold = deferred();
    const runs = [
      ['n1', 'e1'],
      ['n1', 'e2'],
      ['n2', 'e1'],
    ].map(([n, e]) =>
      lanes.run(n as string, e as string, async () => {
        started.push(`${n}/${e}`);
        await hold.promise;
      }),
    );
    await settle();
    assert.deepEqual(started, ['n1/e1', 'n1/e2', 'n2/e1']);
    assert.equal(lanes.active, 3);
    hold.resolve();
    await Promise.all(runs);
  });
});

// ------------------------------------------------------------------------------------------------

interface Call {
  batchId: number;
  ops: OpWork[];
  linkGroup: number;
  done: Deferred<BatchResponse>;
}

/** A runner that records batches and lets the test answer each one. */
class FakeRunner {
  readonly calls: Call[] = [];
  auto: ((ops: OpWork[]) => OpResult[]) | null = null;
  readonly run: BatchRunner = (req) => {
    const done = deferred<BatchResponse>();
    this.calls.push({ ...req, done });
    if (this.auto !== null) done.resolve(this.respond(req.batchId, this.auto(req.ops)));
    return done.promise;
  };

  respond(batchId: number, results: OpResult[]): BatchResponse {
    return { batchId, results, timings: { ipMs: 0, fwMs: 0, totalMs: 0, ipSpawns: 0, fwSpawns: 0 } };
  }

  answer(i: number, fail: (o: OpWork) => string | null = () => null): void {
    const c = this.calls[i];
    assert.ok(c, `no batch #${i}`);
    c.done.resolve(this.respond(c.batchId, c.ops.map((o) => {
      const m = fail(o);
      return m === null ? { opId: o.opId, ok: true } : { opId: o.opId, ok: false, message: m };
    })));
  }

  /** names of the ops of each batch (the name travels in a sysctl path) */
  names(): string[][] {
    return this.calls.map((c) => c.ops.map(nameOf));
  }
}

const nameOf = (o: OpWork): string => o.sysctls?.[0]?.path ?? '?';

interface HookLog {
  before: Array<[number, IntentItem[]]>;
  after: Array<[number, boolean, BookChanges[]]>;
}

function hooks(log: HookLog): BatchHooks {
  return {
    beforeRun: (id, intents) => void log.before.push([id, intents]),
    afterRun: (id, had, changes) => void log.after.push([id, had, changes]),
  };
}

function entry(name: string, opts: { intent?: boolean; settled?: string[] } = {}): BatchEntry {
  return {
    work: { sysctls: [{ path: name, value: '1', optional: true }] },
    intent: opts.intent === true ? { kind: 'network-delete', networkId: name, bridge: 'br' } : null,
    settle: (r) => {
      opts.settled?.push(name);
      return r.ok ? { deleteNetworks: [name] } : null;
    },
  };
}

describe('Batcher', () => {
  test('a lone request on an idle batcher is dispatched at once, in the same tick', async () => {
    const runner = new FakeRunner();
    runner.auto = (ops) => ops.map((o) => ({ opId: o.opId, ok: true }));
    const b = new Batcher(runner.run, hooks({ before: [], after: [] }), { batchMax: 64, windowMs: 10_000, maxInFlight: 2 });
    const t0 = performance.now();
    const p = b.submit(entry('a'));
    assert.equal(runner.calls.length, 1, 'runner must be called synchronously from submit');
    assert.ok(performance.now() - t0 < 50);
    const r = await p;
    assert.equal(r.ok, true);
    // well before the 10 s window could have fired
    assert.ok(performance.now() - t0 < 1000);
    await b.drained();
  });

  test('while a batch runs, the next fills up to batchMax and goes at once when full', async () => {
    const runner = new FakeRunner();
    const b = new Batcher(runner.run, hooks({ before: [], after: [] }), { batchMax: 4, windowMs: 10_000, maxInFlight: 2 });
    const ps = Array.from({ length: 9 }, (_, i) => b.submit(entry(`op${i}`)));
    // op0 went alone (idle); op1..op4 filled a batch and went at once (full); op5..op8 filled
    // another, which waits for a free slot (maxInFlight 2).
    assert.deepEqual(runner.names(), [['op0'], ['op1', 'op2', 'op3', 'op4']]);
    assert.equal(b.queued, 4);
    assert.equal(b.running, 2);
    runner.answer(0);
    await settle();
    assert.deepEqual(runner.names()[2], ['op5', 'op6', 'op7', 'op8']);
    runner.answer(1);
    runner.answer(2);
    const results = await Promise.all(ps);
    assert.ok(results.every((r) => r.ok));
    for (const c of runner.calls) assert.ok(c.ops.length <= 4);
    await b.drained();
  });

  test('a pipeline that gives way (mayStart) waits until poked, or until a full batch is queued', async () => {
    const runner = new FakeRunner();
    let mayStart = false;
    const b = new Batcher(runner.run, hooks({ before: [], after: [] }), { batchMax: 4, windowMs: 1, maxInFlight: 1, mayStart: () => mayStart });
    const ps = [b.submit(entry('d0')), b.submit(entry('d1'))];
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(runner.calls.length, 0, 'nothing starts while the other pipeline is busy');
    mayStart = true;
    b.poke();
    assert.deepEqual(runner.names(), [['d0', 'd1']], 'one batch of everything that waited');
    runner.answer(0);
    await Promise.all(ps);
    mayStart = false;
    const more = ['d2', 'd3', 'd4', 'd5'].map((n) => b.submit(entry(n)));
    assert.deepEqual(runner.names()[1], ['d2', 'd3', 'd4', 'd5'], 'a full batch goes even so: deletions cannot be starved forever');
    runner.answer(1);
    await Promise.all(more);
    await b.drained();
  });

  test('a pipeline that gives way is held back for at most maxDeferMs, counted from its oldest operation', async () => {
    const runner = new FakeRunner();
    const b = new Batcher(runner.run, hooks({ before: [], after: [] }), { batchMax: 64, windowMs: 1, maxInFlight: 1, mayStart: () => false, maxDeferMs: 60 });
    const t0 = performance.now();
    const first = b.submit(entry('d0'));
    await new Promise((r) => setTimeout(r, 30));
    const second = b.submit(entry('d1'));
    assert.equal(runner.calls.length, 0, 'still giving way after 30 ms');
    while (runner.calls.length === 0) await new Promise((r) => setTimeout(r, 2));
    const waited = performance.now() - t0;
    assert.ok(waited >= 59 && waited < 200, `started after ${waited.toFixed(0)} ms: the oldest op's 60 ms, not the newest's`);
    assert.deepEqual(runner.names(), [['d0', 'd1']], 'everything that waited goes in that batch');
    runner.answer(0);
    await Promise.all([first, second]);
    await b.drained();
  });

  test('gatherMs: an idle pipeline waits that long for company; with 0 it starts at once', async () => {
    const runner = new FakeRunner();
    let gather = 15;
    const b = new Batcher(runner.run, hooks({ before: [], after: [] }), { batchMax: 64, windowMs: 1, maxInFlight: 1, gatherMs: () => gather });
    const t0 = performance.now();
    const burst = [b.submit(entry('g0'))];
    assert.equal(runner.calls.length, 0, 'the first of a burst does not go alone');
    await new Promise((r) => setTimeout(r, 5));
    burst.push(b.submit(entry('g1')), b.submit(entry('g2')));
    while (runner.calls.length === 0) await new Promise((r) => setTimeout(r, 1));
    assert.ok(performance.now() - t0 >= 14, 'waited the window');
    assert.deepEqual(runner.names(), [['g0', 'g1', 'g2']], 'the burst went as one batch');
    runner.answer(0);
    await Promise.all(burst);
    gather = 0;
    const lone = b.submit(entry('lone'));
    assert.deepEqual(runner.names()[1], ['lone'], 'a lone request starts at once');
    runner.answer(1);
    await lone;
    await b.drained();
    // A full batch never waits for the window.
    gather = 1000;
    const full = Array.from({ length: 64 }, (_, i) => b.submit(entry(`f${i}`)));
    assert.equal(runner.calls.length, 3);
    runner.answer(2);
    await Promise.all(full);
    await b.drained();
  });

  test('the end of a gather window does not override a pipeline that gives way', async () => {
    const runner = new FakeRunner();
    let mayStart = true;
    const b = new Batcher(runner.run, hooks({ before: [], after: [] }), { batchMax: 64, windowMs: 1, maxInFlight: 1, gatherMs: () => 10, mayStart: () => mayStart });
    const p = b.submit(entry('d0'));
    mayStart = false; // the other pipeline got busy during the window
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(runner.calls.length, 0, 'still giving way after the window');
    mayStart = true;
    b.poke();
    assert.deepEqual(runner.names(), [['d0']], 'the window has passed: starts at once when poked');
    runner.answer(0);
    await p;
    await b.drained();
  });

  test('batchMax is respected with maxInFlight 1; order kept inside and across batches', async () => {
    const runner = new FakeRunner();
    const b = new Batcher(runner.run, hooks({ before: [], after: [] }), { batchMax: 3, windowMs: 5, maxInFlight: 1 });
    const names = Array.from({ length: 11 }, (_, i) => `op${String(i).padStart(2, '0')}`);
    const ps = names.map((n) => b.submit(entry(n)));
    let answered = 0;
    let done = false;
    const all = Promise.all(ps).then(() => {
      done = true;
    });
    while (!done) {
      while (answered < runner.calls.length) {
        assert.equal(b.running, 1, 'maxInFlight 1: one batch at a time');
        runner.answer(answered++);
      }
      await settle();
    }
    await all;
    const batches = runner.names();
    assert.deepEqual(batches.map((x) => x.length), [1, 3, 3, 3, 1]);
    assert.deepEqual(batches.flat(), names);
    // opIds increase in submission order, batch ids in dispatch order
    const opIds = runner.calls.flatMap((c) => c.ops.map((o) => o.opId));
    assert.deepEqual(opIds, [...opIds].sort((x, y) => x - y));
    assert.deepEqual(runner.calls.map((c) => c.batchId), [1, 2, 3, 4, 5]);
    await b.drained();
  });

  test('batchMax 1: one op per batch', async () => {
    const runner = new FakeRunner();
    runner.auto = (ops) => ops.map((o) => ({ opId: o.opId, ok: true }));
    const b = new Batcher(runner.run, hooks({ before: [], after: [] }), { batchMax: 1, windowMs: 5, maxInFlight: 2 });
    await Promise.all(Array.from({ length: 7 }, (_, i) => b.submit(entry(`op${i}`))));
    assert.equal(runner.calls.length, 7);
    assert.deepEqual(runner.names(), Array.from({ length: 7 }, (_, i) => [`op${i}`]));
  });

  test('the window closes a partial batch while another runs', async () => {
    const runner = new FakeRunner();
    const b = new Batcher(runner.run, hooks({ before: [], after: [] }), { batchMax: 100, windowMs: 20, maxInFlight: 2 });
    const ps = [b.submit(entry('a')), b.submit(entry('b')), b.submit(entry('c'))];
    assert.equal(runner.calls.length, 1);
    await new Promise((r) => setTimeout(r, 60));
    assert.deepEqual(runner.names(), [['a'], ['b', 'c']]);
    runner.answer(0);
    runner.answer(1);
    await Promise.all(ps);
  });

  test('a link group per batch, in the bb range', async () => {
    const runner = new FakeRunner();
    runner.auto = (ops) => ops.map((o) => ({ opId: o.opId, ok: true }));
    const b = new Batcher(runner.run, hooks({ before: [], after: [] }), { batchMax: 1, windowMs: 5, maxInFlight: 1 }, 4095);
    await Promise.all([b.submit(entry('a')), b.submit(entry('b'))]);
    assert.deepEqual(runner.calls.map((c) => c.linkGroup), [0x62620000 + 4095, 0x62620000]);
  });

  test('one failing op fails only its own promise', async () => {
    const runner = new FakeRunner();
    const settled: string[] = [];
    const log: HookLog = { before: [], after: [] };
    const b = new Batcher(runner.run, hooks(log), { batchMax: 10, windowMs: 10_000, maxInFlight: 1 });
    const first = b.submit(entry('first', { settled }));
    const ps = ['a', 'b', 'c'].map((n) => b.submit(entry(n, { settled })));
    runner.answer(0);
    await first;
    await settle();
    runner.answer(1, (o) => (nameOf(o) === 'b' ? 'RTNETLINK answers: File exists' : null));
    const [a, bb, c] = await Promise.all(ps);
    assert.equal(a?.ok, true);
    assert.deepEqual({ ok: bb?.ok, message: bb?.message }, { ok: false, message: 'RTNETLINK answers: File exists' });
    assert.equal(c?.ok, true);
    assert.deepEqual(settled, ['first', 'a', 'b', 'c']);
    // only the successful ops' changes reach the books
    assert.deepEqual(log.after[1]?.[2], [{ deleteNetworks: ['a'] }, { deleteNetworks: ['c'] }]);
  });

  test('a runner that throws answers every op of the batch with an error, and the batcher goes on', async () => {
    let calls = 0;
    const run: BatchRunner = async (req) => {
      calls++;
      if (calls === 1) throw new Error('worker died');
      return { batchId: req.batchId, results: req.ops.map((o) => ({ opId: o.opId, ok: true })), timings: { ipMs: 0, fwMs: 0, totalMs: 0, ipSpawns: 0, fwSpawns: 0 } };
    };
    const b = new Batcher(run, hooks({ before: [], after: [] }), { batchMax: 10, windowMs: 1, maxInFlight: 1 });
    const rs = await Promise.all([b.submit(entry('a'))]);
    assert.equal(rs[0]?.ok, false);
    assert.match(rs[0]?.message ?? '', /^batch 1 failed: worker died$/);
    assert.equal((await b.submit(entry('b'))).ok, true);
  });

  test('a runner that rejects for a multi-op batch: no promise hangs', async () => {
    const runner = new FakeRunner();
    const b = new Batcher(runner.run, hooks({ before: [], after: [] }), { batchMax: 10, windowMs: 10_000, maxInFlight: 1 });
    const first = b.submit(entry('x'));
    const ps = ['a', 'b', 'c'].map((n) => b.submit(entry(n)));
    runner.answer(0);
    await first;
    await settle();
    runner.calls[1]?.done.reject(new Error('thread exited'));
    const rs = await Promise.all(ps);
    assert.deepEqual(rs.map((r) => r.ok), [false, false, false]);
    assert.ok(rs.every((r) => r.message === 'batch 2 failed: thread exited'));
    await b.drained();
  });

  test('missing results are failures', async () => {
    const run: BatchRunner = async (req) => ({ batchId: req.batchId, results: [], timings: { ipMs: 0, fwMs: 0, totalMs: 0, ipSpawns: 0, fwSpawns: 0 } });
    const b = new Batcher(run, hooks({ before: [], after: [] }), { batchMax: 10, windowMs: 1, maxInFlight: 1 });
    assert.deepEqual(await b.submit(entry('a')), { opId: 1, ok: false, message: 'no result from worker', kind: 'worker' });
  });

  test('hooks: beforeRun gets the intents before the runner; afterRun the changes of the batch', async () => {
    const log: HookLog = { before: [], after: [] };
    const seen: string[] = [];
    const runner = new FakeRunner();
    const b = new Batcher(
      (req) => {
        seen.push(`run:${log.before.length}`);
        return runner.run(req);
      },
      hooks(log),
      { batchMax: 10, windowMs: 10_000, maxInFlight: 1 },
      40,
    );
    const first = b.submit(entry('lone'));
    assert.deepEqual(log.before, [], 'no intents, no beforeRun');
    // queued behind the running batch, so they go together as batch 41
    const ps = [b.submit(entry('x', { intent: true })), b.submit(entry('y')), b.submit(entry('z', { intent: true }))];
    runner.answer(0);
    await first;
    await settle();
    assert.equal(runner.calls.length, 2);
    assert.deepEqual(runner.names()[1], ['x', 'y', 'z']);
    runner.answer(1);
    await Promise.all(ps);
    assert.deepEqual(log.before, [
      [
        41,
        [
          { kind: 'network-delete', networkId: 'x', bridge: 'br' },
          { kind: 'network-delete', networkId: 'z', bridge: 'br' },
        ],
      ],
    ]);
    assert.deepEqual(seen, ['run:0', 'run:1'], 'intents are written before the kernel work');
    assert.deepEqual(log.after, [
      [40, false, [{ deleteNetworks: ['lone'] }]],
      [41, true, [{ deleteNetworks: ['x'] }, { deleteNetworks: ['y'] }, { deleteNetworks: ['z'] }]],
    ]);
    await b.drained();
  });

  test('afterRun that throws fails every op of the batch', async () => {
    const runner = new FakeRunner();
    runner.auto = (ops) => ops.map((o) => ({ opId: o.opId, ok: true }));
    const b = new Batcher(
      runner.run,
      {
        beforeRun: () => undefined,
        afterRun: () => {
          throw new Error('disk full');
        },
      },
      { batchMax: 10, windowMs: 1, maxInFlight: 1 },
    );
    const r = await b.submit(entry('a'));
    assert.deepEqual(r, { opId: 1, ok: false, message: 'batch 1: could not write the books: disk full', kind: 'books' });
  });

  test('a settle that throws fails only its own request, and is reported (not swallowed)', async () => {
    const runner = new FakeRunner();
    runner.auto = (ops) => ops.map((o) => ({ opId: o.opId, ok: true }));
    const reported: Array<[number, string]> = [];
    const after: BookChanges[][] = [];
    const b = new Batcher(
      runner.run,
      {
        beforeRun: () => undefined,
        afterRun: (_id, _had, changes) => void after.push(changes),
        settleFailed: (id, err) => void reported.push([id, (err as Error).message]),
      },
      { batchMax: 10, windowMs: 10_000, maxInFlight: 1 },
    );
    const lone = b.submit(entry('lone'));
    const bad: BatchEntry = { ...entry('bad'), settle: () => { throw new Error('books out of step'); } };
    const ps = [b.submit(entry('a')), b.submit(bad), b.submit(entry('c'))];
    await lone;
    const [a, broken, c] = await Promise.all(ps);
    assert.equal(a?.ok, true);
    assert.equal(c?.ok, true);
    assert.deepEqual(broken, { opId: 3, ok: false, message: 'batch 2: internal error while booking the result: books out of step', kind: 'internal' });
    assert.deepEqual(reported, [[2, 'books out of step']]);
    assert.deepEqual(after[1], [{ deleteNetworks: ['a'] }, { deleteNetworks: ['c'] }], 'the failed settle books nothing');
  });

  test('books that cannot be written: teardown still runs and succeeds, creations fail before the kernel', async () => {
    const runner = new FakeRunner();
    runner.auto = (ops) => ops.map((o) => ({ opId: o.opId, ok: true }));
    const kept: BookChanges[][] = [];
    const b = new Batcher(
      runner.run,
      {
        beforeRun: () => {
          throw new Error('SQLITE_FULL: database or disk is full');
        },
        afterRun: (_id, _had, _changes, mustKeep) => {
          kept.push(mustKeep);
          throw new Error('SQLITE_FULL: database or disk is full');
        },
      },
      { batchMax: 10, windowMs: 10_000, maxInFlight: 1 },
    );
    const lone = b.submit({ ...entry('first', { intent: true }), teardown: true });
    const ps = [b.submit(entry('create', { intent: true })), b.submit({ ...entry('delete', { intent: true }), teardown: true })];
    assert.equal((await lone).ok, true);
    const [create, del] = await Promise.all(ps);
    assert.equal(create?.ok, false);
    assert.match(create?.message ?? '', /could not write the books: SQLITE_FULL/);
    assert.equal(del?.ok, true, 'teardown is done and answered as done');
    assert.deepEqual(runner.names(), [['first'], ['delete']], 'the creation never reached the kernel');
    assert.deepEqual(kept, [[{ deleteNetworks: ['first'] }], [{ deleteNetworks: ['delete'] }]], 'teardown changes are handed over to be kept');
  });

  test('drained resolves once everything has run', async () => {
    const runner = new FakeRunner();
    const b = new Batcher(runner.run, hooks({ before: [], after: [] }), { batchMax: 2, windowMs: 1, maxInFlight: 1 });
    await b.drained();
    const ps = [b.submit(entry('a')), b.submit(entry('b'))];
    let drained = false;
    const d = b.drained().then(() => {
      drained = true;
    });
    await settle();
    assert.equal(drained, false);
    runner.answer(0);
    await settle();
    runner.answer(1);
    await Promise.all([...ps, d]);
    assert.equal(drained, true);
  });
});
