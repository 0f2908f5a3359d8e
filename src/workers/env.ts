// What a worker thread is told once, when piscina starts it (workerData), and what it builds from
// that: its tool environment and its firewall backend. Nothing of this travels with a batch.
import { createFirewall, type FirewallKind } from '../firewall/index.js';
import type { FirewallBackend } from '../firewall/types.js';
import { toolEnv, type Switches, type SysctlWriter, type ToolEnv, type ToolRunner } from '../tools/env.js';
import type { ToolPaths } from '../tools/paths.js';
import { runTool, setDirectSpawn } from '../tools/spawn.js';
import { writeSysctl } from '../tools/sysctl.js';

/** Plain data: structured-cloned into each worker thread. */
export interface WorkerConfig {
  readonly tools: ToolPaths;
  readonly switches: Switches;
  readonly firewall: FirewallKind;
  /** start tools directly instead of through a launcher process (a measurement switch) */
  readonly directSpawn: boolean;
  /** where sysctls are written (default /proc/sys; `serve --sysctl-dir`) */
  readonly sysctlDir?: string;
}

export interface WorkerEnv {
  readonly tool: ToolEnv;
  readonly firewall: FirewallBackend;
}

export function workerEnv(cfg: WorkerConfig, fakes?: { run: ToolRunner; sysctl: SysctlWriter }): WorkerEnv {
  setDirectSpawn(cfg.directSpawn);
  const tool = fakes === undefined
    ? toolEnv(cfg.tools, cfg.switches, runTool, (s) => writeSysctl(s, cfg.sysctlDir))
    : toolEnv(cfg.tools, cfg.switches, fakes.run, fakes.sysctl);
  return { tool, firewall: createFirewall(cfg.firewall, tool) };
}
