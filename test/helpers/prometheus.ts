// A real Prometheus server (Debian's `prometheus`) inside a test namespace, with a private config
// and storage dir, scraping targets on that namespace's loopback every second; its HTTP API and
// the targets are reached from the test process through unix sockets (unix-tcp-bridge.ts).
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { ORDER, track, untrack, type Resource } from './cleanup.js';
import type { Netns } from './netns.js';
import { sleep, terminatePid } from './proc.js';

const BRIDGE = new URL('./unix-tcp-bridge.js', import.meta.url).pathname;

export interface PromSample {
  readonly metric: Record<string, string>;
  readonly value: number;
}

export interface Prometheus extends Resource {
  /** An instant query through the HTTP API (/api/v1/query). */
  query(expr: string): Promise<PromSample[]>;
  /** GET a path of a bridged target ("metrics" or "prometheus"). */
  get(target: 'metrics' | 'prometheus', path: string): Promise<{ status: number; text: string }>;
  logTail(): string;
}

function startDaemon(argv: string[], logPath: string): ChildProcess {
  const fd = openSync(logPath, 'a');
  try {
    return spawn(argv[0] ?? 'nsenter', argv.slice(1), { stdio: ['ignore', fd, fd] });
  } finally {
    closeSync(fd);
  }
}

async function waitFor(what: string, ok: () => Promise<boolean>, ms: number, log: () => string): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await ok().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`${what} not ready after ${ms} ms\n${log()}`);
    await sleep(100);
  }
}

/** Prometheus on 127.0.0.1:9090 in `ns`, scraping `target` (HOST:PORT in `ns`) as job batchbridge. */
export async function startPrometheus(ns: Netns, dir: string, target: string): Promise<Prometheus> {
  const config = join(dir, 'prometheus.yml');
  writeFileSync(config, `global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: batchbridge\n    static_configs:\n      - targets: ['${target}']\n`);
  const log = join(dir, 'prometheus.log');
  const prom = startDaemon(ns.argv(['prometheus', `--config.file=${config}`, `--storage.tsdb.path=${join(dir, 'tsdb')}`, '--web.listen-address=127.0.0.1:9090', '--log.level=warn']), log);
  const socks = { prometheus: join(dir, 'prometheus.sock'), metrics: join(dir, 'metrics.sock') };
  const bridge = startDaemon(ns.argv([process.execPath, BRIDGE, `${socks.prometheus}=127.0.0.1:9090`, `${socks.metrics}=${target}`]), join(dir, 'bridge.log'));
  const agents = { prometheus: new Agent({ connect: { socketPath: socks.prometheus } }), metrics: new Agent({ connect: { socketPath: socks.metrics } }) };
  const logTail = (): string => {
    try {
      return readFileSync(log, 'utf8').split('\n').slice(-20).join('\n');
    } catch {
      return '';
    }
  };
  const get = async (t: 'metrics' | 'prometheus', path: string) => {
    const res = await request(`http://localhost${path}`, { dispatcher: agents[t] });
    return { status: res.statusCode, text: await res.body.text() };
  };
  let closing: Promise<void> | undefined;
  const p: Prometheus = {
    label: `prometheus (pid ${prom.pid ?? '?'}) in ${ns.name}`,
    order: ORDER.plugin,
    get,
    logTail,
    query: async (expr) => {
      const r = await get('prometheus', `/api/v1/query?query=${encodeURIComponent(expr)}`);
      const body = JSON.parse(r.text) as { status: string; error?: string; data?: { result: Array<{ metric: Record<string, string>; value: [number, string] }> } };
      if (body.status !== 'success') throw new Error(`query ${expr}: ${body.error ?? r.text}`);
      return (body.data?.result ?? []).map((s) => ({ metric: s.metric, value: Number(s.value[1]) }));
    },
    close: () => (closing ??= (async () => {
      await Promise.all([agents.prometheus.close(), agents.metrics.close()]);
      for (const c of [bridge, prom]) if (c.pid !== undefined) await terminatePid(c.pid, { graceMs: 10_000, isOurs: () => c.exitCode === null && c.signalCode === null });
      untrack(p);
    })()),
    emergencyCloseSync: () => {
      bridge.kill('SIGKILL');
      prom.kill('SIGKILL');
    },
  };
  track(p);
  try {
    await waitFor('prometheus', async () => (await get('prometheus', '/-/ready')).status === 200, 30_000, logTail);
  } catch (err) {
    await p.close();
    throw err;
  }
  return p;
}
