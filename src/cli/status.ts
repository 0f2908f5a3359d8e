// `batchbridge status`: asks the running plugin (/BatchBridge.Status) and prints its health,
// counts, batching, last reconciliation, watchdog and settings. The exit status says whether it
// is healthy, for scripts and monitoring checks.
import { parseArgs } from 'node:util';
import type { PipelineStatus, PluginStatus } from '../engine/status.js';
import { askPlugin } from './plugin-client.js';
import { locatePluginSocket } from './socket-lookup.js';

export const STATUS_HELP = `Usage: batchbridge status [options]

Asks the running plugin over its socket for its version, uptime, effective settings, networks,
endpoints and published ports, batching per pipeline (batches, mean size, queue), the last
reconciliation and its repairs, and the firewall watchdog's state; says whether it is healthy.

Unhealthy means one of: book changes that could not be written (the disk is full), a last
reconciliation that failed or could not fix something, a firewall watchdog whose last restore
failed or whose last check could not read the rules, or the plugin shutting down.

Options:
  --name NAME       the plugin to ask (default: batchbridge; NAME:TAG for a managed plugin)
  --socket-dir DIR  where its socket is (default: /run/docker/plugins)
  --json            print the whole answer as JSON
  -h, --help        this text

Exit status: 0 healthy, 1 unhealthy, 2 bad usage, 3 no plugin answers at the socket.
`;

function duration(seconds: number): string {
  const d = Math.floor(seconds / 86_400);
  const h = Math.floor((seconds % 86_400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  return d > 0 ? `${d}d ${h}h ${m}m` : h > 0 ? `${h}h ${m}m` : `${m}m ${seconds % 60}s`;
}

function counts(o: Readonly<Record<string, number | undefined>>): string {
  const parts = Object.entries(o).filter(([, n]) => (n ?? 0) > 0).map(([k, n]) => `${k} ${n ?? 0}`);
  return parts.length === 0 ? 'none' : parts.join(', ');
}

function pipelineLine(name: string, p: PipelineStatus): string {
  return `  ${name.padEnd(9)} ${p.batches} batch(es), mean size ${p.meanSize}, ${p.queued} queued, ${p.running} running; failures: ${counts(p.failures)}`;
}

export function formatStatus(s: PluginStatus): string {
  const out: string[] = [];
  out.push(`batchbridge ${s.version}, pid ${s.pid}, up ${duration(s.uptimeSeconds)} (since ${s.startedAt})`);
  out.push(s.healthy ? 'health: healthy' : `health: UNHEALTHY\n${s.problems.map((p) => `  - ${p}`).join('\n')}`);
  out.push(`networks ${s.counts.networks}, endpoints ${s.counts.endpoints}, published ports ${s.counts.publishedPorts}; ${s.inFlight} endpoint operation(s) in flight`);
  out.push('pipelines:');
  for (const [name, p] of Object.entries(s.pipelines)) out.push(pipelineLine(name, p));
  out.push(`books: ${s.unsavedBookChanges === 0 ? 'written' : `${s.unsavedBookChanges} change(s) not written yet`}`);
  const last = s.reconcile.last;
  out.push(last === null ? 'last reconciliation: none yet' : `last reconciliation: ${last.at} (${last.trigger}, ${last.ms} ms): ${last.ok ? 'ok' : 'FAILED'}${last.error === null ? '' : `: ${last.error}`}; repairs: ${counts(last.repairs)}`);
  for (const f of last?.findings ?? []) out.push(`  ${f.kind} ${f.subject}: ${f.detail}`);
  out.push(`reconciliations since start: ${s.reconcile.runs.ok} ok, ${s.reconcile.runs.failed} failed, ${s.reconcile.runs.dry_run} dry run(s); repairs: ${counts(s.reconcile.repairs)}`);
  const w = s.watchdog;
  out.push(w === null ? 'firewall watchdog: not running' : `firewall watchdog: every ${w.intervalMs} ms; ${w.checks} check(s), ${w.checkFailures} failed; ${w.restores} restore(s)${w.lastRestoreAt === null ? '' : ` (last ${w.lastRestoreAt})`}, ${w.restoreFailures} failed${w.lastError === null ? '' : `; last error: ${w.lastError}`}`);
  out.push(`tool session restarts: ip ${s.toolSessionRestarts.ip}, iptables-restore ${s.toolSessionRestarts.iptablesRestore}`);
  out.push('settings:');
  for (const [k, v] of Object.entries(s.settings)) out.push(`  ${k} = ${v}`);
  return `${out.join('\n')}\n`;
}

export async function runStatus(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    strict: true,
    allowPositionals: false,
    options: { name: { type: 'string' }, 'socket-dir': { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help === true) {
    process.stdout.write(STATUS_HELP);
    return 0;
  }
  const socketPath = locatePluginSocket(values.name, values['socket-dir']);
  const r = await askPlugin(socketPath, '/BatchBridge.Status', {}, (v) => (v.Status !== null && typeof v.Status === 'object' ? (v.Status as PluginStatus) : null), 30_000);
  if (r.kind !== 'answered') {
    process.stderr.write(`batchbridge: ${r.kind === 'failed' ? r.message : `no plugin answers at ${socketPath}`}\n`);
    return 3;
  }
  process.stdout.write(values.json === true ? `${JSON.stringify(r.body, null, 2)}\n` : formatStatus(r.body));
  return r.body.healthy ? 0 : 1;
}
