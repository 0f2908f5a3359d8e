// The logger: pino, to stderr (commands printing results keep stdout clean). Levels are written
// by name ("level":"warn"), times as ISO 8601 in UTC. `pretty` turns each JSON entry into one
// readable line (`12:00:00.123 WARN  message key=value …`) for a terminal; journald and log
// shippers want `json`. docs/operations.md lists the fields.
import { pino, destination, stdTimeFunctions, type Logger, type LevelWithSilent } from 'pino';

export type LogFormat = 'json' | 'pretty';

interface Sink {
  write(s: string): unknown;
  flush?(cb?: (err?: Error) => void): void;
  flushSync?(): void;
}

/** Fields every entry has; the rest are printed as key=value. */
const FIXED = new Set(['level', 'time', 'msg', 'name']);

function show(v: unknown): string {
  if (typeof v === 'string') return /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v);
  return JSON.stringify(v) ?? String(v);
}

/** One JSON log entry as a readable line (unparseable input is passed through). */
export function prettyLine(json: string): string {
  let e: Record<string, unknown>;
  try {
    e = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json.endsWith('\n') ? json : `${json}\n`;
  }
  const time = typeof e.time === 'string' ? e.time.slice(11, 23) : '';
  const level = String(e.level ?? '').toUpperCase().padEnd(5);
  const rest: string[] = [];
  let stack = '';
  for (const [k, v] of Object.entries(e)) {
    if (FIXED.has(k)) continue;
    if (k === 'err' && v !== null && typeof v === 'object') {
      const err = v as { message?: unknown; stack?: unknown };
      rest.push(`err=${show(err.message ?? v)}`);
      if (typeof err.stack === 'string') stack = `\n    ${err.stack.split('\n').slice(1).join('\n    ').trim()}`;
      continue;
    }
    rest.push(`${k}=${show(v)}`);
  }
  return `${time} ${level} ${String(e.msg ?? '')}${rest.length > 0 ? ` ${rest.join(' ')}` : ''}${stack}\n`;
}

function prettySink(out: Sink): Sink {
  return {
    write: (s: string) => {
      // pino writes one entry per call, ending in a newline.
      out.write(s.split('\n').filter((l) => l !== '').map(prettyLine).join(''));
    },
    flush: (cb) => (out.flush === undefined ? cb?.() : out.flush(cb)),
    flushSync: () => out.flushSync?.(),
  };
}

export function createLogger(level: LevelWithSilent, format: LogFormat = 'json'): Logger {
  // Synchronous, as pino's own default: lines stay in order with what the CLI prints to stderr
  // itself (a start-up refusal comes after the start line), and none is lost on exit. The
  // plugin logs per request only at debug level.
  const sink = destination({ fd: 2, sync: true });
  const opts = {
    level,
    base: { name: 'batchbridge' },
    timestamp: stdTimeFunctions.isoTime,
    formatters: { level: (label: string) => ({ level: label }) },
  };
  return format === 'json' ? pino(opts, sink) : pino(opts, prettySink(sink) as unknown as typeof sink);
}
