// What a thread needs to touch the kernel: the tools' paths, the measurement switches, the
// function that runs a tool to completion, and the one that writes a sysctl. Built once per
// thread (the main thread at start, each worker thread from piscina's workerData) and passed
// down as one object. Unit tests pass fakes of the last two (ip, iptables-restore, procfs), so
// everything above the tool boundary runs for real in them.
import type { SysctlWrite } from '../domain/network-setup.js';
import { DEFAULT_TOOLS, type ToolPaths } from './paths.js';
import { runTool, type ToolResult } from './spawn.js';
import { writeSysctl } from './sysctl.js';

/** Measurement switches (src/config/ documents them; all on by default). */
export interface Switches {
  /** long-lived `ip -batch` sessions for veth-only batches */
  readonly ipSessions: boolean;
  /** long-lived `iptables-restore` sessions (nf_tables backend) */
  readonly restoreSessions: boolean;
  /** answer a deletion-only batch once the veths are unlisted, before ip returns */
  readonly earlyDelete: boolean;
}

export const DEFAULT_SWITCHES: Switches = { ipSessions: true, restoreSessions: true, earlyDelete: true };

export type ToolRunner = (file: string, args: readonly string[], input?: string) => Promise<ToolResult>;

/** Writes a sysctl of the thread's network namespace; an error text, or null on success. */
export type SysctlWriter = (s: SysctlWrite) => Promise<string | null>;

export interface ToolEnv {
  readonly tools: ToolPaths;
  readonly switches: Switches;
  readonly run: ToolRunner;
  readonly sysctl: SysctlWriter;
}

export function toolEnv(tools: ToolPaths = DEFAULT_TOOLS, switches: Switches = DEFAULT_SWITCHES, run: ToolRunner = runTool, sysctl: SysctlWriter = writeSysctl): ToolEnv {
  return { tools, switches, run, sysctl };
}
