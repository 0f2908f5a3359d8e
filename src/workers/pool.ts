// The main thread's handle on the worker pool. The rest of the code sees only KernelExecutor, so
// unit tests can hand the engine one that runs the real batch orchestration over fake tools.
import { Piscina } from 'piscina';
import type { BatchRequest, BatchResponse } from '../batching/work.js';
import { linkPresent } from '../ip/probe.js';
import type { ToolResult } from '../tools/spawn.js';
import type { WorkerTask } from './batch-worker.js';
import type { WorkerConfig } from './env.js';

export interface KernelExecutor {
  runBatch(req: BatchRequest): Promise<BatchResponse>;
  exec(file: string, args: readonly string[], input?: string): Promise<ToolResult>;
  /** Whether an interface of this name exists in the plugin's network namespace (synchronous). */
  linkPresent(name: string): boolean;
  close(): Promise<void>;
}

export class PiscinaExecutor implements KernelExecutor {
  private readonly pool: Piscina<WorkerTask, BatchResponse | ToolResult>;

  constructor(config: WorkerConfig, threads: number) {
    this.pool = new Piscina({
      filename: new URL('./batch-worker.js', import.meta.url).href,
      // Tool paths and switches reach each thread once, when it starts.
      workerData: config,
      minThreads: threads,
      maxThreads: threads,
      idleTimeout: 60_000,
      // A batch task mostly waits on its child processes, so a thread can carry a veth batch and
      // a firewall batch (separate pipelines, see scheduler/pipelines.ts) at once instead of queueing one.
      concurrentTasksPerWorker: 4,
      // A thread that dies (crash injection, OOM) is replaced by piscina; the task that was on
      // it rejects, so its batch's requests get errors instead of hanging.
    });
  }

  async runBatch(req: BatchRequest): Promise<BatchResponse> {
    return (await this.pool.run({ type: 'batch', req })) as BatchResponse;
  }

  async exec(file: string, args: readonly string[], input?: string): Promise<ToolResult> {
    const task: WorkerTask = input === undefined ? { type: 'exec', file, args } : { type: 'exec', file, args, input };
    return (await this.pool.run(task)) as ToolResult;
  }

  linkPresent(name: string): boolean {
    return linkPresent(name);
  }

  /** Fault injection: make one worker thread die mid-task. */
  async crashOne(): Promise<void> {
    await this.pool.run({ type: 'crash' });
  }

  async close(): Promise<void> {
    await this.pool.destroy();
  }
}
