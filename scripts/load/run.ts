// The load harness proper: replays what dockerd sends for each container's life on a network
// (CreateEndpoint, Join, ProgramExternalConnectivity, RevokeExternalConnectivity, Leave,
// DeleteEndpoint), closed loop (N clients) or open loop (a target rate), optionally with
// long-lived endpoints alive throughout, and then checks the kernel is back where it started.
// Library form: bench/ drives it too. The CLI is main.ts.
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { PluginClient } from './client.js';
import { compareSnapshots, injectLeak, snapshotKernel, type KernelSnapshot, type LeakKind, type LeakReport } from './kernel.js';
import { SandboxBatcher } from './sandbox.js';
import { Samples, round, type LatencySummary } from './stats.js';

export const CALLS = ['CreateEndpoint', 'Join', 'ProgramExternalConnectivity', 'RevokeExternalConnectivity', 'Leave', 'DeleteEndpoint'] as const;
export type CallName = (typeof CALLS)[number];

/** A Linux bridge takes at most 1024 ports (BR_MAX_PORTS); the plugin refuses the 1025th. */
export const BRIDGE_MAX_PORTS = 1024;
/** 198.18.0.0/15, minus its last /20 (198.19.240.0/20: testing.md's external peer lives there) */
const BASE = (198 << 24) | (18 << 16);

export interface LoadOptions {
  readonly socketPath: string;
  /** the plugin's pid: peak RSS, and where sandboxed veths move back to */
  readonly pluginPid: number | null;
  /** the plugin's network namespace (kernel checks run there via nsenter); null: our own */
  readonly nsPath: string | null;
  readonly concurrency: number;
  readonly networks: number;
  /** stop after this many lifecycles (null: only the duration bounds the run) */
  readonly lifecycles: number | null;
  readonly durationS: number | null;
  /** open loop: lifecycles started per second (concurrency caps those in flight) */
  readonly rate: number | null;
  readonly ports: number;
  readonly keep: number;
  readonly sandbox: boolean;
  readonly leakCheck: boolean;
  readonly injectLeak: LeakKind | null;
  /** hard bound on the churn phase, seconds */
  readonly timeoutS: number;
  readonly progress: boolean;
  /** run this many lifecycles one at a time on the idle plugin first (lone latency) */
  readonly lone: number;
  /**
   * Networks kept across runs (bench/): created by the first run that gets an empty pool, reused
   * by later runs, never deleted by runLoad — call deleteNetworks() at the end.
   */
  readonly pool?: NetworkPool;
}

export interface NetworkPool {
  nets: Net[];
}

export interface LoadResult {
  ok: boolean;
  failures: string[];
  config: Record<string, unknown>;
  lifecycles: { started: number; ok: number; failed: number };
  seconds: number;
  lifecyclesPerSec: number;
  calls: Record<string, LatencySummary>;
  errors: { total: number; samples: Array<{ message: string; count: number }> };
  openLoop: { targetRate: number; maxBacklog: number } | null;
  keep: { count: number; ok: number; seconds: number; perSec: number; rssAfterMB: number | null } | null;
  /** each call of lifecycles run one at a time on the idle plugin */
  lone: Record<string, LatencySummary> | null;
  plugin: {
    pid: number;
    peakRssMB: number;
    peakRssSampledMB: number;
    endRssMB: number;
    /** the plugin with its helper processes (tool launchers, ip and iptables-restore sessions), sampled */
    peakTreeRssMB: number;
  } | null;
  sandbox: { batches: number; lines: number } | null;
  leakCheck: (LeakReport & { injected: string | null }) | null;
  /** filled in by main.ts --floor */
  floor?: { lifecyclesPerSec: number; ratio: number; seconds: number; lifecycles: number };
}

function ipStr(n: number): string {
  return `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

/** Smallest prefix ≥ /20 that fits `networks` subnets into 198.18.0.0/15 minus its last /20. */
export function subnetPrefix(networks: number): number {
  for (let p = 20; p <= 21; p++) {
    const fit = 2 ** (p - 15) - 2 ** (p - 20); // keep 198.19.240.0/20 free
    if (networks <= fit) return p;
  }
  throw new Error(`--networks ${networks}: at most ${2 ** 6 - 2} networks fit in 198.18.0.0/15 with ≥ ${BRIDGE_MAX_PORTS} addresses each`);
}

/** Checks that keep + churn fit the bridges (1024 ports each); returns an error text or null. */
export function capacityProblem(keep: number, concurrency: number, networks: number): string | null {
  // Endpoints go round-robin to the next network with room, so the bound is the total.
  const need = keep + concurrency + 1;
  if (need > networks * BRIDGE_MAX_PORTS) {
    return `--keep ${keep} with --concurrency ${concurrency} needs ${need} bridge ports, but ${networks} network(s) hold at most ${networks * BRIDGE_MAX_PORTS} (a Linux bridge takes ${BRIDGE_MAX_PORTS} ports): use --networks ${Math.ceil(need / BRIDGE_MAX_PORTS)} or more`;
  }
  return null;
}

export interface Net {
  readonly id: string;
  readonly prefix: number;
  readonly free: number[]; // addresses (as numbers) free for endpoints
  live: number;
}

interface Ep {
  readonly net: Net;
  readonly id: string;
  readonly addr: number;
  sandbox: { ns: string; ifname: string } | null;
}

function readRss(pid: number): { rss: number; hwm: number } | null {
  try {
    const s = readFileSync(`/proc/${pid}/status`, 'utf8');
    const rss = /VmRSS:\s+(\d+) kB/.exec(s);
    const hwm = /VmHWM:\s+(\d+) kB/.exec(s);
    return { rss: Number(rss?.[1] ?? 0) / 1024, hwm: Number(hwm?.[1] ?? 0) / 1024 };
  } catch {
    return null;
  }
}

/** pid and all its descendants (each thread lists the children it started) */
export function processTree(pid: number): number[] {
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    const p = out[i] as number;
    try {
      for (const tid of readdirSync(`/proc/${p}/task`)) {
        const kids = readFileSync(`/proc/${p}/task/${tid}/children`, 'utf8').split(' ').filter((x) => x.trim() !== '');
        for (const k of kids) out.push(Number(k));
      }
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

async function deleteNetworksWith(client: PluginClient, nets: readonly Net[]): Promise<string[]> {
  const failures: string[] = [];
  for (const n of nets) {
    const r = await client.call('DeleteNetwork', { NetworkID: n.id });
    if (!r.ok) failures.push(`DeleteNetwork ${n.id.slice(0, 12)} failed: ${r.err ?? ''}`);
  }
  return failures;
}

/** Deletes the networks of a pool (see LoadOptions.pool); returns the failures. */
export async function deleteNetworks(socketPath: string, pool: NetworkPool): Promise<string[]> {
  const client = new PluginClient(socketPath, 1);
  try {
    return await deleteNetworksWith(client, pool.nets);
  } finally {
    pool.nets = [];
    await client.close();
  }
}

export function isInitNetns(nsPath: string | null): boolean {
  try {
    return statSync(nsPath ?? '/proc/self/ns/net').ino === statSync('/proc/1/ns/net').ino;
  } catch {
    return false;
  }
}

export async function runLoad(o: LoadOptions): Promise<LoadResult> {
  const failures: string[] = [];
  const cap = capacityProblem(o.keep, o.concurrency, o.networks);
  if (cap !== null) throw new Error(cap);
  const prefix = subnetPrefix(o.networks);
  const client = new PluginClient(o.socketPath, Math.max(4, o.concurrency));
  const samples = new Map<CallName, Samples>(CALLS.map((c) => [c, new Samples()]));
  const errorMsgs = new Map<string, number>();
  let errorTotal = 0;
  const noteError = (call: string, msg: string): void => {
    errorTotal++;
    const key = `${call}: ${msg.replace(/[0-9a-f]{12,64}/g, '<id>').slice(0, 300)}`;
    if (errorMsgs.has(key) || errorMsgs.size < 20) errorMsgs.set(key, (errorMsgs.get(key) ?? 0) + 1);
  };
  const runId = randomBytes(3).toString('hex');
  const sandboxer = o.sandbox ? new SandboxBatcher(o.nsPath, `bbsb-${runId}-`, o.pluginPid ?? process.pid) : null;

  // ---- RSS sampling
  let peakSampled = 0;
  let hwm = 0;
  let peakTree = 0;
  const sampleRss = (): number | null => {
    if (o.pluginPid === null) return null;
    const r = readRss(o.pluginPid);
    if (r === null) return null;
    peakSampled = Math.max(peakSampled, r.rss);
    hwm = Math.max(hwm, r.hwm);
    const tree = processTree(o.pluginPid).reduce((sum, p) => sum + (p === o.pluginPid ? r.rss : (readRss(p)?.rss ?? 0)), 0);
    peakTree = Math.max(peakTree, tree);
    return r.rss;
  };
  const rssTimer = setInterval(sampleRss, 200);
  rssTimer.unref();

  let before: KernelSnapshot | null = null;
  if (o.leakCheck) before = await snapshotKernel(o.nsPath, sandboxer?.prefix ?? null);

  // ---- networks
  const nets: Net[] = [];
  const netSize = 2 ** (32 - prefix);
  const netCap = Math.min(BRIDGE_MAX_PORTS, netSize - 3);
  try {
    if (o.pool !== undefined && o.pool.nets.length > 0) nets.push(...o.pool.nets);
    for (let i = nets.length; i < o.networks; i++) {
      const base = (BASE + i * netSize) >>> 0;
      const id = randomBytes(32).toString('hex');
      const r = await client.call('CreateNetwork', {
        NetworkID: id,
        Options: { 'com.docker.network.generic': {} },
        IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: `${ipStr(base)}/${prefix}`, Gateway: `${ipStr(base + 1)}/${prefix}`, AuxAddresses: {} }],
        IPv6Data: [],
      });
      if (!r.ok) throw new Error(`CreateNetwork ${ipStr(base)}/${prefix} failed: ${r.err ?? ''}`);
      const free: number[] = [];
      for (let k = netCap + 1; k >= 2; k--) free.push(base + k);
      nets.push({ id, prefix, free, live: 0 });
    }
  } catch (e) {
    failures.push(String(e instanceof Error ? e.message : e));
  }
  if (o.pool !== undefined) o.pool.nets = nets;

  const portmap = Array.from({ length: o.ports }, (_, k) => ({ Proto: 6, IP: '', Port: 80 + k, HostIP: '', HostPort: 0, HostPortEnd: 0 }));
  const exposed = Array.from({ length: o.ports }, (_, k) => ({ Proto: 6, Port: 80 + k }));
  const portOpts = o.ports > 0 ? { 'com.docker.network.portmap': portmap, 'com.docker.network.endpoint.exposedports': exposed } : {};

  let rr = 0;
  const pickNet = (): Net | null => {
    for (let i = 0; i < nets.length; i++) {
      const n = nets[(rr + i) % nets.length] as Net;
      if (n.live < netCap && n.free.length > 0) {
        rr = (rr + i + 1) % nets.length;
        return n;
      }
    }
    return null;
  };

  const timed = async (call: CallName, body: unknown, record: boolean, sink: Map<CallName, Samples> = samples): Promise<Record<string, unknown> | null> => {
    const t = performance.now();
    const r = await client.call(call, body);
    const s = sink.get(call) as Samples;
    if (record) s.add(performance.now() - t);
    if (!r.ok) {
      s.errors++;
      noteError(call, r.err ?? 'error');
      return null;
    }
    return r.body ?? {};
  };

  /** CreateEndpoint + Join (+ sandbox) + Program. Returns the endpoint even when a later step failed (it must still be torn down). */
  const start = async (record: boolean, sink: Map<CallName, Samples> = samples): Promise<{ ep: Ep | null; ok: boolean; joined: boolean }> => {
    const net = pickNet();
    if (net === null) {
      noteError('CreateEndpoint', 'no network with room left (harness bug)');
      return { ep: null, ok: false, joined: false };
    }
    const addr = net.free.pop() as number;
    net.live++;
    const ep: Ep = { net, id: randomBytes(32).toString('hex'), addr, sandbox: null };
    const created = await timed(
      'CreateEndpoint',
      { NetworkID: net.id, EndpointID: ep.id, Interface: { Address: `${ipStr(addr)}/${net.prefix}`, AddressIPv6: '', MacAddress: '' }, Options: portOpts },
      record,
      sink,
    );
    if (created === null) {
      release(ep);
      return { ep: null, ok: false, joined: false };
    }
    const join = await timed('Join', { NetworkID: net.id, EndpointID: ep.id, SandboxKey: `/var/run/docker/netns/${ep.id.slice(0, 12)}`, Options: {} }, record, sink);
    if (join === null) return { ep, ok: false, joined: false };
    if (sandboxer !== null) {
      const ifname = (join.InterfaceName as { SrcName?: string } | undefined)?.SrcName;
      if (typeof ifname !== 'string') {
        noteError('Join', 'no InterfaceName.SrcName in the answer');
        return { ep, ok: false, joined: true };
      }
      const ns = sandboxer.newName();
      const err = await sandboxer.enter(ns, ifname);
      if (err !== null) {
        noteError('sandbox enter', err);
        // the namespace may exist without the veth: delete it, nothing to move back
        void sandboxer.leave(ns, '__none__');
        return { ep, ok: false, joined: true };
      }
      ep.sandbox = { ns, ifname };
    }
    const prog = await timed('ProgramExternalConnectivity', { NetworkID: net.id, EndpointID: ep.id, Options: portOpts }, record, sink);
    return { ep, ok: prog !== null, joined: true };
  };

  const release = (ep: Ep): void => {
    ep.net.free.push(ep.addr);
    ep.net.live--;
  };

  /** Revoke (+ sandbox back) + Leave + DeleteEndpoint; always goes on to the end. */
  const stop = async (ep: Ep, joined: boolean, record: boolean, sink: Map<CallName, Samples> = samples): Promise<boolean> => {
    let ok = (await timed('RevokeExternalConnectivity', { NetworkID: ep.net.id, EndpointID: ep.id }, record, sink)) !== null;
    if (ep.sandbox !== null && sandboxer !== null) {
      const err = await sandboxer.leave(ep.sandbox.ns, ep.sandbox.ifname);
      if (err !== null) {
        ok = false;
        noteError('sandbox leave', err);
      }
    }
    if (joined) ok = (await timed('Leave', { NetworkID: ep.net.id, EndpointID: ep.id }, record, sink)) !== null && ok;
    ok = (await timed('DeleteEndpoint', { NetworkID: ep.net.id, EndpointID: ep.id }, record, sink)) !== null && ok;
    release(ep);
    return ok;
  };

  const lifecycle = async (): Promise<boolean> => {
    const s = await start(true);
    if (s.ep === null) return false;
    const okStop = await stop(s.ep, s.joined, true);
    return s.ok && okStop;
  };

  // ---- lone requests on the idle plugin (before anything else runs)
  let lone: Record<string, LatencySummary> | null = null;
  if (o.lone > 0 && nets.length > 0) {
    const sink = new Map<CallName, Samples>(CALLS.map((c) => [c, new Samples()]));
    for (let i = 0; i < o.lone; i++) {
      const s = await start(true, sink);
      if (s.ep !== null) await stop(s.ep, s.joined, true, sink);
      await new Promise((r) => setTimeout(r, 20)); // idle again before the next one
    }
    lone = {};
    for (const [k, v] of sink) lone[k] = v.summary();
  }

  // ---- long-lived endpoints
  const kept: Array<{ ep: Ep; joined: boolean }> = [];
  let keepResult: LoadResult['keep'] = null;
  if (o.keep > 0 && nets.length > 0) {
    const t = performance.now();
    let next = 0;
    let okCount = 0;
    const worker = async (): Promise<void> => {
      while (next < o.keep) {
        next++;
        const s = await start(false);
        if (s.ep !== null) kept.push({ ep: s.ep, joined: s.joined });
        if (s.ok) okCount++;
      }
    };
    await Promise.all(Array.from({ length: Math.min(o.concurrency, 256) }, worker));
    const secs = (performance.now() - t) / 1000;
    keepResult = { count: o.keep, ok: okCount, seconds: round(secs), perSec: round(okCount / secs, 1), rssAfterMB: sampleRss() };
    if (keepResult.rssAfterMB !== null) keepResult.rssAfterMB = round(keepResult.rssAfterMB, 1);
    if (okCount < o.keep) failures.push(`${o.keep - okCount} long-lived endpoints failed to start`);
  }

  // ---- churn
  let started = 0;
  let okLc = 0;
  let failedLc = 0;
  let maxBacklog = 0;
  let aborted = false;
  const t0 = performance.now();
  const deadline = o.durationS !== null ? t0 + o.durationS * 1000 : Infinity;
  const canStart = (): boolean => !aborted && (o.lifecycles === null || started < o.lifecycles) && performance.now() < deadline;
  const done = (ok: boolean): void => {
    if (ok) okLc++;
    else failedLc++;
  };

  let progressTimer: NodeJS.Timeout | null = null;
  if (o.progress) {
    let lastN = 0;
    let lastT = t0;
    progressTimer = setInterval(() => {
      const now = performance.now();
      const n = okLc + failedLc;
      const rate = ((n - lastN) * 1000) / (now - lastT);
      lastN = n;
      lastT = now;
      const rss = sampleRss();
      const total = o.lifecycles !== null ? `/${o.lifecycles}` : '';
      process.stderr.write(
        `\r\x1b[K[${((now - t0) / 1000).toFixed(1)}s] lifecycles ${n}${total}  ${rate.toFixed(0)}/s  in flight ${started - n}  errors ${errorTotal}${rss !== null ? `  plugin RSS ${rss.toFixed(0)} MB` : ''}`,
      );
    }, 500);
  }

  const hardTimer = setTimeout(() => {
    aborted = true;
    failures.push(`churn phase hit the --timeout of ${o.timeoutS} s: stopped starting new lifecycles`);
  }, o.timeoutS * 1000);

  if (nets.length > 0) {
    if (o.rate === null) {
      const worker = async (): Promise<void> => {
        while (canStart()) {
          started++;
          done(await lifecycle());
        }
      };
      await Promise.all(Array.from({ length: o.concurrency }, worker));
    } else {
      const rate = o.rate;
      await new Promise<void>((resolve) => {
        const interval = 1000 / rate;
        let nextAt = t0;
        let inflight = 0;
        let backlog = 0;
        let ticking = true;
        const maybeEnd = (): void => {
          if (!ticking && inflight === 0 && backlog === 0) resolve();
        };
        const launch = (): void => {
          inflight++;
          void lifecycle().then((ok) => {
            done(ok);
            inflight--;
            if (backlog > 0) {
              backlog--;
              launch();
            }
            maybeEnd();
          });
        };
        const tick = (): void => {
          const now = performance.now();
          while (nextAt <= now && canStart()) {
            started++;
            nextAt += interval;
            if (inflight < o.concurrency) launch();
            else maxBacklog = Math.max(maxBacklog, ++backlog);
          }
          if (canStart()) setTimeout(tick, Math.max(1, Math.min(10, nextAt - performance.now())));
          else {
            ticking = false;
            maybeEnd();
          }
        };
        tick();
      });
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  clearTimeout(hardTimer);
  if (progressTimer !== null) {
    clearInterval(progressTimer);
    process.stderr.write('\r\x1b[K');
  }
  const endRss = sampleRss();

  // ---- teardown: long-lived endpoints, then networks
  if (kept.length > 0) {
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < kept.length) {
        const k = kept[next++];
        if (k !== undefined) await stop(k.ep, k.joined, false);
      }
    };
    await Promise.all(Array.from({ length: Math.min(o.concurrency, 256) }, worker));
  }
  if (o.pool === undefined) failures.push(...(await deleteNetworksWith(client, nets)));
  await client.close();
  sampleRss();
  clearInterval(rssTimer);

  // ---- leak check
  let leak: LoadResult['leakCheck'] = null;
  if (o.leakCheck && before !== null) {
    const injected = o.injectLeak !== null ? await injectLeak(o.nsPath, o.injectLeak) : null;
    let rep = compareSnapshots(before, await snapshotKernel(o.nsPath, sandboxer?.prefix ?? null));
    // Sandbox namespaces are torn down by the kernel asynchronously: give them a moment.
    for (let i = 0; i < 20 && !rep.ok && injected === null; i++) {
      await new Promise((r) => setTimeout(r, 250));
      rep = compareSnapshots(before, await snapshotKernel(o.nsPath, sandboxer?.prefix ?? null));
    }
    leak = { ...rep, injected };
    if (!rep.ok) failures.push(`kernel not back where it started: ${rep.problems.length} difference(s)`);
  }
  if (errorTotal > 0) failures.push(`${errorTotal} request(s) failed`);

  const calls: Record<string, LatencySummary> = {};
  for (const [k, s] of samples) calls[k] = s.summary();
  return {
    ok: failures.length === 0,
    failures,
    config: {
      concurrency: o.concurrency,
      networks: o.networks,
      subnetPrefix: prefix,
      lifecycles: o.lifecycles,
      durationS: o.durationS,
      rate: o.rate,
      ports: o.ports,
      keep: o.keep,
      sandbox: o.sandbox,
    },
    lifecycles: { started, ok: okLc, failed: failedLc },
    seconds: round(seconds, 3),
    lifecyclesPerSec: round(okLc / seconds, 1),
    calls,
    errors: { total: errorTotal, samples: [...errorMsgs].map(([message, count]) => ({ message, count })) },
    openLoop: o.rate === null ? null : { targetRate: o.rate, maxBacklog },
    keep: keepResult,
    lone,
    plugin:
      o.pluginPid === null
        ? null
        : { pid: o.pluginPid, peakRssMB: round(hwm, 1), peakRssSampledMB: round(peakSampled, 1), endRssMB: round(endRss ?? 0, 1), peakTreeRssMB: round(peakTree, 1) },
    sandbox: sandboxer === null ? null : { batches: sandboxer.batches, lines: sandboxer.lines },
    leakCheck: leak,
  };
}
