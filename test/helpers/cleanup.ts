// Clean-up bookkeeping for the kernel/e2e helpers.
//
// Every helper handle (namespace, dockerd, plugin, temp dir) is a Resource: it has an idempotent
// async close() and a synchronous, best-effort emergencyCloseSync(). Resources register themselves
// in a process-wide registry as soon as they exist, so that even if a test forgets (or cannot) close
// them, the process 'exit' handler and SIGINT/SIGTERM/SIGHUP handlers tear them down.
//
// A Scope collects resources for one test and closes them in a safe order: by `order` (dockerd
// before plugins before namespaces before files), and last-in-first-out within the same order.
// node:test runs t.after hooks in registration (FIFO) order, which is why a Scope registers a single
// t.after hook and does its own ordering.
import { rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { mountsUnder, unmountUnder, unmountUnderSync } from './proc.js';

export interface Resource {
  readonly label: string;
  /** Lower closes first. See ORDER. */
  readonly order: number;
  /** Idempotent; throws if something could not be cleaned up (the failure then shows in the test). */
  close(): Promise<void>;
  /** Synchronous best effort for process 'exit'. Never throws. */
  emergencyCloseSync(): void;
}

export const ORDER = {
  /** test-defined clean-ups that still need dockerd and the plugin (docker rm, network rm) */
  early: 0,
  dockerd: 10,
  plugin: 20,
  peer: 25,
  netns: 30,
  files: 40,
} as const;

let seq = 0;
const seqOf = new WeakMap<Resource, number>();
const live = new Set<Resource>();
let handlersInstalled = false;

function sortForClose(rs: Iterable<Resource>): Resource[] {
  return [...rs].sort((a, b) => a.order - b.order || (seqOf.get(b) ?? 0) - (seqOf.get(a) ?? 0));
}

/** Register a live resource in the process-wide registry (helpers call this themselves). */
export function track(r: Resource): void {
  seqOf.set(r, ++seq);
  live.add(r);
  installHandlers();
}

/** Remove a resource from the registry once it is fully cleaned up. */
export function untrack(r: Resource): void {
  live.delete(r);
}

/** Labels of resources not yet closed (for leak assertions). */
export function liveResources(): string[] {
  return sortForClose(live).map((r) => r.label);
}

/** Close resources in safe order, collecting errors instead of stopping at the first one. */
export async function closeAll(rs: Iterable<Resource>): Promise<Error[]> {
  const errors: Error[] = [];
  for (const r of sortForClose(rs)) {
    try {
      await r.close();
    } catch (e) {
      errors.push(e instanceof Error ? e : new Error(String(e)));
    }
  }
  return errors;
}

function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', () => {
    for (const r of sortForClose(live)) {
      try {
        r.emergencyCloseSync();
      } catch {
        /* best effort */
      }
    }
  });
  const onSignal = (sig: NodeJS.Signals, num: number) => {
    process.stderr.write(`[test helpers] ${sig}: cleaning up ${live.size} resource(s)\n`);
    const hard = setTimeout(() => process.exit(128 + num), 90_000);
    hard.unref();
    void closeAll(live).finally(() => process.exit(128 + num));
  };
  process.once('SIGINT', () => onSignal('SIGINT', 2));
  process.once('SIGTERM', () => onSignal('SIGTERM', 15));
  process.once('SIGHUP', () => onSignal('SIGHUP', 1));
}

/** A resource made of two plain functions (for test-defined clean-up steps). */
export function deferred(label: string, order: number, close: () => Promise<void>, emergency: () => void = () => {}): Resource {
  let done: Promise<void> | undefined;
  const r: Resource = {
    label,
    order,
    close: () => (done ??= close().finally(() => untrack(r))),
    emergencyCloseSync: emergency,
  };
  return r;
}

export class Scope {
  private readonly items = new Set<Resource>();
  private closing: Promise<void> | undefined;

  /** Take charge of `r` (also tracks it process-wide). Returns `r` for chaining. */
  add<T extends Resource>(r: T): T {
    if (!live.has(r)) track(r);
    this.items.add(r);
    return r;
  }

  /** Run `fn` at close time (before dockerd/plugins/namespaces unless `order` says otherwise). */
  defer(label: string, fn: () => Promise<void>, order: number = ORDER.early): void {
    this.add(deferred(label, order, fn));
  }

  /** Idempotent. Throws an AggregateError naming every resource that failed to clean up. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const errors = await closeAll(this.items);
      this.items.clear();
      if (errors.length > 0) {
        throw new AggregateError(errors, `clean-up failed:\n${errors.map((e) => `- ${e.message}`).join('\n')}`);
      }
    })();
    return this.closing;
  }
}

/** A Scope closed by the test's after hook (runs even when the test fails or times out). */
export function testScope(t: { after(fn: () => unknown): void }): Scope {
  const s = new Scope();
  t.after(() => s.close());
  return s;
}

// ---------------------------------------------------------------------------------------------

export interface TempDir extends Resource {
  readonly path: string;
}

/** mkdtemp under /tmp ("/tmp/bbt-<random>"); close() unmounts anything left below it, then rm -rf. */
export async function makeTempDir(prefix = 'bbt-'): Promise<TempDir> {
  const path = await mkdtemp(join('/tmp', prefix));
  let done: Promise<void> | undefined;
  const r: TempDir = {
    path,
    label: `temp dir ${path}`,
    order: ORDER.files,
    close: () => (done ??= (async () => {
      const left = await unmountUnder(path);
      await rm(path, { recursive: true, force: true });
      untrack(r);
      if (left.length > 0) throw new Error(`${path}: could not unmount ${left.join(', ')}`);
    })()),
    emergencyCloseSync: () => {
      unmountUnderSync(path);
      if (mountsUnder(path).length === 0) rmSync(path, { recursive: true, force: true });
    },
  };
  track(r);
  return r;
}
