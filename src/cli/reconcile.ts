// `batchbridge reconcile`: compare the kernel with the books and fix what differs. When the
// plugin is running, it is asked over its socket (so the fix happens under its exclusive gate,
// with its in-memory books); otherwise the books are opened directly and the kernel fixed here,
// holding the state dir's lock and the namespace's guard like a plugin (src/instance/claim.ts),
// so it never runs on books or in a namespace a live plugin holds.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Books } from '../engine/books.js';
import type { ReconcileReport } from '../engine/reconcile/plan.js';
import { formatReport, reconcile } from '../engine/reconcile/run.js';
import { createFirewall } from '../firewall/index.js';
import { SqliteStateStore } from '../state/sqlite-store.js';
import { toolEnv } from '../tools/env.js';
import { DEFAULT_TOOLS, type ToolPaths } from '../tools/paths.js';
import { claimBooks } from '../instance/claim.js';
import { describeInstance, stateDirHolder } from '../state/instance-lock.js';
import { askPlugin as askPluginRoute } from './plugin-client.js';
import { locatePluginSocket } from './socket-lookup.js';

export const RECONCILE_HELP = `Usage: batchbridge reconcile [options]

Compares the kernel with the books and fixes what differs, then prints what it found. It asks
the running plugin over its socket; if none listens there, it opens the books itself and fixes
the kernel of the network namespace it runs in, holding the state dir's lock and the namespace
like a plugin. When another plugin holds those books it asks that one instead, and it refuses
when anything else holds them or serves the namespace.

Options:
  --state-dir DIR   the books to use when the plugin is not running (default: /var/lib/batchbridge)
  --name NAME       the plugin to ask (default: batchbridge; NAME:TAG for a managed plugin)
  --socket-dir DIR  where its socket is (default: /run/docker/plugins)
  --dry-run         report what would be done; change nothing
  --json            print the report as JSON
  -h, --help        this text

It re-creates missing bridges and addresses of booked networks, re-enslaves detached veths,
finishes or undoes work a crash interrupted, unbooks endpoints whose veth vanished, removes
orphan veths and bridges (those with our ownership mark that the books do not explain), and
rewrites batchbridge's firewall chains when they drifted.

Exit status: 0 when kernel and books agree or every fix worked, 1 when a fix failed or the
plugin could not be asked, 2 on bad usage.
`;

type Asked = { kind: 'answered'; report: ReconcileReport } | { kind: 'not-running' } | { kind: 'failed'; message: string };

async function askPlugin(socketPath: string, dryRun: boolean): Promise<Asked> {
  const r = await askPluginRoute(socketPath, '/BatchBridge.Reconcile', { DryRun: dryRun }, (v) => (v.Report !== undefined && v.Report !== null ? (v.Report as ReconcileReport) : null));
  return r.kind === 'answered' ? { kind: 'answered', report: r.body } : r;
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
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help === true) {
    process.stdout.write(RECONCILE_HELP);
    return 0;
  }
  const stateDir = values['state-dir'] ?? '/var/lib/batchbridge';
  const socketPath = locatePluginSocket(values.name, values['socket-dir']);
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
