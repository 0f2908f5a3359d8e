// The environment variables batchbridge reads, all of them, here and only here: other binaries
// for unusual installs and fault injection, and switches that turn a mechanism off to measure
// what it buys. Read once at start; worker threads get the result through workerData. `serve`
// takes the same settings as flags (src/cli/settings.ts), which win over these; the other
// commands (reconcile, cleanup) read the tool paths from here.
import { DEFAULT_SWITCHES, type Switches } from '../tools/env.js';
import { DEFAULT_TOOLS, type ToolPaths } from '../tools/paths.js';

export interface EnvironmentSettings {
  readonly tools: ToolPaths;
  readonly switches: Switches;
  readonly directSpawn: boolean;
}

/**
 * The variables' names. Each is also a `serve` flag (src/cli/settings.ts names the variable in
 * its row, and documents it); the variable counts only when the flag is not given.
 */
export const ENV = {
  ipBin: 'BB_IP_BIN',
  iptablesRestoreBin: 'BB_IPTABLES_RESTORE_BIN',
  ip6tablesRestoreBin: 'BB_IP6TABLES_RESTORE_BIN',
  /** 0: off */
  ipSessions: 'BB_IP_SESSION',
  restoreSessions: 'BB_RESTORE_SESSION',
  earlyDelete: 'BB_EARLY_DELETE',
  /** 1: on */
  directSpawn: 'BB_DIRECT_SPAWN',
} as const;

export function readEnvironment(env: NodeJS.ProcessEnv = process.env): EnvironmentSettings {
  const path = (name: string, dflt: string): string => {
    const v = env[name];
    return v !== undefined && v !== '' ? v : dflt;
  };
  return {
    tools: {
      ...DEFAULT_TOOLS,
      ip: path(ENV.ipBin, DEFAULT_TOOLS.ip),
      iptablesRestore: path(ENV.iptablesRestoreBin, DEFAULT_TOOLS.iptablesRestore),
      ip6tablesRestore: path(ENV.ip6tablesRestoreBin, DEFAULT_TOOLS.ip6tablesRestore),
    },
    switches: {
      ipSessions: env[ENV.ipSessions] !== '0' && DEFAULT_SWITCHES.ipSessions,
      restoreSessions: env[ENV.restoreSessions] !== '0' && DEFAULT_SWITCHES.restoreSessions,
      earlyDelete: env[ENV.earlyDelete] !== '0' && DEFAULT_SWITCHES.earlyDelete,
    },
    directSpawn: env[ENV.directSpawn] === '1',
  };
}
