// The one place that starts processes. No shell is ever involved: argv arrays only, scripts go
// through stdin. Everything else in the code base calls runTool().
import { execa } from 'execa';

export interface ToolPaths {
  readonly ip: string;
  readonly iptablesRestore: string;
  readonly ip6tablesRestore: string;
  readonly iptablesSave: string;
  readonly ip6tablesSave: string;
  readonly conntrack: string;
}

export const DEFAULT_TOOLS: ToolPaths = {
  ip: 'ip',
  iptablesRestore: 'iptables-restore',
  ip6tablesRestore: 'ip6tables-restore',
  iptablesSave: 'iptables-save',
  ip6tablesSave: 'ip6tables-save',
  conntrack: 'conntrack',
};

export interface ToolResult {
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
  /** the process could not be started, or was killed by a signal */
  readonly spawnError: string | null;
}

export async function runTool(file: string, args: readonly string[], input?: string, timeoutMs = 60_000): Promise<ToolResult> {
  const r = await execa(file, args, {
    input: input ?? '',
    reject: false,
    shell: false,
    stripFinalNewline: false,
    timeout: timeoutMs,
    env: { LC_ALL: 'C' },
    extendEnv: true,
  });
  let spawnError: string | null = null;
  if (r.failed && r.exitCode === undefined) spawnError = r.shortMessage ?? 'failed to start';
  if (r.signal) spawnError = `${file} killed by ${r.signal}`;
  return {
    exitCode: r.exitCode ?? -1,
    stdout: typeof r.stdout === 'string' ? r.stdout : '',
    stderr: typeof r.stderr === 'string' ? r.stderr : '',
    spawnError,
  };
}
