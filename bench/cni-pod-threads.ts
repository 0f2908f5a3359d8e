// The pod lifecycles of bench/cni-pods.ts, optionally run from several threads (--threads). Node
// starts a child process from its event loop and waits there until the child has exec'd; on a
// loaded machine that wait is a scheduling round trip, so one thread starting every process can
// be the limit of the harness itself (measured at load ~10: one harness, 32 pods at a time, 49
// do-nothing pods/s; two harnesses of 16 at once, 81/s together). A runtime starts plugins from
// many threads (Go's os/exec). But each thread costs CPU of its own (the harness's CPU per pod
// doubled with 4), and on a quiet machine 4 threads were slower (do-nothing plugin 88 vs 110/s):
// the default stays 1, the harness the baselines were measured with.
//
// A lifecycle: `ip netns add`, ADD with one port mapping (containerd's keys), DEL, `ip netns del`.
import { performance } from 'node:perf_hooks';
import { isMainThread, parentPort, Worker } from 'node:worker_threads';
import { readdirSync } from 'node:fs';
import { CniExec, parseConflist, type NetConfList, type RuntimeConf } from '../test/helpers/cni-exec.js';
import { run, runSync } from '../test/helpers/proc.js';

/** What one thread runs: pods first, first + stride, … (count of them), `concurrency` at a time. */
export interface PodJob {
  /** the conflist; null: namespace add/del only */
  readonly conflist: string | null;
  /** plugin dirs (CNI_PATH) */
  readonly path: readonly string[];
  readonly cacheDir: string;
  /** pod namespaces are bbbench-<tag>-<n> */
  readonly tag: string;
  readonly first: number;
  readonly stride: number;
  readonly count: number;
  readonly concurrency: number;
  readonly portBase: number;
}

export interface PodJobResult {
  /** sums over the thread's pods, ms */
  readonly addMs: number;
  readonly delMs: number;
  /** the thread's event loop utilization during the job */
  readonly busy: number;
  readonly error?: string;
}

async function netnsAdd(name: string): Promise<void> {
  const r = await run(['ip', 'netns', 'add', name]);
  if (r.code !== 0) throw new Error(`ip netns add ${name}: ${r.stderr.trim()}`);
}

async function netnsDel(name: string): Promise<void> {
  const r = await run(['ip', 'netns', 'del', name]);
  if (r.code !== 0) throw new Error(`ip netns del ${name}: ${r.stderr.trim()}`);
}

/** `n` tasks, `concurrency` at a time; the first error stops new starts and is rethrown. */
export async function pool(n: number, concurrency: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failed: unknown;
  const worker = async () => {
    while (failed === undefined && next < n) {
      const i = next++;
      try {
        await task(i);
      } catch (e) {
        failed ??= e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker));
  if (failed !== undefined) throw failed;
}

async function runJob(job: PodJob): Promise<PodJobResult> {
  const cni = new CniExec({ path: job.path, cacheDir: job.cacheDir });
  const list: NetConfList | undefined = job.conflist === null ? undefined : parseConflist(job.conflist);
  let addMs = 0;
  let delMs = 0;
  const elu0 = performance.eventLoopUtilization();
  try {
    await pool(job.count, job.concurrency, async (k) => {
      const i = job.first + k * job.stride;
      const name = `bbbench-${job.tag}-${i}`;
      await netnsAdd(name);
      try {
        if (list !== undefined) {
          const id = `${job.tag}${i.toString().padStart(6, '0')}`;
          const rt: RuntimeConf = {
            containerId: id,
            netns: `/run/netns/${name}`,
            ifName: 'eth0',
            args: [['IgnoreUnknown', '1'], ['K8S_POD_NAMESPACE', 'bench'], ['K8S_POD_NAME', `pod${i}`], ['K8S_POD_INFRA_CONTAINER_ID', id]],
            // containerd's keys (Podman's are lowercase; Go decodes either)
            capabilityArgs: { portMappings: [{ HostPort: job.portBase + (i % 10_000), ContainerPort: 80, Protocol: 'tcp', HostIP: '' }] },
          };
          const a = performance.now();
          await cni.addList(list, rt);
          const b = performance.now();
          await cni.delList(list, rt);
          addMs += b - a;
          delMs += performance.now() - b;
        }
      } finally {
        await netnsDel(name);
      }
    });
  } catch (e) {
    return { addMs, delMs, busy: 0, error: e instanceof Error ? e.message : String(e) };
  }
  return { addMs, delMs, busy: performance.eventLoopUtilization(elu0).utilization };
}

if (!isMainThread) {
  parentPort?.on('message', (job: PodJob) => {
    void runJob(job).then((r) => parentPort?.postMessage(r));
  });
}

/** Removes the pod namespaces of these tags that a failed run left behind. */
export function removeLeftNamespaces(tags: ReadonlySet<string>): void {
  let names: string[] = [];
  try {
    names = readdirSync('/run/netns');
  } catch {
    return;
  }
  for (const n of names) if ([...tags].some((t) => n.startsWith(`bbbench-${t}-`))) runSync(['ip', 'netns', 'del', n]);
}

/** `threads` worker threads that run pod jobs; started once, reused for every variant. */
export class PodThreads {
  private readonly workers: Worker[];

  constructor(readonly threads: number) {
    this.workers = Array.from({ length: threads }, () => new Worker(new URL(import.meta.url)));
  }

  /** `total` pods, `concurrency` at a time in all, spread over the threads. */
  async run(base: Omit<PodJob, 'first' | 'stride' | 'count' | 'concurrency'>, total: number, concurrency: number): Promise<{ addMs: number; delMs: number; busy: number }> {
    const n = Math.min(this.threads, total, concurrency);
    const jobs = Array.from({ length: n }, (_, t): PodJob => ({
      ...base,
      first: t,
      stride: n,
      count: Math.ceil((total - t) / n),
      concurrency: Math.floor(concurrency / n) + (t < concurrency % n ? 1 : 0),
    }));
    const results = await Promise.all(jobs.map((job, t) => this.one(this.workers[t] as Worker, job)));
    const failed = results.find((r) => r.error !== undefined);
    if (failed !== undefined) throw new Error(failed.error);
    return {
      addMs: results.reduce((s, r) => s + r.addMs, 0),
      delMs: results.reduce((s, r) => s + r.delMs, 0),
      busy: results.reduce((s, r) => s + r.busy, 0) / results.length,
    };
  }

  private one(w: Worker, job: PodJob): Promise<PodJobResult> {
    return new Promise((resolve, reject) => {
      const onError = (e: Error) => reject(e);
      w.once('error', onError);
      w.once('message', (r: PodJobResult) => {
        w.off('error', onError);
        resolve(r);
      });
      w.postMessage(job);
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
