// The environment variables batchbridge reads, all of them, here and only here: other binaries
// for unusual installs and fault injection, and switches that turn a mechanism off to measure
// what it buys. Read once at start; worker threads get the result through workerData. `--help`
// lists this table.
import { DEFAULT_SWITCHES, type Switches } from '../tools/env.js';
import { DEFAULT_TOOLS, type ToolPaths } from '../tools/paths.js';

export interface EnvironmentSettings {
  readonly tools: ToolPaths;
  readonly switches: Switches;
  readonly directSpawn: boolean;
}

/** name, what it does (for --help and docs/options.md) */
export const ENVIRONMENT: ReadonlyArray<readonly [string, string]> = [
  ['BB_IP_BIN', 'the ip binary (default: ip from PATH)'],
  ['BB_IPTABLES_RESTORE_BIN', 'the iptables-restore binary (default: iptables-restore from PATH)'],
  ['BB_IP6TABLES_RESTORE_BIN', 'the ip6tables-restore binary (default: ip6tables-restore from PATH)'],
  ['BB_IP_SESSION=0', 'run every ip batch in a process of its own (no long-lived ip sessions)'],
  ['BB_RESTORE_SESSION=0', 'run every firewall transaction in its own iptables-restore process'],
  ['BB_EARLY_DELETE=0', 'answer a deletion only when ip returns, not once the veths are unlisted'],
  ['BB_DIRECT_SPAWN=1', 'start tools directly instead of through a small launcher process per thread'],
];

export function readEnvironment(env: NodeJS.ProcessEnv = process.env): EnvironmentSettings {
  const path = (name: string, dflt: string): string => {
    const v = env[name];
    return v !== undefined && v !== '' ? v : dflt;
  };
  return {
    tools: {
      ...DEFAULT_TOOLS,
      ip: path('BB_IP_BIN', DEFAULT_TOOLS.ip),
      iptablesRestore: path('BB_IPTABLES_RESTORE_BIN', DEFAULT_TOOLS.iptablesRestore),
      ip6tablesRestore: path('BB_IP6TABLES_RESTORE_BIN', DEFAULT_TOOLS.ip6tablesRestore),
    },
    switches: {
      ipSessions: env.BB_IP_SESSION !== '0' && DEFAULT_SWITCHES.ipSessions,
      restoreSessions: env.BB_RESTORE_SESSION !== '0' && DEFAULT_SWITCHES.restoreSessions,
      earlyDelete: env.BB_EARLY_DELETE !== '0' && DEFAULT_SWITCHES.earlyDelete,
    },
    directSpawn: env.BB_DIRECT_SPAWN === '1',
  };
}

export function environmentHelp(): string {
  return ENVIRONMENT.map(([name, what]) => `  ${name.padEnd(26)} ${what}`).join('\n');
}
