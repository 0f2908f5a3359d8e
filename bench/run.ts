// Batch-size benchmarks (benchmark.js): veth creation, veth deletion (one by one vs link group),
// firewall changes (iptables per rule vs one iptables-restore per batch), and the whole pipeline
// through the plugin socket (--batch-max = size). Each suite writes bench/results/<suite>.{json,md,svg}.
//
//   npm run bench -- [veth-create] [veth-delete] [firewall] [pipeline]     (default: all)
//   = unshare --net node dist/bench/run.js ...
//
// The kernel suites work in the namespace the process runs in and refuse the host's root
// namespace; the pipeline suite starts each plugin in a throwaway namespace of its own.
import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { runCmd, runOk, runSyncCmd } from '../scripts/load/exec.js';
import { deleteNetworks, isInitNetns, runLoad, type NetworkPool } from '../scripts/load/run.js';
import { spawnPlugin } from '../scripts/load/spawn.js';
import { SIZES, loadavg, measure, writeResults, type Series, type SuiteResult } from './lib.js';

const GROUP = 0x62650000; // "be": the benches' link group, never the plugin's (0x6262xxxx)
const BRIDGE = 'bbbench0';
let seq = 0;

function vethLine(host: string, peer: string): string {
  // the plugin's own line (src/batching/plan-ip.ts)
  return `link add name ${host} txqueuelen 0 master ${BRIDGE} up type veth peer name ${peer} txqueuelen 0`;
}

function peerOf(host: string): string {
  return `vy${host.slice(2)}`;
}

function newPairs(n: number): string[] {
  return Array.from({ length: n }, () => `vz${(seq++).toString(36)}`);
}

function createSync(hosts: readonly string[]): void {
  for (let i = 0; i < hosts.length; i += 512) {
    const chunk = hosts.slice(i, i + 512);
    const r = runSyncCmd(['ip', '-force', '-batch', '-'], `${chunk.map((h) => vethLine(h, peerOf(h))).join('\n')}\n`);
    if (r.code !== 0) throw new Error(`creating veths: ${r.stderr.slice(0, 500)}`);
  }
}

function deleteAllSync(hosts: readonly string[]): void {
  if (hosts.length === 0) return;
  runSyncCmd(['ip', '-force', '-batch', '-'], `${hosts.map((h) => `link set dev ${h} group ${GROUP}`).join('\n')}\nlink del group ${GROUP}\n`);
}

async function ipBatch(lines: readonly string[]): Promise<void> {
  const r = await runCmd(['ip', '-force', '-batch', '-'], `${lines.join('\n')}\n`);
  if (r.code !== 0) throw new Error(`ip -batch: ${r.stderr.slice(0, 500)}`);
}

function header(suite: string): void {
  process.stderr.write(`== ${suite} (load average ${loadavg()})\n`);
}

// ------------------------------------------------------------------------------- veth creation

async function vethCreate(): Promise<SuiteResult> {
  header('veth-create');
  const W = 256;
  const series: Series = { name: 'ip -batch per batch (create + enslave + up)', points: [] };
  const single: Series = { name: 'ip process per veth (reference)', points: [] };
  let made: string[] = [];
  const cleanup = (): void => {
    deleteAllSync(made);
    made = [];
  };
  for (const B of SIZES) {
    const r = await measure(`veth create, batch ${B}`, W, async () => {
      const hosts = newPairs(W);
      made.push(...hosts);
      for (let i = 0; i < W; i += B) await ipBatch(hosts.slice(i, i + B).map((h) => vethLine(h, peerOf(h))));
    }, { betweenSamples: cleanup });
    cleanup();
    series.points.push({ batch: B, opsPerSec: r.opsPerSec, rme: r.rme, samples: r.samples });
  }
  // `ip link add ...` as its own process per veth (no -batch): what a per-operation driver pays.
  const W1 = 64;
  const r1 = await measure('veth create, one ip process each', W1, async () => {
    const hosts = newPairs(W1);
    made.push(...hosts);
    for (const h of hosts) await runOk(['ip', ...vethLine(h, peerOf(h)).split(' ')]);
  }, { betweenSamples: cleanup });
  cleanup();
  for (const B of SIZES) single.points.push({ batch: B, opsPerSec: r1.opsPerSec, rme: r1.rme, samples: r1.samples });
  return {
    suite: 'veth-create',
    title: 'veth pair creation vs batch size',
    unit: 'veth pairs',
    note: `Each sample creates ${W} veth pairs (enslaved to a bridge, up; the plugin's exact line) in \`ip -force -batch -\` processes of B lines each. Reference: one \`ip link add\` process per pair (flat: no batching).`,
    series: [series, single],
    loadavg: '',
    when: new Date().toISOString(),
  };
}

// ------------------------------------------------------------------------------- veth deletion

async function vethDelete(): Promise<SuiteResult> {
  header('veth-delete');
  let W = 128;
  let stock: string[] = [];
  const restock = (): void => {
    if (stock.length < 2 * W) {
      const more = newPairs(2 * W - stock.length);
      createSync(more);
      stock.push(...more);
    }
  };
  const take = (): string[] => {
    if (stock.length < W) {
      process.stderr.write('  (stock ran out inside a sample: its time includes creation)\n');
      restock();
    }
    const t = stock.slice(0, W);
    stock = stock.slice(W);
    return t;
  };
  const oneByOne: Series = { name: 'link del per veth (ip -batch of B lines)', points: [] };
  const group: Series = { name: 'link group + one bulk delete per batch', points: [] };
  restock();
  for (const B of SIZES) {
    W = Math.max(128, B);
    restock();
    const r = await measure(`veth delete one by one, batch ${B}`, W, async () => {
      const hosts = take();
      for (let i = 0; i < W; i += B) await ipBatch(hosts.slice(i, i + B).map((h) => `link del dev ${h}`));
    }, { betweenSamples: restock, maxTime: 3 });
    oneByOne.points.push({ batch: B, opsPerSec: r.opsPerSec, rme: r.rme, samples: r.samples });
    const g = await measure(`veth delete by link group, batch ${B}`, W, async () => {
      const hosts = take();
      for (let i = 0; i < W; i += B) await ipBatch([...hosts.slice(i, i + B).map((h) => `link set dev ${h} group ${GROUP}`), `link del group ${GROUP}`]);
    }, { betweenSamples: restock, maxTime: 3 });
    group.points.push({ batch: B, opsPerSec: g.opsPerSec, rme: g.rme, samples: g.samples });
  }
  deleteAllSync(stock);
  stock = [];
  return {
    suite: 'veth-delete',
    title: 'veth deletion vs batch size',
    unit: 'veths deleted',
    note: `Each sample deletes max(128, B) veth pairs, B per \`ip -force -batch -\` process: either one \`link del dev\` line per veth (one RCU grace period each), or every veth of the batch put into one link group and one \`link del group\` (one grace period per batch).`,
    series: [oneByOne, group],
    loadavg: '',
    when: new Date().toISOString(),
  };
}

// ------------------------------------------------------------------------------------- firewall

function dnat(i: number, chain: string): string {
  const ip = `198.18.${(i >> 8) & 255}.${(i & 255) || 1}`;
  return `${chain} -p tcp -m tcp --dport ${32768 + (i % 28000)} -m comment --comment bb:ep=${i.toString(16).padStart(12, '0')} -j DNAT --to-destination ${ip}:80`;
}

async function restore(lines: readonly string[]): Promise<void> {
  await runOk(['iptables-restore', '--noflush', '-w'], `*nat\n${lines.join('\n')}\nCOMMIT\n`);
}

async function firewall(): Promise<SuiteResult> {
  header('firewall');
  const CH = 'BBBENCH-DNAT';
  const FILL = 'BBBENCH-FILL';
  await restore([`:${CH} - [0:0]`, `:${FILL} - [0:0]`, `-A PREROUTING -m addrtype --dst-type LOCAL -j ${CH}`]);
  const empty: Series = { name: 'iptables-restore per batch', points: [] };
  const full: Series = { name: 'iptables-restore per batch, 10k rules in the chain', points: [] };
  const perRule: Series = { name: 'iptables process per rule (reference)', points: [] };
  const run = async (label: string, into: Series, B: number): Promise<void> => {
    const W = Math.max(64, B);
    const r = await measure(`${label}, batch ${B}`, 2 * W, async () => {
      const base = seq;
      seq += W;
      for (let i = 0; i < W; i += B) await restore(Array.from({ length: Math.min(B, W - i) }, (_, k) => `-A ${dnat(base + i + k, CH)}`));
      for (let i = 0; i < W; i += B) await restore(Array.from({ length: Math.min(B, W - i) }, (_, k) => `-D ${dnat(base + i + k, CH)}`));
    }, { maxTime: 3 });
    into.points.push({ batch: B, opsPerSec: r.opsPerSec, rme: r.rme, samples: r.samples });
  };
  try {
    for (const B of SIZES) await run('rules add+delete', empty, B);
    const W1 = 32;
    const r1 = await measure('rules add+delete, one iptables process each', 2 * W1, async () => {
      const base = seq;
      seq += W1;
      for (let i = 0; i < W1; i++) await runOk(['iptables', '-w', '-t', 'nat', '-A', ...dnat(base + i, CH).split(' ')]);
      for (let i = 0; i < W1; i++) await runOk(['iptables', '-w', '-t', 'nat', '-D', ...dnat(base + i, CH).split(' ')]);
    }, { maxTime: 3 });
    for (const B of SIZES) perRule.points.push({ batch: B, opsPerSec: r1.opsPerSec, rme: r1.rme, samples: r1.samples });
    // 10,000 DNAT rules in the same chain (as with --keep 10000): does a change cost O(ruleset)?
    await restore(Array.from({ length: 10_000 }, (_, i) => `-A ${dnat(1_000_000 + i, CH)}`));
    for (const B of SIZES) await run('rules add+delete with 10k present', full, B);
  } finally {
    await restore([`-D PREROUTING -m addrtype --dst-type LOCAL -j ${CH}`, `-F ${CH}`, `-X ${CH}`, `-F ${FILL}`, `-X ${FILL}`]).catch(() => undefined);
  }
  return {
    suite: 'firewall',
    title: 'firewall changes vs batch size',
    unit: 'rule changes',
    note: 'Each sample adds W = max(64, B) DNAT rules (the plugin\'s published-port rule) and deletes them again, B rules per `iptables-restore --noflush` (nf_tables backend); a change is one add or one delete. Reference: one `iptables -A`/`-D` process per rule.',
    series: [empty, full, perRule],
    loadavg: '',
    when: new Date().toISOString(),
  };
}

// ------------------------------------------------------------------------------------- pipeline

async function pipeline(): Promise<SuiteResult> {
  header('pipeline');
  const series: Series = { name: 'plugin, --batch-max B, 128 clients', points: [] };
  for (const B of SIZES) {
    const plugin = await spawnPlugin({ batchMax: B });
    const pool: NetworkPool = { nets: [] };
    const N = B <= 4 ? 64 : B === 16 ? 256 : 512;
    const opts = {
      socketPath: plugin.socketPath,
      pluginPid: plugin.pid,
      nsPath: plugin.nsPath,
      concurrency: 128,
      networks: 16,
      lifecycles: N,
      durationS: null,
      rate: null,
      ports: 1,
      keep: 0,
      sandbox: false,
      leakCheck: false,
      injectLeak: null,
      timeoutS: 300,
      progress: false,
      lone: 0,
      pool,
    } as const;
    try {
      await runLoad({ ...opts, lifecycles: 32 }); // warm up, creates the networks
      let errors = 0;
      const r = await measure(`pipeline, batch-max ${B}`, N, async () => {
        const res = await runLoad(opts);
        errors += res.errors.total;
      }, { minSamples: 2, maxTime: 3 });
      if (errors > 0) process.stderr.write(`  (${errors} failed requests during the samples)\n`);
      series.points.push({ batch: B, opsPerSec: r.opsPerSec, rme: r.rme, samples: r.samples });
    } finally {
      await deleteNetworks(plugin.socketPath, pool);
      await plugin.stop();
    }
  }
  return {
    suite: 'pipeline',
    title: 'whole pipeline through the socket vs --batch-max',
    unit: 'lifecycles',
    note: 'Container lifecycles (CreateEndpoint, Join, ProgramExternalConnectivity with one published port, Revoke, Leave, DeleteEndpoint) by 128 concurrent clients over 16 networks, against a plugin spawned with `--batch-max B` (2 workers, default window). Each sample runs 64 (B ≤ 4), 256 (B = 16) or 512 lifecycles.',
    series: [series],
    loadavg: '',
    when: new Date().toISOString(),
  };
}

const SUITES: Record<string, () => Promise<SuiteResult>> = {
  'veth-create': vethCreate,
  'veth-delete': vethDelete,
  firewall,
  pipeline,
};

async function main(argv: string[]): Promise<number> {
  const names = argv.length > 0 ? argv : Object.keys(SUITES);
  for (const n of names) if (SUITES[n] === undefined) throw new Error(`unknown suite ${n} (have: ${Object.keys(SUITES).join(', ')})`);
  const kernel = names.some((n) => n !== 'pipeline');
  if (kernel && isInitNetns(null)) throw new Error('refusing to run kernel benches in the root network namespace: run under `unshare --net` (npm run bench does)');
  if (kernel) await runOk(['ip', '-batch', '-'], `link add name ${BRIDGE} type bridge\nlink set dev ${BRIDGE} up\n`);
  try {
    for (const n of names) {
      const la = loadavg();
      const t = performance.now();
      const r = { ...(await (SUITES[n] as () => Promise<SuiteResult>)()), loadavg: la };
      const files = writeResults(r);
      process.stderr.write(`  ${n}: ${((performance.now() - t) / 1000).toFixed(0)} s -> ${files.join(', ')}\n`);
    }
  } finally {
    if (kernel) await runCmd(['ip', 'link', 'del', BRIDGE]);
  }
  return 0;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) {
  main(process.argv.slice(2)).then(
    (c) => (process.exitCode = c),
    (e: unknown) => {
      process.stderr.write(`bench: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exitCode = 1;
    },
  );
}
