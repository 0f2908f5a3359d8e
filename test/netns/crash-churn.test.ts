// Crash safety: a dockerd-like client churns endpoints (create, join, program, revoke, leave,
// delete) and networks while the plugin is killed with SIGKILL at random moments and restarted.
// After every restart the kernel must match the books, every endpoint the client still holds
// must be booked and working, and nothing may be booked that the client could not know about.
// When the plugin dies under a request, the client sends the identical request again until it
// gets an answer (within 30 s), so retries are in flight across restarts, and some restarts are
// killed again at once while those retries land: a retried create must then answer 200 (the
// plugin may have done the work before it died), and the client's view must match the books.
//
// Runs inside `unshare --net` (the runner's private namespace). Env knobs: BB_CRASH_KILLS
// (default 25), BB_CRASH_SEED.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { runOk, sleep } from '../helpers/proc.js';
import { assertPrivateNetns, checkConsistency, cleanUpAfter, Client, readBooks, startPlugin, tail, tempDir, type PluginProc } from './crash-kit.js';
import { rng } from '../helpers/rng.js';

const KILLS = Number(process.env.BB_CRASH_KILLS ?? 25);
const SEED = Number(process.env.BB_CRASH_SEED ?? Date.now() % 100000);

interface Net {
  readonly id: string;
  readonly third: number; // 198.18.<third>.0/24
}

test('kill -9 at random points during churn, restart, kernel == books', { timeout: 240_000 }, async (t) => {
  assertPrivateNetns();
  const rand = rng(SEED);
  const dir = await tempDir();
  const name = 'bbcrash';
  const stateDir = join(dir.path, 'state');
  const socketDir = join(dir.path, 'sock');
  const logPath = join(dir.path, 'plugin.log');
  const userBridges = ['usrbr0', 'usrbr1'];
  let plugin: PluginProc | null = null;
  const client = new Client(join(socketDir, `${name}.sock`), 30_000, true);
  cleanUpAfter(t, dir, () => plugin, () => client.close());
  for (const b of userBridges) await runOk(['ip', 'link', 'add', b, 'type', 'bridge']);
  const start = async (): Promise<PluginProc> =>
    startPlugin({ name, stateDir, socketDir, logPath, extraArgs: ['--reconcile-interval-ms', '0', '--workers', '2', '--batch-window-ms', '3'] });
  plugin = await start();

  // Two long-lived networks: one on a bridge of ours, one on a user's bridge.
  const stable: Net[] = [{ id: 'crashnet0000a1', third: 20 }, { id: 'crashnet0000b2', third: 21 }];
  const netBody = (n: Net, bridge?: string): unknown => ({
    NetworkID: n.id,
    Options: { 'com.docker.network.generic': bridge === undefined ? {} : { 'com.docker.network.bridge.name': bridge } },
    IPv4Data: [{ Pool: `198.18.${n.third}.0/24`, Gateway: `198.18.${n.third}.1/24` }],
    IPv6Data: [],
  });
  assert.equal((await client.call('CreateNetwork', netBody(stable[0] as Net))).status, 200);
  assert.equal((await client.call('CreateNetwork', netBody(stable[1] as Net, 'usrbr0'))).status, 200);

  // What "dockerd" believes exists, and what it cannot be sure about.
  const live = new Map<string, { net: Net; programmed: boolean; host: number }>();
  const uncertain = new Set<string>(); // endpoint or network ids whose last call's outcome is unknown
  const liveNets = new Set<string>(stable.map((n) => n.id));
  const stats = { ops: 0, ok: 0, failed: 0, unknown: 0, kills: 0, doubleKills: 0, leaks: 0, endpointsChecked: 0, resent: 0, resentCreates: 0, resentCreatesOk: 0 };
  /** creates sent again after the plugin died under them and then refused (should answer 200) */
  const refusedRetries: string[] = [];
  const history = new Map<string, string[]>();
  const failures = new Map<string, number>();
  const leaked = new Set<string>();
  let paused = false;
  let stopping = false;
  let inFlight = 0;
  let epSeq = 0;
  let portSeq = 0;

  const call = async (method: string, body: unknown, subject: string): Promise<number> => {
    inFlight++;
    try {
      const r = await client.call(method, body);
      const resent = r.resent ?? 0;
      const h = history.get(subject) ?? [];
      h.push(`${method}${resent > 0 ? ` (sent ${resent + 1}x)` : ''} -> ${r.status} ${r.status === 200 ? '' : r.text.slice(0, 200)}`);
      if (resent > 0) {
        stats.resent++;
        if (method === 'CreateEndpoint' || method === 'CreateNetwork') {
          stats.resentCreates++;
          if (r.status === 200) stats.resentCreatesOk++;
          // 503: shed as overloaded (the client gives up, and the plugin must not keep it).
          else if (r.status !== 503 && r.status !== -1) refusedRetries.push(`${method} ${subject} -> ${r.status} ${r.text.slice(0, 160)}`);
        }
      }
      history.set(subject, h);
      stats.ops++;
      if (r.status === 200) stats.ok++;
      else if (r.status !== -1) {
        const why = `${method} ${r.status} ${String(r.body.Err ?? r.text).replace(/[0-9a-f]{6,}|\d+/g, 'N').slice(0, 90)}`;
        failures.set(why, (failures.get(why) ?? 0) + 1);
      }
      if (r.status === -1) {
        stats.unknown++;
        uncertain.add(subject);
      } else if (r.status !== 200) stats.failed++;
      return r.status;
    } finally {
      inFlight--;
    }
  };
  // Workers park only between whole dockerd sequences, so a check sees a quiescent client.
  let parked = 0;
  const gate = async (): Promise<void> => {
    if (!paused) return;
    parked++;
    while (paused && !stopping) await sleep(5);
    parked--;
  };

  // dockerd's sequences (docker-bridge-spec.md 1.6), with its reactions to failures.
  /** Returns the id of the endpoint it left live, if any. */
  const up = async (net: Net, slot: number, taken: ReadonlySet<number>): Promise<string | null> => {
    const id = `ep${(++epSeq).toString(16).padStart(10, '0')}`;
    const body = { NetworkID: net.id, EndpointID: id };
    // Like dockerd's IPAM, never an address the client holds: each worker has its own 40, and
    // picks one its live endpoints do not use.
    const free = Array.from({ length: 40 }, (_, i) => 10 + slot * 40 + i).filter((a) => !taken.has(a));
    const host = free[Math.floor(rand() * free.length)] ?? 10 + slot * 40;
    const addr = `198.18.${net.third}.${host}/24`;
    const c = await call('CreateEndpoint', { ...body, Interface: { Address: addr }, Options: {} }, id);
    if (c !== 200) return null; // dockerd releases the address and forgets the endpoint
    const j = await call('Join', { ...body, SandboxKey: `/var/run/docker/netns/${id}`, Options: {} }, id);
    if (j !== 200) {
      await call('DeleteEndpoint', body, id);
      return null;
    }
    live.set(id, { net, programmed: false, host });
    if (rand() < 0.6) {
      const port = 20000 + (portSeq++ % 20000);
      const p = await call('ProgramExternalConnectivity', { ...body, Options: { 'com.docker.network.portmap': [{ Proto: 6, Port: 80, HostPort: port, HostPortEnd: port }] } }, id);
      if (p !== 200) {
        live.delete(id);
        await call('Leave', body, id);
        await call('DeleteEndpoint', body, id);
        return null;
      }
      const cur = live.get(id);
      if (cur !== undefined) cur.programmed = true;
    }
    await call('EndpointOperInfo', body, id);
    return id;
  };
  const down = async (id: string): Promise<void> => {
    const ep = live.get(id);
    if (ep === undefined) return;
    // dockerd forgets the endpoint whatever these calls answer (their errors are only logged).
    live.delete(id);
    const body = { NetworkID: ep.net.id, EndpointID: id };
    if (ep.programmed) await call('RevokeExternalConnectivity', body, id);
    await call('Leave', body, id);
    await call('DeleteEndpoint', body, id);
  };
  const endpointWorker = async (slot: number): Promise<void> => {
    const mine: string[] = [];
    while (!stopping) {
      await gate();
      if (stopping) break;
      const stillMine = mine.filter((id) => live.has(id));
      mine.length = 0;
      mine.push(...stillMine);
      if (mine.length < 2 || (mine.length < 4 && rand() < 0.5)) {
        // An address is the worker's again only once its endpoint's DeleteEndpoint has returned
        // (dockerd releases it to its IPAM after the driver's answer): `mine` holds exactly the
        // endpoints this worker made and has not finished tearing down.
        const taken = new Set(mine.map((id) => live.get(id)?.host ?? 0));
        const made = await up(stable[slot % 2] as Net, slot, taken);
        if (made !== null) mine.push(made);
      } else {
        const i = Math.floor(rand() * mine.length);
        const [id] = mine.splice(i, 1);
        if (id !== undefined) await down(id);
      }
    }
  };
  let netSeq = 0;
  const networkWorker = async (): Promise<void> => {
    while (!stopping) {
      await gate();
      if (stopping) break;
      const k = ++netSeq;
      const onUser = k % 3 === 0;
      const n: Net = { id: `churnnet${k.toString().padStart(6, '0')}`, third: 32 + (k % 30) };
      const c = await call('CreateNetwork', netBody(n, onUser ? 'usrbr1' : undefined), n.id);
      if (c !== 200) continue;
      liveNets.add(n.id);
      const eps: string[] = [];
      for (let i = 0; i < 2; i++) {
        const id = `nep${k.toString(16).padStart(6, '0')}${i}`;
        const r = await call('CreateEndpoint', { NetworkID: n.id, EndpointID: id, Interface: { Address: `198.18.${n.third}.${5 + i}/24` }, Options: {} }, id);
        if (r === 200) {
          eps.push(id);
          live.set(id, { net: n, programmed: false, host: 5 + i });
        }
      }
      await sleep(rand() * 20);
      for (const id of eps) {
        live.delete(id);
        await call('DeleteEndpoint', { NetworkID: n.id, EndpointID: id }, id);
      }
      liveNets.delete(n.id);
      await call('DeleteNetwork', { NetworkID: n.id }, n.id);
    }
  };

  const workers = [...[0, 1, 2, 3, 4, 5].map((s) => endpointWorker(s)), networkWorker()];
  const WORKERS = workers.length;

  const verify = async (round: number): Promise<void> => {
    paused = true;
    const deadline = Date.now() + 60_000;
    while (inFlight > 0 || parked < WORKERS) {
      if (Date.now() > deadline) throw new Error(`client calls still in flight after 60 s\n${tail(logPath)}`);
      await sleep(5);
    }
    const books = readBooks(stateDir);
    const problems = await checkConsistency(books, userBridges);
    assert.equal(books.intents, 0, `round ${round}: intents left after restart + quiescence`);
    for (const [id, ep] of live) {
      stats.endpointsChecked++;
      if (!books.endpoints.has(id)) problems.push(`round ${round}: endpoint ${id} (client holds it) is not booked`);
      else if (books.endpoints.get(id)?.networkId !== ep.net.id) problems.push(`endpoint ${id}: wrong network`);
    }
    for (const id of liveNets) if (!books.networks.has(id)) problems.push(`round ${round}: network ${id} (client holds it) is not booked`);
    // Booked but unknown to the client: only possible where a call's answer was lost.
    for (const id of books.endpoints.keys()) {
      if (!live.has(id)) {
        if (uncertain.has(id)) leaked.add(id);
        else problems.push(`round ${round}: endpoint ${id} is booked but the client never learned of it`);
      }
    }
    for (const id of books.networks.keys()) {
      if (!liveNets.has(id) && !uncertain.has(id)) problems.push(`round ${round}: network ${id} is booked but the client never learned of it`);
    }
    for (const r of refusedRetries.splice(0)) problems.push(`round ${round}: a create sent again after the plugin died under it was refused: ${r}`);
    const hist = problems.flatMap((p) => [...p.matchAll(/(?:endpoint|network) (\S+)/g)].map((m) => `${m[1]}: ${(history.get(m[1] ?? '') ?? []).join(' | ')}`));
    assert.deepEqual(problems, [], `round ${round} (seed ${SEED}):\n${problems.join('\n')}\n--- client history ---\n${hist.join('\n')}\n--- plugin log ---\n${tail(logPath)}`);
    // Every endpoint the client holds still answers (Join of a booked endpoint is read-only).
    for (const [id, ep] of live) {
      const r = await client.call('EndpointOperInfo', { NetworkID: ep.net.id, EndpointID: id });
      assert.equal(r.status, 200, `round ${round}: EndpointOperInfo ${id}: ${r.text}`);
    }
    paused = false;
  };

  const t0 = Date.now();
  try {
    for (let k = 1; k <= KILLS; k++) {
      await sleep(40 + rand() * 400);
      await plugin.kill9();
      stats.kills++;
      // Let the client hit refused connections for a moment, as dockerd would.
      await sleep(rand() * 100);
      plugin = await start();
      if (k < KILLS && rand() < 0.3) {
        // Again, while the requests that broke under the first kill are being sent again.
        await sleep(rand() * 60);
        await plugin.kill9();
        stats.kills++;
        stats.doubleKills++;
        k++;
        await sleep(rand() * 100);
        plugin = await start();
      }
      await verify(k);
    }
  } finally {
    stopping = true;
    paused = false;
    await Promise.all(workers);
  }
  // Clean exit: tear everything down through the protocol; nothing may remain.
  for (const [id, ep] of [...live]) {
    live.delete(id);
    assert.equal((await client.call('DeleteEndpoint', { NetworkID: ep.net.id, EndpointID: id })).status, 200);
  }
  for (const n of [...liveNets]) assert.equal((await client.call('DeleteNetwork', { NetworkID: n })).status, 200);
  // Networks whose CreateNetwork answer was lost are booked without the client knowing: an
  // admin removes them like any other (their endpoints go with them).
  for (const n of readBooks(stateDir).networks.keys()) assert.equal((await client.call('DeleteNetwork', { NetworkID: n })).status, 200);
  const end = readBooks(stateDir);
  // Leaked (answer lost) endpoints of the stable networks go with their network.
  assert.equal(end.endpoints.size, 0, `endpoints left: ${[...end.endpoints.keys()].join(', ')}`);
  assert.deepEqual(await checkConsistency(end, userBridges), [], 'after teardown nothing of ours remains');
  const stopped = await plugin.stop();
  assert.equal(stopped.code, 0, 'SIGTERM exits 0');
  stats.leaks = leaked.size;
  const summary = { seed: SEED, seconds: Math.round((Date.now() - t0) / 1000), ...stats, failures: Object.fromEntries(failures) };
  t.diagnostic(JSON.stringify(summary));
});
