// `batchbridge serve`: settings from the table (settings.ts) through the command line, a config
// file and the environment, then the server (src/server.ts) until SIGTERM/SIGINT.
import type { LevelWithSilent, Logger } from 'pino';
import { version } from '../config/version.js';
import { createLogger, type LogFormat } from '../log.js';
import { startServer, type ServeConfig } from '../server.js';
import { DEFAULT_TOOLS } from '../tools/paths.js';
import { DEFAULT_TUNING } from '../scheduler/pipelines.js';
import { watchNpmParent } from './parent-watch.js';
import { parseHostPort, resolveServeArgs, type ResolvedSettings } from './resolve-settings.js';
import { serveOptionsHelp } from './settings.js';
import { checkName, UsageError } from './usage.js';

export function serveHelp(): string {
  return `Usage: batchbridge serve [options]

Runs the plugin (as root, in dockerd's network namespace): the Docker remote network-driver
protocol on <socket-dir>/<name>.sock and the CNI protocol on --cni-socket. Every option can also
be a line of --config FILE (docs/options.md lists them all).

Options:
${serveOptionsHelp()}
At start serve refuses, changing nothing, when another batchbridge holds the state dir or serves
this network namespace, when the socket path answers or is not a socket, when the state dir is
unsafe (a symlink, not owned by root, writable by group or others, or a book file that is a
symlink), or when the books were written by a newer batchbridge. See docs/security.md and
docs/operations.md.

Exit status: 0 after SIGTERM/SIGINT and a clean drain, 1 on error, 2 on bad usage.
`;
}

function timeouts(s: ResolvedSettings): NonNullable<ServeConfig['timeouts']> {
  const headersMs = s.int('headers-timeout-ms');
  // Node requires headers <= request: an unset request timeout follows a longer headers one.
  const requestMs = s.source('request-timeout-ms') === 'default' ? Math.max(s.int('request-timeout-ms'), headersMs) : s.int('request-timeout-ms');
  if (headersMs > requestMs) throw new UsageError(`--headers-timeout-ms (${headersMs}) must not exceed --request-timeout-ms (${requestMs})`);
  return { headersMs, requestMs, idleMs: s.int('idle-timeout-ms') };
}

function absolute(path: string, flag: string): string {
  if (!path.startsWith('/')) throw new UsageError(`--${flag} must be an absolute path, got ${JSON.stringify(path)}`);
  return path;
}

/** The CNI socket, or null with --no-cni (which a given --cni-socket contradicts). */
function cniSocket(s: ResolvedSettings): string | null {
  if (s.bool('no-cni')) {
    if (s.source('cni-socket') !== 'default') throw new UsageError('--cni-socket and --no-cni exclude each other');
    return null;
  }
  const p = s.str('cni-socket');
  if (!p.startsWith('/') || Buffer.byteLength(p) > 107) throw new UsageError(`--cni-socket must be an absolute path of at most 107 bytes, got ${JSON.stringify(p)}`);
  return p;
}

/** ServeConfig from resolved settings (UsageError for a bad combination). */
export function serveConfig(s: ResolvedSettings): ServeConfig {
  const metrics = s.get('metrics-listen');
  return {
    name: checkName(s.str('name')),
    stateDir: s.str('state-dir'),
    socketDir: s.str('socket-dir'),
    cniSocket: cniSocket(s),
    metricsListen: typeof metrics === 'string' ? parseHostPort(metrics) : null,
    tuning: { ...DEFAULT_TUNING, batchMax: s.int('batch-max'), gatherMs: s.int('batch-window-ms'), deleteDeferMs: s.int('delete-defer-ms') },
    workers: s.int('workers'),
    writeBehindDeletes: s.bool('write-behind-deletes'),
    maxQueue: s.int('max-queue'),
    firewallCheckMs: s.int('firewall-check-ms'),
    reconcileMs: s.int('reconcile-interval-ms'),
    staleEndpointGraceMs: s.int('stale-endpoint-grace-ms'),
    timeouts: timeouts(s),
    tools: { ...DEFAULT_TOOLS, ip: s.str('ip-bin'), iptablesRestore: s.str('iptables-restore-bin'), ip6tablesRestore: s.str('ip6tables-restore-bin') },
    switches: { ipSessions: s.bool('ip-sessions'), restoreSessions: s.bool('restore-sessions'), earlyDelete: s.bool('early-delete') },
    directSpawn: s.bool('direct-spawn'),
    sysctlDir: absolute(s.str('sysctl-dir'), 'sysctl-dir'),
    settings: Object.fromEntries(Object.entries(s.effective()).map(([k, v]) => [k, v.value])),
  };
}

async function runUntilSignal(cfg: ServeConfig, log: Logger): Promise<void> {
  const server = await startServer(cfg, log);
  await new Promise<void>((resolve) => {
    const onSignal = (sig: string): void => {
      log.info({ sig }, 'stopping: draining in-flight work');
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      unwatch();
      server.stop().then(resolve, (err: unknown) => {
        log.error({ err }, 'error while stopping');
        resolve();
      });
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    // npm forwards SIGTERM only to the sh it started, which dies without passing it on.
    const unwatch = watchNpmParent(() => onSignal('npm parent exited'));
  });
}

export async function serve(args: string[]): Promise<number> {
  const { help, settings } = resolveServeArgs(args);
  if (help) {
    process.stdout.write(serveHelp());
    return 0;
  }
  const cfg = serveConfig(settings);
  const log = createLogger(settings.str('log-level') as LevelWithSilent, settings.str('log-format') as LogFormat);
  const changed = Object.fromEntries(Object.entries(settings.effective()).filter(([, v]) => v.source !== 'default').map(([k, v]) => [k, `${v.value} (${v.source})`]));
  log.info({ version: version(), node: process.version, pid: process.pid, settings: changed }, `batchbridge ${version()} starting`);
  await runUntilSignal(cfg, log);
  log.flush();
  return 0;
}
