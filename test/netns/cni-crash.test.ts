// Crash safety of the CNI front end (issue 12, item 2): runtime-like workers churn pods through
// the batchbridge-cni executable — a fresh pod namespace, ADD with a host port, a while alive,
// DEL (sometimes a second DEL with an empty CNI_NETNS, as containerd sends) — while the daemon is
// killed with SIGKILL at random moments and restarted after a random downtime. As a runtime does,
// a worker whose ADD failed (the daemon died under it) sends DEL. DELs sent while the daemon is
// down, or that it died under, are recorded by the executable in its spool and must succeed.
// After every restart, with the workers parked:
//  - every DEL answered success; the spool is empty again (replayed), with no unreadable file;
//  - every pod whose ADD succeeded and that was not DELed is intact: its eth0 up with its address
//    in its namespace, booked with its host veth, address and port, its rules in place;
//  - every DELed pod is gone (its namespace is kept until here, so a lost DEL would show as an
//    eth0 still there): no eth0, no booking;
//  - the books hold exactly the live pods, and the kernel matches the books (veths, bridge,
//    rules: checkConsistency).
// Runs inside `unshare --net` (the runner's private namespace); pod namespaces bbt-cc-<hex>-<n>.
// Env knobs: BB_CNI_CRASH_KILLS (default 8), BB_CNI_CRASH_SEED.
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { cniCall, forwarderBuilt, type CniCallResult } from '../helpers/cni-call.js';
import { randomHex, run, runOk, sleep } from '../helpers/proc.js';
import { assertPrivateNetns, checkConsistency, cleanUpAfter, readBooks, startPlugin, tail, tempDir, type PluginProc } from './crash-kit.js';
import { rng } from '../helpers/rng.js';

const KILLS = Number(process.env.BB_CNI_CRASH_KILLS ?? 8);
const SEED = Number(process.env.BB_CNI_CRASH_SEED ?? Date.now() % 100000);
const WORKERS = 6;
const SUBNET = '198.18.92';

interface Pod {
  readonly id: string;
  readonly ns: string;
  readonly port: number;
  /** from the ADD result */
  host?: string;
  address?: string;
}

test('CNI: kill -9 at random points during ADD/DEL churn; no DEL lost, no pod leaked, kernel == books', { timeout: 240_000 }, async (t) => {
  assertPrivateNetns();
  const fwd = forwarderBuilt();
  const rand = rng(SEED);
  const dir = await tempDir('bbt-cnicrash-');
  const name = 'bbcnicrash';
  const stateDir = join(dir.path, 'state');
  const socketDir = join(dir.path, 'sock');
  const logPath = join(dir.path, 'plugin.log');
  const cniSocket = join(dir.path, 'cni.sock');
  const spoolDir = `${cniSocket}.spool`;
  const tag = randomHex(3);
  const namespaces = new Set<string>();
  let plugin: PluginProc | null = null;
  cleanUpAfter(t, dir, () => plugin, async () => {
    for (const n of namespaces) await run(['ip', 'netns', 'del', n]);
  });
  const start = (): Promise<PluginProc> =>
    startPlugin({ name, stateDir, socketDir, logPath, extraArgs: ['--cni-socket', cniSocket, '--reconcile-interval-ms', '0', '--workers', '2', ...(process.env.BB_CNI_CRASH_DEBUG === '1' ? ['--log-level', 'debug'] : [])] });
  plugin = await start();

  const conf = (port: number) =>
    JSON.stringify({
      cniVersion: '1.0.0',
      name: 'cnicrash',
      type: 'batchbridge-cni',
      bridge: 'bbcc0',
      isGateway: true,
      isDefaultGateway: true,
      ipMasq: true,
      ipam: { type: 'batchbridge', ranges: [[{ subnet: `${SUBNET}.0/24` }]] },
      capabilities: { portMappings: true },
      runtimeConfig: { portMappings: [{ HostPort: port, ContainerPort: 80, Protocol: 'tcp', HostIP: '' }] },
    });
  /** calls in flight, for the report when one never returns */
  const inFlight = new Map<number, string>();
  let callSeq = 0;
  const call = async (command: 'ADD' | 'DEL', pod: Pod, netns = `/run/netns/${pod.ns}`): Promise<CniCallResult> => {
    const n = ++callSeq;
    inFlight.set(n, `${command} ${pod.id} since ${new Date().toISOString()}`);
    try {
      return await cniCall(fwd, { command, containerId: pod.id, netns, ifName: 'eth0', path: '/usr/lib/cni', stdin: conf(pod.port), env: { BATCHBRIDGE_CNI_SOCKET: cniSocket }, timeoutMs: 60_000 });
    } finally {
      inFlight.delete(n);
    }
  };

  const live = new Map<string, Pod>();
  /** DELed pods whose namespace is kept until the next check */
  const deleted: Pod[] = [];
  const problems: string[] = [];
  const stats = { adds: 0, addsOk: 0, addsFailed: 0, dels: 0, secondDels: 0, kills: 0, checks: 0, livePodsChecked: 0, deletedPodsChecked: 0, spooledSeen: 0 };
  const failures = new Map<string, number>();
  let seq = 0;
  let paused = false;
  let stopping = false;
  let parked = 0;

  const gate = async (): Promise<void> => {
    if (!paused) return;
    parked++;
    while (paused && !stopping) await sleep(5);
    parked--;
  };
  const del = async (pod: Pod): Promise<void> => {
    stats.dels++;
    const r = await call('DEL', pod);
    if (r.code !== 0) problems.push(`DEL ${pod.id} failed: ${r.stdout} ${r.stderr}`);
    if (rand() < 0.3) {
      stats.secondDels++;
      const again = await call('DEL', pod, '');
      if (again.code !== 0) problems.push(`second DEL ${pod.id} (empty CNI_NETNS) failed: ${again.stdout}`);
    }
    deleted.push(pod);
  };
  // One worker, one pod slot (its own host port): ADD a fresh pod, keep it a while, DEL it.
  /** what each worker is doing, for the report when one never parks */
  const doing: string[] = [];
  const worker = async (slot: number): Promise<void> => {
    let mine: Pod | null = null;
    while (!stopping) {
      doing[slot] = 'parked';
      await gate();
      doing[slot] = mine === null ? 'adding' : `deleting ${mine.id}`;
      if (stopping) break;
      if (mine === null) {
        const n = ++seq;
        const pod: Pod = { id: `cc${tag}${n.toString().padStart(5, '0')}`, ns: `bbt-cc-${tag}-${n}`, port: 23000 + slot };
        namespaces.add(pod.ns);
        await runOk(['ip', 'netns', 'add', pod.ns]);
        stats.adds++;
        const r = await call('ADD', pod);
        if (r.code === 0) {
          stats.addsOk++;
          const res = JSON.parse(r.stdout) as { interfaces: Array<{ name: string }>; ips: Array<{ address: string }> };
          const host = res.interfaces[1]?.name;
          const address = res.ips[0]?.address;
          if (host !== undefined) pod.host = host;
          if (address !== undefined) pod.address = address;
          live.set(pod.id, pod);
          mine = pod;
        } else {
          // The runtime tears a pod down whose ADD failed: DEL, which must not fail.
          stats.addsFailed++;
          const why = (JSON.parse(r.stdout || '{}') as { msg?: string }).msg ?? r.stderr;
          const k = why.replace(/[0-9a-f]{6,}|\d+|\/tmp\/\S+/g, 'N').slice(0, 100);
          failures.set(k, (failures.get(k) ?? 0) + 1);
          await del(pod);
        }
      } else {
        await sleep(rand() * 150);
        live.delete(mine.id);
        await del(mine);
        mine = null;
      }
    }
  };
  /** workers that returned (at the end, or on an error, reported as a problem) */
  let gone = 0;
  const workers = Array.from({ length: WORKERS }, (_, s) =>
    worker(s)
      .catch((e: unknown) => {
        problems.push(`worker ${s} stopped: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
      })
      .finally(() => {
        gone++;
      }),
  );

  const spoolFiles = (): string[] => (existsSync(spoolDir) ? readdirSync(spoolDir) : []);
  const check = async (round: number): Promise<void> => {
    paused = true;
    const deadline = Date.now() + 60_000;
    while (parked + gone < WORKERS) {
      if (Date.now() > deadline) throw new Error(`workers still busy after 60 s: ${doing.join(', ')}; calls: ${[...inFlight.values()].join('; ')}\n${tail(logPath)}`);
      await sleep(5);
    }
    stats.checks++;
    // Spooled DELs are replayed by the restarted daemon (or sent again by their executable).
    for (const until = Date.now() + 15_000; spoolFiles().some((f) => f.startsWith('del-')) && Date.now() < until; ) await sleep(50);
    const left = spoolFiles().filter((f) => !f.startsWith('.tmp-'));
    if (left.length > 0) problems.push(`round ${round}: spool not empty: ${left.join(', ')}`);
    const books = readBooks(stateDir);
    const byHost = new Map([...books.endpoints.values()].map((e) => [e.host, e]));
    for (const pod of live.values()) {
      stats.livePodsChecked++;
      const ep = pod.host === undefined ? undefined : byHost.get(pod.host);
      if (ep === undefined) problems.push(`round ${round}: live pod ${pod.id} (veth ${pod.host}) is not booked`);
      else if (ep.ipv4 !== pod.address || ep.mappings !== 1) problems.push(`round ${round}: live pod ${pod.id} booked as ${ep.ipv4} with ${ep.mappings} port(s), ADD said ${pod.address} and 1`);
      const r = await run(['ip', '-n', pod.ns, '-j', 'addr', 'show', 'dev', 'eth0']);
      const link = r.code === 0 ? (JSON.parse(r.stdout) as Array<{ flags: string[]; addr_info: Array<{ local: string; prefixlen: number }> }>)[0] : undefined;
      if (link === undefined || !link.flags.includes('UP') || !link.addr_info.some((a) => `${a.local}/${a.prefixlen}` === pod.address)) problems.push(`round ${round}: live pod ${pod.id}: eth0 not up with ${pod.address}: ${r.stdout}${r.stderr}`);
    }
    for (const pod of deleted.splice(0)) {
      stats.deletedPodsChecked++;
      const r = await run(['ip', '-n', pod.ns, 'link', 'show', 'dev', 'eth0']);
      if (r.code === 0) problems.push(`round ${round}: DELed pod ${pod.id} still has eth0 in ${pod.ns}`);
      if (pod.host !== undefined && byHost.has(pod.host)) problems.push(`round ${round}: DELed pod ${pod.id} is still booked (veth ${pod.host})`);
      await runOk(['ip', 'netns', 'del', pod.ns]);
      namespaces.delete(pod.ns);
    }
    if (books.endpoints.size !== live.size) problems.push(`round ${round}: ${books.endpoints.size} attachment(s) booked, ${live.size} pod(s) live`);
    if (books.intents !== 0) problems.push(`round ${round}: ${books.intents} intent(s) left`);
    problems.push(...(await checkConsistency(books)).map((p) => `round ${round}: ${p}`));
    assert.deepEqual(problems, [], `seed ${SEED}:\n${problems.join('\n')}\n--- daemon log ---\n${tail(logPath)}`);
    paused = false;
  };

  const t0 = Date.now();
  try {
    for (let k = 1; k <= KILLS; k++) {
      await sleep(100 + rand() * 600);
      await plugin.kill9();
      stats.kills++;
      // Down for a while: DELs go to the spool, ADDs wait for the daemon.
      await sleep(50 + rand() * 400);
      stats.spooledSeen += spoolFiles().filter((f) => f.startsWith('del-')).length;
      plugin = await start();
      await check(k);
    }
  } finally {
    stopping = true;
    paused = false;
    await Promise.all(workers);
  }
  // The end: the live pods DELed normally; nothing may remain.
  for (const pod of [...live.values()]) {
    live.delete(pod.id);
    await del(pod);
  }
  await check(KILLS + 1);
  assert.equal(readBooks(stateDir).endpoints.size, 0);
  assert.equal((await plugin.stop()).code, 0, 'SIGTERM exits 0');
  t.diagnostic(JSON.stringify({ seed: SEED, seconds: Math.round((Date.now() - t0) / 1000), ...stats, addFailures: Object.fromEntries(failures) }));
});
