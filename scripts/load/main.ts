// `npm run load -- [options]` / `node dist/scripts/load/main.js [options]`: see HELP.
import { parseArgs } from 'node:util';
import { existsSync, realpathSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { FloorResult } from '../../bench/kernel-floor.js';
import { inNetns, runOk } from './exec.js';
import type { LeakKind } from './kernel.js';
import { CALLS, isInitNetns, runLoad, type LoadOptions, type LoadResult } from './run.js';
import { spawnPlugin, type PluginHandle } from './spawn.js';

const HELP = `batchbridge load harness: replays dockerd's calls for container lifecycles over the plugin
socket, reports lifecycles/s, per-call latency, errors and the plugin's peak RSS, and checks the
kernel is back where it started (exit 1 if not, or if any request failed).

Usage: node dist/scripts/load/main.js (--spawn | --socket PATH --pid PID) [options]

Plugin:
  --spawn                start the plugin in a throwaway network namespace (ip netns add +
                         nsenter --net), socket and books in a temp folder; all removed at the end
  --batch-max N, --batch-window-ms MS, --workers N, --max-queue N, --write-behind-deletes
                         passed to the spawned plugin
  --plugin-node-arg ARG  extra node flag for the spawned plugin (repeatable), e.g.
                         --plugin-node-arg=--cpu-prof --plugin-node-arg=--cpu-prof-dir=/tmp/prof
  --plugin-log-level L   (default: warn)
  --socket PATH          use a running plugin instead ...
  --pid PID              ... whose pid this is (RSS; its namespace is where the kernel checks run;
                         refused if it is the host's root namespace)
Load:
  --concurrency N        clients (closed loop) or most lifecycles in flight (open loop) (default 32)
  --networks N           networks to create (subnets in 198.18.0.0/15, /20 each) (default 16)
  --lifecycles N         lifecycles to run (default 1000 unless --duration)
  --duration S           stop starting lifecycles after S seconds
  --rate R               open loop: start R lifecycles per second
  --ports N              published ports per endpoint (HostPort 0: ephemeral) (default 1)
  --keep N               long-lived endpoints created first (spread over the networks), removed last
  --sandbox              move each container end into a fresh netns after Join, back before Leave
  --lone N               first run N lifecycles one at a time on the idle plugin (lone latency)
  --timeout S            bound on the churn phase (default 600)
Output:
  --progress             live progress line on stderr (default: when stderr is a TTY)
  --json                 machine-readable result on stdout
  --no-leak-check        skip the kernel check
  --inject-leak KIND     test hook: leave a veth|rule|rule6 behind before the check
  --max-errors N         failed requests tolerated before exit 1 (default 0)
  --floor N              after the load, run the kernel floor (bench/kernel-floor: the same veth,
                         bridge and rule work by hand-written ip -batch + iptables-restore files in
                         batches of 256) for N lifecycles in the plugin's namespace, with as many
                         networks and --keep veths as the load had, and report the ratio
`;

class UsageError extends Error {}

function int(v: string | undefined, name: string, dflt: number | null, min = 0): number | null {
  if (v === undefined) return dflt;
  if (!/^\d+(\.\d+)?$/.test(v)) throw new UsageError(`--${name} must be a number, got ${JSON.stringify(v)}`);
  const n = Number(v);
  if (n < min) throw new UsageError(`--${name} must be at least ${min}`);
  return n;
}

function f(v: number, w = 7): string {
  return v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2).padStart(w);
}

export function formatReport(r: LoadResult): string {
  const c = r.config;
  const out: string[] = [];
  out.push(
    `batchbridge load: ${String(c.concurrency)} clients, ${String(c.networks)} networks (/${String(c.subnetPrefix)}), ${String(c.ports)} published port(s), ${c.rate === null ? 'closed loop' : `open loop at ${String(c.rate)}/s`}, keep ${String(c.keep)}${c.sandbox ? ', sandbox' : ''}`,
  );
  if (r.lone !== null) {
    out.push('lone requests on an idle plugin (p50 / max ms):');
    for (const k of CALLS) {
      const s = r.lone[k];
      if (s !== undefined) out.push(`  ${k.padEnd(28)} ${f(s.p50Ms)} / ${f(s.maxMs)}`);
    }
  }
  if (r.keep !== null) {
    out.push(`long-lived endpoints: ${r.keep.ok}/${r.keep.count} up in ${r.keep.seconds} s (${r.keep.perSec}/s)${r.keep.rssAfterMB !== null ? `, plugin RSS then ${r.keep.rssAfterMB} MB` : ''}`);
  }
  out.push(`lifecycles: ${r.lifecycles.ok} ok, ${r.lifecycles.failed} failed in ${r.seconds} s -> ${r.lifecyclesPerSec} lifecycles/s`);
  if (r.openLoop !== null) out.push(`open loop: target ${r.openLoop.targetRate}/s, largest backlog ${r.openLoop.maxBacklog}`);
  out.push(`${'call'.padEnd(30)} ${'count'.padStart(7)} ${'errors'.padStart(7)} ${'p50'.padStart(7)} ${'p90'.padStart(7)} ${'p99'.padStart(7)} ${'max'.padStart(7)}  ms`);
  for (const k of CALLS) {
    const s = r.calls[k];
    if (s === undefined) continue;
    out.push(`${k.padEnd(30)} ${String(s.count).padStart(7)} ${String(s.errors).padStart(7)} ${f(s.p50Ms)} ${f(s.p90Ms)} ${f(s.p99Ms)} ${f(s.maxMs)}`);
  }
  out.push(`errors: ${r.errors.total}`);
  for (const e of r.errors.samples) out.push(`  ${e.count} x ${e.message}`);
  if (r.plugin !== null) out.push(`plugin pid ${r.plugin.pid}: peak RSS ${r.plugin.peakRssMB} MB (VmHWM), RSS at end of churn ${r.plugin.endRssMB} MB; with its helper processes ${r.plugin.peakTreeRssMB} MB at most (sampled)`);
  if (r.sandbox !== null) out.push(`sandbox: ${r.sandbox.lines} ip lines in ${r.sandbox.batches} batches`);
  if (r.leakCheck === null) out.push('leak check: skipped');
  else if (r.leakCheck.ok) out.push('leak check: ok (links, iptables and ip6tables rules back to the baseline)');
  else {
    out.push(`LEAK CHECK FAILED: the kernel is not back where it started (${r.leakCheck.problems.length} difference(s)):`);
    for (const p of r.leakCheck.problems.slice(0, 50)) out.push(`  ${p}`);
    if (r.leakCheck.problems.length > 50) out.push(`  ... and ${r.leakCheck.problems.length - 50} more`);
  }
  if (r.floor !== undefined) {
    out.push(`kernel floor (same namespace, after the load): ${r.floor.lifecyclesPerSec} lifecycles/s -> batchbridge reaches ${(r.floor.ratio * 100).toFixed(0)} % of it`);
  }
  if (!r.ok) out.push(`FAILED: ${r.failures.join('; ')}`);
  return `${out.join('\n')}\n`;
}

export async function main(argv: string[]): Promise<number> {
  let values;
  try {
    values = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        spawn: { type: 'boolean' },
        socket: { type: 'string' },
        pid: { type: 'string' },
        'batch-max': { type: 'string' },
        'batch-window-ms': { type: 'string' },
        workers: { type: 'string' },
        'write-behind-deletes': { type: 'boolean' },
        'max-queue': { type: 'string' },
        'plugin-node-arg': { type: 'string', multiple: true },
        'plugin-log-level': { type: 'string' },
        concurrency: { type: 'string' },
        networks: { type: 'string' },
        lifecycles: { type: 'string' },
        duration: { type: 'string' },
        rate: { type: 'string' },
        ports: { type: 'string' },
        keep: { type: 'string' },
        sandbox: { type: 'boolean' },
        lone: { type: 'string' },
        timeout: { type: 'string' },
        progress: { type: 'boolean' },
        json: { type: 'boolean' },
        'no-leak-check': { type: 'boolean' },
        'inject-leak': { type: 'string' },
        'max-errors': { type: 'string' },
        floor: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }).values;
  } catch (e) {
    process.stderr.write(`load: ${(e as Error).message}\n${HELP}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  let plugin: PluginHandle | null = null;
  try {
    if (values.spawn === (values.socket !== undefined)) throw new UsageError('give either --spawn or --socket PATH --pid PID');
    const inject = values['inject-leak'];
    if (inject !== undefined && !['veth', 'rule', 'rule6'].includes(inject)) throw new UsageError('--inject-leak must be veth, rule or rule6');
    if (inject !== undefined && values['no-leak-check']) throw new UsageError('--inject-leak needs the leak check');
    const concurrency = int(values.concurrency, 'concurrency', 32, 1) as number;
    const networks = int(values.networks, 'networks', 16, 1) as number;
    const durationS = int(values.duration, 'duration', null, 0);
    const lifecycles = int(values.lifecycles, 'lifecycles', durationS === null ? 1000 : null, 0);
    const rate = int(values.rate, 'rate', null, 0);
    const opts: Omit<LoadOptions, 'socketPath' | 'pluginPid' | 'nsPath'> = {
      concurrency,
      networks,
      lifecycles,
      durationS,
      rate: rate === 0 ? null : rate,
      ports: int(values.ports, 'ports', 1) as number,
      keep: int(values.keep, 'keep', 0) as number,
      sandbox: values.sandbox === true,
      leakCheck: values['no-leak-check'] !== true,
      injectLeak: (inject ?? null) as LeakKind | null,
      timeoutS: int(values.timeout, 'timeout', 600, 1) as number,
      progress: values.progress === true || (values.progress === undefined && process.stderr.isTTY === true && values.json !== true),
      lone: int(values.lone, 'lone', 0) as number,
    };
    let socketPath: string;
    let pid: number | null;
    let nsPath: string | null;
    if (values.spawn) {
      const bm = int(values['batch-max'], 'batch-max', null, 1);
      const bw = int(values['batch-window-ms'], 'batch-window-ms', null, 0);
      const wk = int(values.workers, 'workers', null, 1);
      const mq = int(values['max-queue'], 'max-queue', null, 1);
      plugin = await spawnPlugin({
        ...(bm !== null ? { batchMax: bm } : {}),
        ...(bw !== null ? { batchWindowMs: bw } : {}),
        ...(wk !== null ? { workers: wk } : {}),
        ...(mq !== null ? { maxQueue: mq } : {}),
        ...(values['write-behind-deletes'] === true ? { writeBehindDeletes: true } : {}),
        nodeArgs: values['plugin-node-arg'] ?? [],
        logLevel: values['plugin-log-level'] ?? 'warn',
      });
      ({ socketPath, pid, nsPath } = plugin);
    } else {
      for (const k of ['batch-max', 'batch-window-ms', 'workers', 'max-queue', 'plugin-node-arg', 'write-behind-deletes'] as const) {
        if (values[k] !== undefined) throw new UsageError(`--${k} only applies with --spawn`);
      }
      if (values.pid === undefined) throw new UsageError('--socket needs --pid PID of the plugin (RSS, and its namespace for the kernel checks)');
      pid = int(values.pid, 'pid', null, 1);
      socketPath = values.socket as string;
      nsPath = `/proc/${String(pid)}/ns/net`;
      if (!existsSync(nsPath)) throw new UsageError(`no process ${String(pid)}`);
      if (isInitNetns(nsPath)) throw new UsageError(`plugin ${String(pid)} runs in the host's root network namespace: the harness only loads plugins in throwaway namespaces (use --spawn)`);
    }
    const result = await runLoad({ ...opts, socketPath, pluginPid: pid, nsPath });
    const maxErrors = int(values['max-errors'], 'max-errors', 0) as number;
    if (!result.ok && result.failures.length === 1 && result.failures[0]?.endsWith('request(s) failed') && result.errors.total <= maxErrors) {
      result.ok = true;
      result.failures = [];
    }
    const floorN = int(values.floor, 'floor', null, 1);
    if (floorN !== null) {
      const floorJs = fileURLToPath(new URL('../../bench/kernel-floor.js', import.meta.url));
      // Same bridges count, and as many long-lived veths as --keep left on them during the load.
      const floorArgs = ['--json', '--lifecycles', String(floorN), '--networks', String(result.config.networks), '--keep', String(result.config.keep)];
      const out = await runOk(inNetns(nsPath, [process.execPath, floorJs, ...floorArgs]));
      const best = (JSON.parse(out) as { best: FloorResult }).best;
      result.floor = { ...best, ratio: Math.round((result.lifecyclesPerSec / best.lifecyclesPerSec) * 1000) / 1000 };
    }
    if (plugin !== null) {
      const st = await plugin.stop();
      if (st.exitCode !== 0) {
        result.ok = false;
        result.failures.push(`plugin exited ${String(st.exitCode)}; log tail:\n${st.logTail}`);
      }
      plugin = null;
    }
    process.stdout.write(values.json ? `${JSON.stringify(result, null, 2)}\n` : formatReport(result));
    return result.ok ? 0 : 1;
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`load: ${e.message}\nRun with --help for usage.\n`);
      return 2;
    }
    process.stderr.write(`load: ${e instanceof Error ? e.message : String(e)}\n`);
    if (plugin !== null) process.stderr.write(`plugin log tail:\n${plugin.logTail()}\n`);
    return 1;
  } finally {
    if (plugin !== null) await plugin.stop();
  }
}

// Entry point when run directly (not when imported by bench/ or tests).
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`load: ${String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
