// Command line: `batchbridge serve|ports|help`. Argument parsing is strict: an unknown flag is
// an error, never ignored.
import { parseArgs } from 'node:util';
import type { LevelWithSilent } from 'pino';
import { createLogger } from '../log.js';
import { startServer } from '../server.js';
import { environmentHelp, readEnvironment } from '../config/environment.js';
import { isValidIfName } from '../domain/names.js';
import { DEFAULT_TUNING } from '../scheduler/pipelines.js';
import { printPorts } from './ports.js';
import { runReconcile } from './reconcile.js';
import { DEFAULT_ENGINE_OPTIONS } from '../engine/core.js';
import { installService } from './install-service.js';
import { packagePlugin } from './package-plugin.js';
import { watchNpmParent } from './parent-watch.js';
import { cniInstall } from '../cni/cli-install.js';
import { DEFAULT_CNI_SOCKET } from '../cni/cni-server.js';
import { DEFAULT_HTTP_TIMEOUTS, type HttpTimeouts } from '../api/http-timeouts.js';

const HELP = `batchbridge — a Docker network driver plugin that does what the built-in bridge
driver does, batching the kernel work of many endpoints into one transaction.

Usage:
  batchbridge serve [options]      run the plugin (as root, in dockerd's network namespace)
  batchbridge ports [options]      list the published ports of the running plugin
  batchbridge reconcile [options]  compare the kernel with the books, fix and print what differs
  batchbridge install-service [options]
                                   write a systemd unit running this plugin (see its --help)
  batchbridge cni-install [options]
                                   install the CNI plugin executable (and a conflist); --help
  batchbridge package-plugin --out DIR [--name NAME]
                                   build a Docker managed-plugin folder (see its --help)
  batchbridge --help               this text

serve options:
  --name NAME            driver name for 'docker network create -d NAME' (default: batchbridge);
                         the socket is <socket-dir>/<NAME>.sock
  --state-dir DIR        where the books (SQLite) live (default: /var/lib/batchbridge)
  --socket-dir DIR       where the plugin socket goes (default: /run/docker/plugins)
  --batch-max N          most operations in one kernel batch (default: 256; 1 = one at a time)
  --batch-window-ms MS   while 8 or more endpoint requests are in flight, how long an idle pipeline
                         waits to gather a burst before it starts a batch; a lone request never
                         waits (default: 3; 0 = never wait)
  --delete-defer-ms MS   the most a deletion waits for veth creations to finish before its batch
                         starts anyway (default: 25)
  --workers N            worker threads running kernel batches (default: 2)
  --write-behind-deletes answer DeleteEndpoint under churn once the deletion is durable, before the
                         kernel has removed the veth (faster; see docs/performance.md)
  --max-queue N          operations queued before new work is refused as overloaded (default: 4096)
  --log-level L          fatal, error, warn, info, debug, trace or silent (default: info)
  --reconcile-interval-ms MS
                         how often to compare the kernel with the books and fix drift
                         (default: 60000; 0 = only at start and on demand)
  --sysctl-dir DIR       where sysctls are written, DIR/net/... (default: /proc/sys); the managed
                         plugin bind-mounts the host's /proc/sys/net under another DIR because
                         its /proc/sys is read-only
  --firewall-check-ms MS how often the watchdog counts our firewall rules per chain and owner
                         against the books; a difference seen twice in a row is repaired by
                         rewriting our chains (default: 2000)
  --stale-endpoint-grace-ms MS
                         a never-joined endpoint older than this whose address a new endpoint
                         asks for is taken as left over and removed; a younger one makes the new
                         endpoint fail (default: 5000)
  --headers-timeout-ms MS
                         a request's headers must have arrived within this time of the connection
                         opening (or of the request's first byte, on a kept-alive connection), else
                         408 and closed; this closes connections that never send a byte
                         (default: 10000)
  --request-timeout-ms MS
                         a request (headers and body) must have arrived within this time, else 408
                         and closed; never cuts a request being answered (default: 30000, or
                         --headers-timeout-ms if that is longer; must not be shorter than it)
  --idle-timeout-ms MS   a kept-alive connection with no request in flight is closed after this
                         (default: 60000)
  --cni-socket PATH      serve CNI requests (from the batchbridge-cni executable) on this socket,
                         beside the Docker one and on the same books (default:
                         /run/batchbridge/cni.sock, mode 0600; see docs/cni.md)
  --no-cni               no CNI socket: Docker's remote-driver protocol only
  At start serve refuses, changing nothing, when another batchbridge holds the state dir or
  serves this network namespace, when the socket path answers or is not a socket, or when the
  state dir is unsafe (a symlink, not owned by root, writable by group or others, or a book file
  that is a symlink). See docs/security.md.

ports options:
  --name NAME            the plugin to ask (default: batchbridge)
  --socket-dir DIR       where its socket is (default: /run/docker/plugins)
  --json                 print JSON instead of one line per binding

reconcile options (asks the running plugin over its socket; if none listens there, opens the
books itself and fixes the kernel of the namespace it runs in, holding the state dir's lock and
the namespace like a plugin; when another plugin holds those books it asks that one instead,
and it refuses when anything else holds them or serves the namespace):
  --state-dir DIR        the books to use when the plugin is not running (default: /var/lib/batchbridge)
  --name NAME            the plugin to ask (default: batchbridge)
  --socket-dir DIR       where its socket is (default: /run/docker/plugins)
  --dry-run              report only, change nothing
  --json                 print the report as JSON
  It re-creates missing bridges and addresses of booked networks, re-enslaves detached veths,
  finishes or undoes work a crash interrupted, unbooks endpoints whose veth vanished, removes
  veths and bridges that carry this plugin's ownership mark (a link group per set of books) but
  that the books do not explain (never anything because of its name), and rewrites
  batchbridge's firewall chains when they drifted. Exit status 1 when a fix failed.

Environment (read once at start; for unusual installs, fault injection and measurements):
${environmentHelp()}

Exit status: 0 on success (serve: after SIGTERM/SIGINT and a clean drain), 1 on error, 2 on bad usage.
`;

const LEVELS = new Set(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);

class UsageError extends Error {}

function intFlag(v: string | undefined, name: string, dflt: number, min: number, max: number): number {
  if (v === undefined) return dflt;
  if (!/^\d+$/.test(v)) throw new UsageError(`--${name} must be a whole number, got ${JSON.stringify(v)}`);
  const n = Number(v);
  if (n < min || n > max) throw new UsageError(`--${name} must be between ${min} and ${max}, got ${n}`);
  return n;
}

function checkName(name: string): string {
  // The name becomes a socket file name and a driver name: keep it to safe characters.
  if (!isValidIfName(name.slice(0, 15)) || !/^[a-z0-9][a-z0-9_.-]{0,63}$/.test(name)) {
    throw new UsageError(`--name must be 1-64 characters of [a-z0-9_.-], got ${JSON.stringify(name)}`);
  }
  if (['bridge', 'host', 'null', 'overlay', 'macvlan', 'ipvlan', 'none'].includes(name)) {
    throw new UsageError(`--name ${name} is a built-in Docker driver name: dockerd would never call the plugin`);
  }
  return name;
}

function timeoutFlags(values: Record<string, string | boolean | undefined>): HttpTimeouts {
  const str = (k: string): string | undefined => (typeof values[k] === 'string' ? values[k] : undefined);
  const d = DEFAULT_HTTP_TIMEOUTS;
  const headersMs = intFlag(str('headers-timeout-ms'), 'headers-timeout-ms', d.headersMs, 100, 3_600_000);
  const t = {
    headersMs,
    // Node requires headers <= request: an unset request timeout follows a longer headers one.
    requestMs: intFlag(str('request-timeout-ms'), 'request-timeout-ms', Math.max(d.requestMs, headersMs), 100, 3_600_000),
    idleMs: intFlag(str('idle-timeout-ms'), 'idle-timeout-ms', d.idleMs, 100, 86_400_000),
  };
  if (t.headersMs > t.requestMs) throw new UsageError(`--headers-timeout-ms (${t.headersMs}) must not exceed --request-timeout-ms (${t.requestMs})`);
  return t;
}

function cniSocketFlag(path: string | undefined, off: boolean): string | null {
  if (off) {
    if (path !== undefined) throw new UsageError('--cni-socket and --no-cni exclude each other');
    return null;
  }
  const p = path ?? DEFAULT_CNI_SOCKET;
  if (!p.startsWith('/') || Buffer.byteLength(p) > 107) throw new UsageError(`--cni-socket must be an absolute path of at most 107 bytes, got ${JSON.stringify(p)}`);
  return p;
}

async function serve(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    strict: true,
    allowPositionals: false,
    options: {
      name: { type: 'string' },
      'state-dir': { type: 'string' },
      'socket-dir': { type: 'string' },
      'batch-max': { type: 'string' },
      'batch-window-ms': { type: 'string' },
      'delete-defer-ms': { type: 'string' },
      workers: { type: 'string' },
      'write-behind-deletes': { type: 'boolean' },
      'max-queue': { type: 'string' },
      'log-level': { type: 'string' },
      'firewall-check-ms': { type: 'string' },
      'reconcile-interval-ms': { type: 'string' },
      'sysctl-dir': { type: 'string' },
      'stale-endpoint-grace-ms': { type: 'string' },
      'headers-timeout-ms': { type: 'string' },
      'request-timeout-ms': { type: 'string' },
      'idle-timeout-ms': { type: 'string' },
      'cni-socket': { type: 'string' },
      'no-cni': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const level = values['log-level'] ?? 'info';
  if (!LEVELS.has(level)) throw new UsageError(`--log-level must be one of ${[...LEVELS].join(', ')}`);
  const log = createLogger(level as LevelWithSilent);
  const sysctlDir = values['sysctl-dir'] ?? '/proc/sys';
  if (!sysctlDir.startsWith('/')) throw new UsageError(`--sysctl-dir must be an absolute path, got ${JSON.stringify(sysctlDir)}`);
  const cfg = {
    name: checkName(values.name ?? 'batchbridge'),
    stateDir: values['state-dir'] ?? '/var/lib/batchbridge',
    socketDir: values['socket-dir'] ?? '/run/docker/plugins',
    tuning: {
      ...DEFAULT_TUNING,
      batchMax: intFlag(values['batch-max'], 'batch-max', DEFAULT_TUNING.batchMax, 1, 4096),
      gatherMs: intFlag(values['batch-window-ms'], 'batch-window-ms', DEFAULT_TUNING.gatherMs, 0, 1000),
      deleteDeferMs: intFlag(values['delete-defer-ms'], 'delete-defer-ms', DEFAULT_TUNING.deleteDeferMs, 0, 10_000),
    },
    workers: intFlag(values.workers, 'workers', 2, 1, 16),
    writeBehindDeletes: values['write-behind-deletes'] === true,
    maxQueue: intFlag(values['max-queue'], 'max-queue', 4096, 1, 1_000_000),
    firewallCheckMs: intFlag(values['firewall-check-ms'], 'firewall-check-ms', 2000, 100, 3_600_000),
    reconcileMs: intFlag(values['reconcile-interval-ms'], 'reconcile-interval-ms', 60_000, 0, 86_400_000),
    staleEndpointGraceMs: intFlag(values['stale-endpoint-grace-ms'], 'stale-endpoint-grace-ms', DEFAULT_ENGINE_OPTIONS.staleEndpointGraceMs, 0, 3_600_000),
    timeouts: timeoutFlags(values),
    cniSocket: cniSocketFlag(values['cni-socket'], values['no-cni'] === true),
    sysctlDir,
    ...readEnvironment(),
  };
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
  log.flush();
  return 0;
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case 'serve':
        return await serve(rest);
      case 'ports':
        return await printPorts(rest);
      case 'reconcile':
        return await runReconcile(rest, readEnvironment().tools);
      case 'install-service':
        return await installService(rest);
      case 'cni-install':
        return await cniInstall(rest);
      case 'package-plugin':
        return await packagePlugin(rest);
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(HELP);
        return cmd === undefined ? 2 : 0;
      default:
        throw new UsageError(`unknown command ${JSON.stringify(cmd)}`);
    }
  } catch (err) {
    if (err instanceof UsageError || (err as NodeJS.ErrnoException).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' || (err as NodeJS.ErrnoException).code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' || (err as NodeJS.ErrnoException).code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') {
      process.stderr.write(`batchbridge: ${(err as Error).message}\nRun 'batchbridge --help' for usage.\n`);
      return 2;
    }
    throw err;
  }
}
