// The main thread's handle on the worker pool. The rest of the code sees only KernelExecutor, so
// unit tests can hand the scheduler a fake that records batches.
import { existsSync } from 'node:fs';
import { Piscina } from 'piscina';
import type { BatchRequest, BatchResponse } from '../batching/ops.js';
import type { ToolPaths, ToolResult } from './spawn.js';
import type { WorkerTask } from './batch-worker.js';

export interface KernelExecutor {
  runBatch(req: BatchRequest): Promise<BatchResponse>;
  exec(file: string, args: readonly string[], input?: string): Promise<ToolResult>;
  /** Whether an interface of this name exists in the plugin's network namespace (synchronous). */
  linkPresent(name: string): boolean;
  close(): Promise<void>;
}

/** Names that can be looked up as a path component (the books' names always are). */
const LOOKUP_NAME = /^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,14}$/;

/**
 * /proc/sys/net/ipv4/conf/<name> exists exactly while an interface of that name is registered in
 * the reading process's network namespace (for every MTU of at least 68, which networks are
 * validated to). /sys/class/net would show the namespace that mounted sysfs instead. A stat, no
 * process: cheap enough to check every endpoint of the books.
 */
export function linkPresentInProcNet(name: string): boolean {
  if (!LOOKUP_NAME.test(name)) return false;
  return existsSync(`/proc/sys/net/ipv4/conf/${name}`);
}

export class PiscinaExecutor implements KernelExecutor {
  private readonly pool: Piscina<WorkerTask, BatchResponse | ToolResult>;

  constructor(
    private readonly tools: ToolPaths,
    threads: number,
  ) {
    this.pool = new Piscina({
      filename: new URL('./batch-worker.js', import.meta.url).href,
      minThreads: threads,
      maxThreads: threads,
      idleTimeout: 60_000,
      // A batch task mostly waits on its child processes, so a thread can carry a veth batch and
      // a firewall batch (two pipelines, see driver.ts) at once instead of queueing one.
      concurrentTasksPerWorker: 4,
      // A thread that dies (crash injection, OOM) is replaced by piscina; the task that was on
      // it rejects, so its batch's requests get errors instead of hanging.
    });
  }

  async runBatch(req: BatchRequest): Promise<BatchResponse> {
    return (await this.pool.run({ type: 'batch', req, tools: this.tools })) as BatchResponse;
  }

  async exec(file: string, args: readonly string[], input?: string): Promise<ToolResult> {
    const task: WorkerTask = input === undefined ? { type: 'exec', file, args } : { type: 'exec', file, args, input };
    return (await this.pool.run(task)) as ToolResult;
  }

  linkPresent(name: string): boolean {
    return linkPresentInProcNet(name);
  }

  /** Fault injection: make one worker thread die mid-task. */
  async crashOne(): Promise<void> {
    await this.pool.run({ type: 'crash' });
  }

  async close(): Promise<void> {
    await this.pool.destroy();
  }
}
