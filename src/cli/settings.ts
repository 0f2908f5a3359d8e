// Every setting of `batchbridge serve`, in one table: the command line's flags, the lines of a
// `--config FILE`, `serve --help` and the table in docs/options.md are all made from it, so they
// cannot drift apart (test/unit/settings.test.ts checks the doc). A value comes from the command
// line, else the config file, else the environment variable the row names, else the default.
import { DEFAULT_HTTP_TIMEOUTS } from '../api/http-timeouts.js';
import { DEFAULT_CNI_SOCKET } from '../cni/cni-server.js';
import { DEFAULT_ENGINE_OPTIONS } from '../engine/core.js';
import { DEFAULT_TUNING } from '../scheduler/pipelines.js';
import { DEFAULT_SWITCHES } from '../tools/env.js';
import { DEFAULT_TOOLS } from '../tools/paths.js';
import { ENV } from '../config/environment.js';

/**
 * int: a whole number in [min, max]; string: any text (checked where used); flag: a boolean flag
 * (present on the command line; `true`/`false` in a file); switch: `on` or `off`; choice: one
 * of `choices`; hostport: HOST:PORT.
 */
export type SettingType = 'int' | 'string' | 'flag' | 'switch' | 'choice' | 'hostport';
export type SettingValue = number | string | boolean | null;

export interface Setting {
  readonly name: string;
  readonly type: SettingType;
  /** null: unset (the feature is off) */
  readonly default: SettingValue;
  readonly min?: number;
  readonly max?: number;
  readonly choices?: readonly string[];
  /** the value's placeholder in --help */
  readonly arg?: string;
  readonly help: string;
  /** how the default reads in --help and the docs, when not the bare value */
  readonly defaultText?: string;
  /** an environment variable that gives the value when neither the command line nor the file does */
  readonly env?: string;
  /** for measurements and fault injection; users keep the default */
  readonly measurement?: boolean;
  /** on the command line only (not a config file line) */
  readonly cliOnly?: boolean;
}

const T = DEFAULT_HTTP_TIMEOUTS;

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export const SERVE_SETTINGS: readonly Setting[] = [
  { name: 'config', type: 'string', default: null, arg: 'FILE', cliOnly: true, defaultText: 'none', help: 'read settings from FILE: one `name = value` line per setting, named as the flags without the dashes; `#` starts a comment; flags on the command line win' },
  { name: 'name', type: 'string', default: 'batchbridge', arg: 'NAME', help: "driver name for 'docker network create -d NAME'; the socket is <socket-dir>/<NAME>.sock" },
  { name: 'state-dir', type: 'string', default: '/var/lib/batchbridge', arg: 'DIR', help: 'where the books (SQLite) live' },
  { name: 'socket-dir', type: 'string', default: '/run/docker/plugins', arg: 'DIR', help: 'where the plugin socket goes' },
  { name: 'cni-socket', type: 'string', default: DEFAULT_CNI_SOCKET, arg: 'PATH', help: 'serve CNI requests (from the batchbridge-cni executable) on this unix socket (mode 0600), beside the Docker socket and on the same books; see docs/cni.md' },
  { name: 'no-cni', type: 'flag', default: false, help: 'no CNI socket: the Docker remote-driver protocol only' },
  { name: 'metrics-listen', type: 'hostport', default: null, arg: 'HOST:PORT', defaultText: 'off', help: 'serve Prometheus metrics over plain HTTP at http://HOST:PORT/metrics (no authentication: keep it on a loopback or management address)' },
  { name: 'log-level', type: 'choice', default: 'info', choices: LOG_LEVELS, arg: 'L', help: `${LOG_LEVELS.join(', ')}; debug adds a line per batch` },
  { name: 'log-format', type: 'choice', default: 'json', choices: ['json', 'pretty'], arg: 'F', help: 'json: one JSON object per line (for journald and log shippers); pretty: one readable line per entry' },
  { name: 'batch-max', type: 'int', default: DEFAULT_TUNING.batchMax, min: 1, max: 4096, arg: 'N', help: 'most operations in one kernel batch (1 = one at a time)' },
  { name: 'batch-window-ms', type: 'int', default: DEFAULT_TUNING.gatherMs, min: 0, max: 1000, arg: 'MS', help: `while ${DEFAULT_TUNING.gatherMinActive} or more endpoint requests are in flight, how long an idle pipeline waits to gather a burst before it starts a batch; a lone request never waits (0 = never wait)` },
  { name: 'delete-defer-ms', type: 'int', default: DEFAULT_TUNING.deleteDeferMs, min: 0, max: 10_000, arg: 'MS', help: 'the most a deletion waits for veth creations to finish before its batch starts anyway' },
  { name: 'workers', type: 'int', default: 2, min: 1, max: 16, arg: 'N', help: 'worker threads running kernel batches' },
  { name: 'write-behind-deletes', type: 'flag', default: false, help: 'answer DeleteEndpoint under churn once the deletion is durable, before the kernel has removed the veth (faster; see docs/performance.md)' },
  { name: 'max-queue', type: 'int', default: 4096, min: 1, max: 1_000_000, arg: 'N', help: 'operations queued before new work is refused as overloaded' },
  { name: 'reconcile-interval-ms', type: 'int', default: 60_000, min: 0, max: 86_400_000, arg: 'MS', help: 'how often to compare the kernel with the books and fix drift (0 = only at start and on demand)' },
  { name: 'sysctl-dir', type: 'string', default: '/proc/sys', arg: 'DIR', help: "where sysctls are written, DIR/net/...; the managed plugin bind-mounts the host's /proc/sys/net under another DIR because its /proc/sys is read-only" },
  { name: 'firewall-check-ms', type: 'int', default: 2000, min: 100, max: 3_600_000, arg: 'MS', help: 'how often the watchdog counts our firewall rules per chain and owner against the books; a difference seen twice in a row is repaired by rewriting our chains' },
  { name: 'stale-endpoint-grace-ms', type: 'int', default: DEFAULT_ENGINE_OPTIONS.staleEndpointGraceMs, min: 0, max: 3_600_000, arg: 'MS', help: 'a never-joined endpoint older than this whose address a new endpoint asks for is taken as left over and removed; a younger one makes the new endpoint fail' },
  { name: 'headers-timeout-ms', type: 'int', default: T.headersMs, min: 100, max: 3_600_000, arg: 'MS', help: "a request's headers must have arrived within this time of the connection opening (or of the request's first byte, on a kept-alive connection), else 408 and closed" },
  { name: 'request-timeout-ms', type: 'int', default: T.requestMs, min: 100, max: 3_600_000, arg: 'MS', defaultText: `${T.requestMs}, or --headers-timeout-ms if that is longer`, help: 'a request (headers and body) must have arrived within this time, else 408 and closed; never cuts a request being answered; not shorter than --headers-timeout-ms' },
  { name: 'idle-timeout-ms', type: 'int', default: T.idleMs, min: 100, max: 86_400_000, arg: 'MS', help: 'a kept-alive connection with no request in flight is closed after this' },
  { name: 'ip-bin', type: 'string', default: DEFAULT_TOOLS.ip, arg: 'PATH', env: ENV.ipBin, measurement: true, help: 'the ip binary (a name is looked up in PATH)' },
  { name: 'iptables-restore-bin', type: 'string', default: DEFAULT_TOOLS.iptablesRestore, arg: 'PATH', env: ENV.iptablesRestoreBin, measurement: true, help: 'the iptables-restore binary' },
  { name: 'ip6tables-restore-bin', type: 'string', default: DEFAULT_TOOLS.ip6tablesRestore, arg: 'PATH', env: ENV.ip6tablesRestoreBin, measurement: true, help: 'the ip6tables-restore binary' },
  { name: 'ip-sessions', type: 'switch', default: DEFAULT_SWITCHES.ipSessions, env: ENV.ipSessions, measurement: true, help: 'long-lived `ip -batch` processes for veth batches (off: one ip process per batch)' },
  { name: 'restore-sessions', type: 'switch', default: DEFAULT_SWITCHES.restoreSessions, env: ENV.restoreSessions, measurement: true, help: 'long-lived iptables-restore processes (nf_tables backend; off: one process per transaction)' },
  { name: 'early-delete', type: 'switch', default: DEFAULT_SWITCHES.earlyDelete, env: ENV.earlyDelete, measurement: true, help: 'answer a deletion once its veths are unlisted (off: only when ip returns, ~20 ms later)' },
  { name: 'direct-spawn', type: 'switch', default: false, env: ENV.directSpawn, measurement: true, help: 'start tools from the worker threads directly instead of through a small launcher process per thread' },
];

export function settingByName(name: string): Setting | undefined {
  return SERVE_SETTINGS.find((s) => s.name === name);
}

/** A value as it reads in --help, a config file and the docs. */
export function showValue(s: Setting, v: SettingValue): string {
  if (v === null) return 'off';
  if (s.type === 'switch') return v === true ? 'on' : 'off';
  return String(v);
}

export function defaultText(s: Setting): string {
  if (s.defaultText !== undefined) return s.defaultText;
  if (s.type === 'flag') return s.default === true ? 'on' : 'off';
  return showValue(s, s.default);
}

function flagWithArg(s: Setting): string {
  if (s.type === 'flag') return `--${s.name}`;
  if (s.type === 'switch') return `--${s.name} on|off`;
  if (s.type === 'choice' && s.choices !== undefined && s.choices.length <= 3) return `--${s.name} ${s.choices.join('|')}`;
  return `--${s.name} ${s.arg ?? 'VALUE'}`;
}

function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line !== '' && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line === '' ? word : `${line} ${word}`;
  }
  if (line !== '') lines.push(line);
  return lines;
}

function helpEntry(s: Setting): string {
  const head = `  ${flagWithArg(s)}`;
  const range = s.type === 'int' ? `; ${s.min ?? 0} to ${s.max ?? '∞'}` : '';
  const env = s.env === undefined ? '' : `; environment ${s.env}`;
  const body = wrap(`${s.help} (default: ${defaultText(s)}${range}${env})`, 73);
  const pad = ' '.repeat(25);
  if (head.length < 24) return [`${head.padEnd(25)}${body[0] ?? ''}`, ...body.slice(1).map((l) => pad + l)].join('\n');
  return [head, ...body.map((l) => pad + l)].join('\n');
}

/** The options part of `serve --help`. */
export function serveOptionsHelp(): string {
  const main = SERVE_SETTINGS.filter((s) => s.measurement !== true).map(helpEntry);
  const meas = SERVE_SETTINGS.filter((s) => s.measurement === true).map(helpEntry);
  return `${main.join('\n')}\n\n  For unusual installs, measurements and fault injection (keep the defaults otherwise):\n${meas.join('\n')}\n`;
}

function mdCell(text: string): string {
  return text.replace(/\|/g, '\\|');
}

/** The table of docs/options.md ("serve settings"). */
export function serveOptionsMarkdown(): string {
  const rows = SERVE_SETTINGS.map((s) => {
    const values = s.type === 'int' ? `${s.min ?? 0}–${s.max ?? '∞'}` : s.type === 'switch' ? 'on, off' : s.type === 'flag' ? 'flag (file: true, false)' : s.type === 'choice' ? (s.choices ?? []).join(', ') : s.type === 'hostport' ? 'HOST:PORT' : (s.arg ?? 'text');
    const line = s.cliOnly === true ? '—' : `\`${s.name} = ${s.type === 'flag' ? 'true' : s.default === null ? (s.arg ?? 'VALUE') : showValue(s, s.default)}\``;
    return `| \`--${s.name}\` | ${line} | ${mdCell(values)} | ${mdCell(defaultText(s))} | ${s.env === undefined ? '' : `\`${s.env}\``} | ${mdCell(s.help)} |`;
  });
  return ['| flag | config file line | values | default | environment | what it does |', '|---|---|---|---|---|---|', ...rows].join('\n') + '\n';
}
