// The engine over the real worker pool (threads running ip and iptables-restore) in the runner's
// private namespace, driven through the Docker protocol as the unit rig does.
import type { Logger } from 'pino';
import { DEFAULT_ENGINE_OPTIONS } from '../../src/engine/core.js';
import { Engine } from '../../src/engine/engine.js';
import { createFirewall } from '../../src/firewall/index.js';
import { DEFAULT_TUNING, type PipelineTuning } from '../../src/scheduler/pipelines.js';
import type { StateStore } from '../../src/state/store.js';
import { DEFAULT_SWITCHES, toolEnv } from '../../src/tools/env.js';
import { DEFAULT_TOOLS } from '../../src/tools/paths.js';
import type { WorkerConfig } from '../../src/workers/env.js';
import type { PiscinaExecutor } from '../../src/workers/pool.js';
import { testDriver, type TestDriver } from '../unit/driver-rig.js';

export const WORKER_CONFIG: WorkerConfig = { tools: DEFAULT_TOOLS, switches: DEFAULT_SWITCHES, firewall: 'iptables', directSpawn: false };

export function kernelDriver(store: StateStore, exec: PiscinaExecutor, log: Logger, tuning: Partial<PipelineTuning> = {}): { driver: TestDriver; engine: Engine } {
  const tools = toolEnv(DEFAULT_TOOLS, DEFAULT_SWITCHES, (f, a, i) => exec.exec(f, a, i));
  const engine = new Engine({ store, exec, tools, firewall: createFirewall('iptables', tools), log }, { ...DEFAULT_ENGINE_OPTIONS, ...DEFAULT_TUNING, ...tuning });
  return { driver: testDriver(engine), engine };
}
