// `batchbridge cleanup`: uninstall. Refused while a plugin serves from the state dir (or answers
// at its socket, or serves this namespace); otherwise, holding the state dir's lock and the
// namespace's guard like an offline reconcile (src/instance/claim.ts), it removes every
// interface, rule, chain and hook of ours (src/engine/uninstall.ts), then the books, and prints
// what it removed. With --dry-run it prints what it would remove and changes nothing.
import { existsSync, lstatSync, rmdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULT_CNI_SOCKET } from '../cni/cni-server.js';
import { findCniLeftovers, socketAnswers } from '../cni/leftovers.js';
import { applyUninstall, planUninstall, readLinks, uninstallFirewall } from '../engine/uninstall.js';
import { createFirewall } from '../firewall/index.js';
import { claimBooks } from '../instance/claim.js';
import { describeInstance, LOCK_FILE, OWNER_FILE, stateDirHolder } from '../state/instance-lock.js';
import { BOOKS_FILE, BOOKS_SIDE_FILES } from '../state/state-dir.js';
import { readBooksSnapshot } from '../state/sqlite-store.js';
import { toolEnv } from '../tools/env.js';
import { DEFAULT_TOOLS, type ToolPaths } from '../tools/paths.js';
import { askPlugin } from './plugin-client.js';
import { locatePluginSocket } from './socket-lookup.js';
import { UsageError } from './usage.js';

export const CLEANUP_HELP = `Usage: batchbridge cleanup --state-dir DIR [options]

Uninstalls batchbridge from this host's network namespace: removes every bridge and veth of
ours (those the books at DIR name and those carrying their ownership mark; never anything by its
name), every firewall rule, chain and hook of ours (iptables and ip6tables), a stale plugin
socket, the CNI side's stale socket and DEL spool (and with --cni-bin-dir the forwarder
cni-install put there), and the books; then prints what it removed. A bridge the user made keeps its state: the
addresses we added come off, and it is set down again if it was down. Containers still attached
lose their network: remove them (and their networks, in dockerd) first.

It refuses, changing nothing, while a plugin serves from DIR, answers at the socket or at the
CNI socket, or serves this network namespace: stop it first (systemctl stop batchbridge).

Options:
  --state-dir DIR   the books to uninstall (required; usually /var/lib/batchbridge)
  --name NAME       the plugin's name, for its socket (default: batchbridge; NAME:TAG for a
                    managed plugin)
  --socket-dir DIR  where its socket is (default: /run/docker/plugins)
  --cni-socket PATH its CNI socket, as given to serve (default: ${DEFAULT_CNI_SOCKET})
  --cni-bin-dir DIR also remove DIR/batchbridge-cni, if it is the forwarder cni-install wrote
  --cni-conf-dir DIR name the conflists there that use batchbridge-cni (they are not removed)
  --dry-run         print what would be removed; remove nothing
  --json            print the report as JSON
  -h, --help        this text

Exit status: 0 when everything was removed, 1 when something could not be removed or cleanup
was refused, 2 on bad usage.
`;

interface Report {
  readonly dryRun: boolean;
  readonly removed: string[];
  readonly failed: string[];
  readonly notes: string[];
}

/** Interfaces and firewall (holding the claim). */
async function removeKernelObjects(stateDir: string, tools: ToolPaths, dryRun: boolean, r: Report): Promise<void> {
  const env = toolEnv(tools);
  const books = readBooksSnapshot(stateDir);
  if (books === null) r.notes.push(`no books at ${stateDir}: no interface is known to be ours, none removed`);
  else {
    const plan = planUninstall({ ...books, links: await readLinks(env) });
    r.removed.push(...plan.items);
    if (!dryRun) r.failed.push(...(await applyUninstall(env, plan)));
  }
  try {
    r.removed.push(...(await uninstallFirewall(createFirewall('iptables', env), dryRun)).map((l) => `firewall: ${l}`));
  } catch (err) {
    r.failed.push(`firewall: ${(err as Error).message}`);
  }
}

function removeFile(path: string, dryRun: boolean, r: Report, label = `file ${path}`): void {
  try {
    if (!lstatSync(path).isFile() && !lstatSync(path).isSocket()) return;
  } catch {
    return; // absent
  }
  r.removed.push(label);
  if (dryRun) return;
  try {
    unlinkSync(path);
  } catch (err) {
    r.failed.push(`file ${path}: ${(err as Error).message}`);
  }
}

async function cleanupHoldingClaim(o: Options, tools: ToolPaths, r: Report, existed: boolean): Promise<void> {
  const { stateDir, socketPath, dryRun } = o;
  await removeKernelObjects(stateDir, tools, dryRun, r);
  // The books go only once nothing of ours is left that they would be needed to find again.
  if (r.failed.length > 0) {
    r.failed.push(`the books at ${stateDir} are kept (something of ours could not be removed; run cleanup again)`);
    return;
  }
  // The lock file of a state dir the claim just made is removed below, unreported.
  for (const f of [BOOKS_FILE, ...BOOKS_SIDE_FILES, ...(existed ? [LOCK_FILE] : [])]) removeFile(join(stateDir, f), dryRun, r);
  // Nobody answers there (checked before the claim): a stale socket of a killed plugin.
  removeFile(socketPath, dryRun, r);
  const cni = findCniLeftovers(o.cniSocket, o.cniBinDir, o.cniConfDir);
  for (const f of cni.files) removeFile(f.path, dryRun, r, f.label);
  for (const d of cni.dirs) removeEmptyDir(d, dryRun, r);
  r.notes.push(...cni.notes);
}

interface Options {
  readonly stateDir: string;
  readonly socketPath: string;
  readonly cniSocket: string;
  readonly cniBinDir: string | null;
  readonly cniConfDir: string | null;
  readonly dryRun: boolean;
  readonly json: boolean;
}

function parse(args: string[]): Options | null {
  const { values } = parseArgs({
    args,
    strict: true,
    allowPositionals: false,
    options: {
      'state-dir': { type: 'string' },
      name: { type: 'string' },
      'socket-dir': { type: 'string' },
      'cni-socket': { type: 'string' },
      'cni-bin-dir': { type: 'string' },
      'cni-conf-dir': { type: 'string' },
      'dry-run': { type: 'boolean' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help === true) return null;
  const stateDir = values['state-dir'];
  if (stateDir === undefined || stateDir === '') throw new UsageError('--state-dir DIR is required: the books of the batchbridge to uninstall');
  const socketPath = locatePluginSocket(values.name, values['socket-dir']);
  const cniSocket = values['cni-socket'] ?? DEFAULT_CNI_SOCKET;
  if (cniSocket === '') throw new UsageError('--cni-socket PATH must not be empty');
  return {
    stateDir,
    socketPath,
    cniSocket,
    cniBinDir: values['cni-bin-dir'] ?? null,
    cniConfDir: values['cni-conf-dir'] ?? null,
    dryRun: values['dry-run'] === true,
    json: values.json === true,
  };
}

function refusal(o: Options, answered: boolean, cniAnswered: boolean): string | null {
  const { stateDir, socketPath } = o;
  if (answered) return `a plugin answers at ${socketPath}: stop it first (systemctl stop batchbridge); nothing was changed`;
  if (cniAnswered) return `a daemon answers at the CNI socket ${o.cniSocket}: stop it first (systemctl stop batchbridge); nothing was changed`;
  const holder = stateDirHolder(stateDir);
  return holder === null ? null : `the state dir ${stateDir} is in use by ${describeInstance(holder)}: stop it first; nothing was changed`;
}

function print(r: Report, json: boolean): void {
  if (json) {
    process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
    return;
  }
  const verb = r.dryRun ? 'would remove' : 'removed';
  if (r.removed.length === 0) process.stdout.write(`nothing of batchbridge's found: nothing ${r.dryRun ? 'would be' : 'was'} removed\n`);
  for (const item of r.removed) process.stdout.write(`${verb}: ${item}\n`);
  for (const n of r.notes) process.stdout.write(`note: ${n}\n`);
  for (const f of r.failed) process.stdout.write(`FAILED: ${f}\n`);
}

export async function runCleanup(args: string[], tools: ToolPaths = DEFAULT_TOOLS): Promise<number> {
  const o = parse(args);
  if (o === null) {
    process.stdout.write(CLEANUP_HELP);
    return 0;
  }
  const asked = await askPlugin(o.socketPath, '/NetworkDriver.GetCapabilities', {}, (v) => v, 5000);
  const refused = refusal(o, asked.kind === 'answered', await socketAnswers(o.cniSocket));
  if (refused !== null) {
    process.stderr.write(`batchbridge: cleanup refused: ${refused}\n`);
    return 1;
  }
  const existed = existsSync(o.stateDir);
  // The lock and the namespace's guard, as an offline reconcile takes them (refuses otherwise).
  const claim = await claimBooks(o.stateDir);
  const r: Report = { dryRun: o.dryRun, removed: [], failed: [], notes: [] };
  try {
    await cleanupHoldingClaim(o, tools, r, existed);
  } finally {
    await claim.release();
  }
  // The lock's owner record went with the release; an emptied state dir goes too, and one that
  // claimBooks made because it was missing.
  if (!existed) removeFile(join(o.stateDir, LOCK_FILE), false, { dryRun: false, removed: [], failed: [], notes: [] });
  if (!o.dryRun || !existed) tryRemoveDir(o.stateDir, existed, r);
  print(r, o.json);
  return r.failed.length === 0 ? 0 : 1;
}

function tryRemoveDir(dir: string, existed: boolean, r: Report): void {
  try {
    if (existsSync(join(dir, OWNER_FILE))) return;
    rmdirSync(dir);
    if (existed) r.removed.push(`directory ${dir} (left empty)`);
  } catch {
    // not empty: other files are not ours to remove
  }
}

function removeEmptyDir(dir: string, dryRun: boolean, r: Report): void {
  r.removed.push(`directory ${dir}`);
  if (dryRun) return;
  try {
    rmdirSync(dir);
  } catch (err) {
    r.failed.push(`directory ${dir}: ${(err as Error).message}`);
  }
}
