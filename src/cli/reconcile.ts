// `batchbridge reconcile`: compare the kernel with the books and fix what differs. When the
// plugin is running, it is asked over its socket (so the fix happens under its exclusive gate,
// with its in-memory books); otherwise the books are opened directly and the kernel fixed here,
// holding the state dir's lock and the namespace's guard like a plugin (src/instance/claim.ts),
// so it never runs on books or in a namespace a live plugin holds.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Agent, request } from 'undici';
import { Books } from '../engine/books.js';
import type { ReconcileReport } from '../engine/reconcile/plan.js';
import { formatReport, reconcile } from '../engine/reconcile/run.js';
import { createFirewall } from '../firewall/index.js';
import { SqliteStateStore } from '../state/sqlite-store.js';
import { toolEnv } from '../tools/env.js';
import { DEFAULT_TOOLS, type ToolPaths } from '../tools/paths.js';
import { claimBooks } from '../instance/claim.js';
import { describeInstance, stateDirHolder } from '../state/instance-lock.js';
import { resolvePluginSocket, socketBaseName } from './socket-lookup.js';

type Asked = { kind: 'answered'; report: ReconcileReport } | { kind: 'not-running' } | { kind: 'failed'; message: string };

async function askPlugin(socketPath: string, dryRun: boolean): Promise<Asked> {
  if (!existsSync(socketPath)) return { kind: 'not-running' };
  const dispatcher = new Agent({ connect: { socketPath }, headersTimeout: 600_000, bodyTimeout: 600_000 });
  try {
    const res = await request('http://localhost/BatchBridge.Reconcile', { method: 'POST', body: JSON.stringify({ DryRun: dryRun }), dispatcher });
    const body = (await res.body.json()) as { Report?: ReconcileReport; Err?: string };
    if (res.statusCode !== 200 || body.Report === undefined) return { kind: 'failed', message: `the plugin answered ${res.statusCode}: ${body.Err ?? 'no report'}` };
    return { kind: 'answered', report: body.Report };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // A socket file nobody listens on is what a killed plugin leaves behind.
    if (code === 'ECONNREFUSED' || code === 'ENOENT') return { kind: 'not-running' };
    return { kind: 'failed', message: `cannot reach the plugin at ${socketPath}: ${(err as Error).message}` };
  } finally {
    await dispatcher.close();
  }
}

async function reconcileOffline(stateDir: string, tools: ToolPaths, dryRun: boolean): Promise<ReconcileReport> {
  const claim = await claimBooks(stateDir);
  let store: SqliteStateStore | null = null;
  try {
    store = new SqliteStateStore(stateDir);
    const books = new Books();
    books.load(store.loadNetworks(), store.loadEndpoints());
    const env = toolEnv(tools);
    return await reconcile({ books, store, tools: env, firewall: createFirewall('iptables', env), ports: null, log: null, ownerGroup: store.ownerGroup() }, { dryRun });
  } finally {
    store?.close();
    await claim.release();
  }
}

export async function runReconcile(args: string[], tools: ToolPaths = DEFAULT_TOOLS): Promise<number> {
  const { values } = parseArgs({
    args,
    strict: true,
    allowPositionals: false,
    options: {
      'state-dir': { type: 'string' },
      name: { type: 'string' },
      'socket-dir': { type: 'string' },
      'dry-run': { type: 'boolean' },
      json: { type: 'boolean' },
    },
  });
  const name = socketBaseName(values.name ?? 'batchbridge');
  if (name === null) {
    process.stderr.write(`batchbridge: invalid --name ${JSON.stringify(values.name)}\n`);
    return 2;
  }
  const stateDir = values['state-dir'] ?? '/var/lib/batchbridge';
  let socketPath: string;
  try {
    socketPath = resolvePluginSocket(values['socket-dir'] ?? '/run/docker/plugins', name);
  } catch (err) {
    process.stderr.write(`batchbridge: ${(err as Error).message}\n`);
    return 1;
  }
  const dryRun = values['dry-run'] === true;

  let report: ReconcileReport;
  let where: string;
  const asked = await askPlugin(socketPath, dryRun);
  if (asked.kind === 'failed') {
    process.stderr.write(`batchbridge: ${asked.message}\n`);
    return 1;
  }
  if (asked.kind === 'answered') {
    report = asked.report;
    where = `running plugin at ${socketPath}`;
  } else {
    // A state dir without books is most likely a wrong --state-dir: opening it would start new
    // books, with an ownership mark of their own, and find nothing of ours to fix.
    if (!existsSync(join(stateDir, 'batchbridge.db'))) {
      process.stderr.write(`batchbridge: no books at ${stateDir} (batchbridge.db missing) and no plugin listening at ${socketPath}\n`);
      return 1;
    }
    // Not the plugin we were told about: maybe another one holds these books. Ask it, or refuse.
    const holder = stateDirHolder(stateDir);
    if (holder !== null) {
      const other = holder.role === 'serve' && holder.socketPath !== null && holder.socketPath !== socketPath ? await askPlugin(holder.socketPath, dryRun) : null;
      if (other?.kind !== 'answered') {
        process.stderr.write(`batchbridge: no plugin answers at ${socketPath}, and the books at ${stateDir} are held by ${describeInstance(holder)}; not reconciling them offline\n`);
        return 1;
      }
      report = other.report;
      where = `running plugin at ${holder.socketPath ?? '?'} (it holds ${stateDir})`;
    } else {
      report = await reconcileOffline(stateDir, tools, dryRun);
      where = `books at ${stateDir} (plugin not running)`;
    }
  }
  if (values.json) process.stdout.write(`${JSON.stringify({ source: where, ...report }, null, 2)}\n`);
  else process.stdout.write(`reconciled ${where}\n${formatReport(report)}`);
  return report.findings.some((f) => f.kind === 'error') ? 1 : 0;
}
