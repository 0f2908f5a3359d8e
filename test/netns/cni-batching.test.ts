// Concurrent CNI requests share the kernel work (issue 12, item 6): 32 ADDs, then 32 DELs, each
// through the batchbridge-cni executable against a real daemon, take far fewer host-side ip runs
// and firewall transactions than pods. Counted from the daemon's own read-out: at debug level it
// logs every batch ("batch": pipeline, size, ipSpawns — ip scripts, in a process or a long-lived
// ip session; in the sandbox pipeline one process per pod — and fwSpawns — iptables-restore
// transactions; src/engine/batch-log.ts).
// The work inside each pod's namespace is one ip process per pod (docs/cni.md, "Cost per pod"),
// and that is asserted too.
//
// To make the 32 requests one burst on a loaded machine, the daemon is stopped (SIGSTOP) while
// the 32 executables connect and send their frames, and continued once all 32 connections wait
// in its socket's accept queue; then they reach the engine together, as a burst of pods would.
//
// Runs inside `unshare --net` (the runner's private namespace); pod namespaces bbt-cb-<hex>-<n>.
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { cniCall, forwarderBuilt, type CniCallResult } from '../helpers/cni-call.js';
import { randomHex, run, runOk, sleep } from '../helpers/proc.js';
import { assertPrivateNetns, checkConsistency, cleanUpAfter, readBooks, startPlugin, tail, tempDir, type PluginProc } from './crash-kit.js';

const PODS = 32;

interface BatchLine {
  msg: string;
  pipeline: string;
  size: number;
  failed: number;
  ipSpawns?: number;
  fwSpawns?: number;
}

/** The daemon's "batch" lines after byte `from` of its log, summed per pipeline. */
function batchesSince(logPath: string, from: number): Map<string, { batches: number; ops: number; failed: number; ipRuns: number; fwTransactions: number }> {
  const out = new Map<string, { batches: number; ops: number; failed: number; ipRuns: number; fwTransactions: number }>();
  for (const line of readFileSync(logPath).subarray(from).toString('utf8').split('\n')) {
    if (!line.includes('"msg":"batch"')) continue;
    const b = JSON.parse(line) as BatchLine;
    if (b.msg !== 'batch') continue;
    const s = out.get(b.pipeline) ?? { batches: 0, ops: 0, failed: 0, ipRuns: 0, fwTransactions: 0 };
    s.batches++;
    s.ops += b.size;
    s.failed += b.failed;
    s.ipRuns += b.ipSpawns ?? 0;
    s.fwTransactions += b.fwSpawns ?? 0;
    out.set(b.pipeline, s);
  }
  return out;
}

/** Accept-queue length of the listening unix socket at `path` (ss: Recv-Q). */
async function acceptQueue(path: string): Promise<number> {
  const r = await run(['ss', '-xlH', 'src', path]);
  const f = r.stdout.trim().split(/\s+/);
  return f.length > 2 ? Number(f[2]) : 0;
}

/** Runs `calls` with the daemon stopped until all of them wait in its accept queue. */
async function burst(plugin: PluginProc, cniSocket: string, calls: () => Array<Promise<CniCallResult>>): Promise<CniCallResult[]> {
  process.kill(plugin.pid, 'SIGSTOP');
  let pending: Array<Promise<CniCallResult>> = [];
  try {
    pending = calls();
    const deadline = Date.now() + 20_000;
    while ((await acceptQueue(cniSocket)) < pending.length && Date.now() < deadline) await sleep(20);
  } finally {
    process.kill(plugin.pid, 'SIGCONT');
  }
  return Promise.all(pending);
}

test('32 concurrent ADDs, then 32 DELs, through the executable share ip runs and firewall transactions', { timeout: 120_000 }, async (t) => {
  assertPrivateNetns();
  const fwd = forwarderBuilt();
  const dir = await tempDir('bbt-cnibatch-');
  const name = 'bbcnibatch';
  const stateDir = join(dir.path, 'state');
  const socketDir = join(dir.path, 'sock');
  const logPath = join(dir.path, 'plugin.log');
  const cniSocket = join(dir.path, 'cni.sock');
  const tag = randomHex(3);
  const pods = Array.from({ length: PODS + 1 }, (_, i) => `bbt-cb-${tag}-${i}`);
  let plugin: PluginProc | null = null;
  cleanUpAfter(t, dir, () => plugin, async () => {
    for (const p of pods) await run(['ip', 'netns', 'del', p]);
  });
  plugin = await startPlugin({ name, stateDir, socketDir, logPath, extraArgs: ['--cni-socket', cniSocket, '--log-level', 'debug', '--reconcile-interval-ms', '0'] });
  for (const p of pods) await runOk(['ip', 'netns', 'add', p]);

  const conf = (i: number) =>
    JSON.stringify({
      cniVersion: '1.0.0',
      name: 'cnibatch',
      type: 'batchbridge-cni',
      bridge: 'bbcb0',
      isGateway: true,
      isDefaultGateway: true,
      ipMasq: true,
      ipam: { type: 'batchbridge', ranges: [[{ subnet: '198.18.88.0/24' }]] },
      capabilities: { portMappings: true },
      runtimeConfig: { portMappings: [{ hostPort: 21000 + i, containerPort: 80, protocol: 'tcp' }] },
    });
  const call = (command: 'ADD' | 'DEL', i: number) =>
    cniCall(fwd, { command, containerId: `cb${i}`, netns: `/run/netns/${pods[i]}`, ifName: 'eth0', path: '/usr/lib/cni', stdin: conf(i), env: { BATCHBRIDGE_CNI_SOCKET: cniSocket }, timeoutMs: 60_000 });
  const ok = (r: CniCallResult, what: string) => assert.equal(r.code, 0, `${what}: ${r.stdout} ${r.stderr}\n${tail(logPath)}`);

  // The network is made by the first ADD (bridge work, a batch of its own): done before counting.
  ok(await call('ADD', PODS), 'first ADD');
  ok(await call('DEL', PODS), 'first DEL');

  let from = statSync(logPath).size;
  const adds = await burst(plugin, cniSocket, () => Array.from({ length: PODS }, (_, i) => call('ADD', i)));
  adds.forEach((r, i) => ok(r, `ADD ${i}`));
  const added = batchesSince(logPath, from);
  const veth = added.get('veth');
  const sandbox = added.get('sandbox');
  const fw = added.get('firewall');
  assert.ok(veth && sandbox && fw, `batches of the ADDs: ${JSON.stringify([...added])}`);
  assert.equal(veth.ops, PODS, 'one veth creation per pod');
  assert.ok(veth.ipRuns <= PODS / 4, `host-side ip runs for ${PODS} ADDs: ${veth.ipRuns}`);
  assert.equal(fw.ops, PODS, 'one port programming per pod');
  assert.ok(fw.fwTransactions <= PODS / 4, `firewall transactions for ${PODS} ADDs: ${fw.fwTransactions}`);
  assert.equal(sandbox.ops, PODS);
  assert.equal(sandbox.ipRuns, PODS, 'inside the pods: one ip process per pod, no more');
  assert.equal(veth.failed + fw.failed + sandbox.failed, 0);
  // Every pod is set up: its address on eth0, up, with the default route.
  for (let i = 0; i < PODS; i++) {
    const addr = JSON.parse(await runOk(['ip', '-n', pods[i] as string, '-j', 'addr', 'show', 'dev', 'eth0'])) as Array<{ flags: string[]; addr_info: Array<{ local: string }> }>;
    assert.ok(addr[0]?.flags.includes('UP') && addr[0].addr_info.some((a) => a.local.startsWith('198.18.88.')), `pod ${i}: ${JSON.stringify(addr)}`);
    assert.match(await runOk(['ip', '-n', pods[i] as string, 'route', 'show', 'default']), /via 198\.18\.88\.1 dev eth0/);
  }
  assert.equal(readBooks(stateDir).endpoints.size, PODS);

  from = statSync(logPath).size;
  const dels = await burst(plugin, cniSocket, () => Array.from({ length: PODS }, (_, i) => call('DEL', i)));
  dels.forEach((r, i) => ok(r, `DEL ${i}`));
  const deleted = batchesSince(logPath, from).get('delete');
  assert.ok(deleted, 'deletion batches');
  assert.equal(deleted.ops, PODS);
  assert.ok(deleted.ipRuns <= PODS / 4, `ip runs for ${PODS} DELs: ${deleted.ipRuns}`);
  assert.ok(deleted.fwTransactions <= PODS / 4, `firewall transactions for ${PODS} DELs: ${deleted.fwTransactions}`);
  const books = readBooks(stateDir);
  assert.equal(books.endpoints.size, 0);
  assert.deepEqual(await checkConsistency(books), [], 'no veth, rule or booking left');
  t.diagnostic(JSON.stringify({ add: Object.fromEntries(added), del: deleted }));
  assert.equal((await plugin.stop()).code, 0);
});
