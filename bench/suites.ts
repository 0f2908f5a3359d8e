// The batch-size suites (benchmark.js): veth creation, veth deletion (one by one vs link group),
// firewall changes (iptables per rule vs one iptables-restore per batch), and the whole pipeline
// through the plugin socket (--batch-max = size). Each runs every batch size once per repeat,
// repeats outermost, so a change of machine load spreads over all sizes alike. The kernel suites
// work in the namespace the process runs in (run.ts refuses the root namespace); the pipeline
// suite starts each plugin in a throwaway namespace of its own.
import { runCmd, runOk, runSyncCmd } from '../scripts/load/exec.js';
import { deleteNetworks, runLoad, type NetworkPool } from '../scripts/load/run.js';
import { spawnPlugin } from '../scripts/load/spawn.js';
import { loadavg, measure } from './lib.js';
import { record, type Series, type SuiteResult } from './results.js';

/** What a suite is given: the batch sizes to measure and how many times to measure each. */
export interface SuiteContext {
  readonly sizes: readonly number[];
  readonly repeats: number;
}

/** A suite's own part of its result; run.ts adds the date, commit, load and repeats. */
export type SuiteOutput = Pick<SuiteResult, 'suite' | 'title' | 'unit' | 'xLabel' | 'note' | 'series'>;

const GROUP = 0x62650000; // "be": the benches' link group, never the plugin's (0x6262xxxx)
/** The bridge the kernel suites' veths are enslaved to; run.ts creates and removes it. */
export const BRIDGE = 'bbbench0';
let seq = 0;

function vethLine(host: string, peer: string): string {
  // the plugin's own line (as src/ip/lines.ts renders a veth-add)
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

function header(suite: string, repeat: number, ctx: SuiteContext): void {
  process.stderr.write(`== ${suite}, repeat ${repeat + 1} of ${ctx.repeats} (load average ${loadavg()})\n`);
}

// ------------------------------------------------------------------------------- veth creation

async function vethCreate(ctx: SuiteContext): Promise<SuiteOutput> {
  const W = 256;
  const W1 = 64;
  const series: Series = { name: 'ip -batch per batch (create + enslave + up)', points: [] };
  const single: Series = { name: 'ip process per veth', points: [], reference: true };
  let made: string[] = [];
  const cleanup = (): void => {
    deleteAllSync(made);
    made = [];
  };
  for (let rep = 0; rep < ctx.repeats; rep++) {
    header('veth-create', rep, ctx);
    for (const B of ctx.sizes) {
      const r = await measure(`veth create, batch ${B}`, W, async () => {
        const hosts = newPairs(W);
        made.push(...hosts);
        for (let i = 0; i < W; i += B) await ipBatch(hosts.slice(i, i + B).map((h) => vethLine(h, peerOf(h))));
      }, { betweenSamples: cleanup });
      cleanup();
      record(series, B, r);
    }
    // `ip link add ...` as its own process per veth (no -batch): what a per-operation driver pays.
    const r1 = await measure('veth create, one ip process each', W1, async () => {
      const hosts = newPairs(W1);
      made.push(...hosts);
      for (const h of hosts) await runOk(['ip', ...vethLine(h, peerOf(h)).split(' ')]);
    }, { betweenSamples: cleanup });
    cleanup();
    for (const B of ctx.sizes) record(single, B, r1);
  }
  return {
    suite: 'veth-create',
    title: 'veth pair creation vs batch size',
    unit: 'veth pairs',
    xLabel: 'batch size (lines per ip -batch process)',
    note: `Each sample creates ${W} veth pairs (enslaved to a bridge, up; the plugin's exact line) in \`ip -force -batch -\` processes of B lines each. Reference: one \`ip link add\` process per pair (no batching, measured once per repeat).`,
    series: [series, single],
  };
}

// ------------------------------------------------------------------------------- veth deletion

async function vethDelete(ctx: SuiteContext): Promise<SuiteOutput> {
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
  try {
    for (let rep = 0; rep < ctx.repeats; rep++) {
      header('veth-delete', rep, ctx);
      for (const B of ctx.sizes) {
        W = Math.max(128, B);
        restock();
        const r = await measure(`veth delete one by one, batch ${B}`, W, async () => {
          const hosts = take();
          for (let i = 0; i < W; i += B) await ipBatch(hosts.slice(i, i + B).map((h) => `link del dev ${h}`));
        }, { betweenSamples: restock, maxTime: 3 });
        record(oneByOne, B, r);
        const g = await measure(`veth delete by link group, batch ${B}`, W, async () => {
          const hosts = take();
          for (let i = 0; i < W; i += B) await ipBatch([...hosts.slice(i, i + B).map((h) => `link set dev ${h} group ${GROUP}`), `link del group ${GROUP}`]);
        }, { betweenSamples: restock, maxTime: 3 });
        record(group, B, g);
      }
    }
  } finally {
    deleteAllSync(stock);
    stock = [];
  }
  return {
    suite: 'veth-delete',
    title: 'veth deletion vs batch size',
    unit: 'veths deleted',
    xLabel: 'batch size (veths per ip -batch process)',
    note: `Each sample deletes max(128, B) veth pairs, B per \`ip -force -batch -\` process: either one \`link del dev\` line per veth (one RCU grace period each), or every veth of the batch put into one link group and one \`link del group\` (one grace period per batch).`,
    series: [oneByOne, group],
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

async function firewall(ctx: SuiteContext): Promise<SuiteOutput> {
  const CH = 'BBBENCH-DNAT';
  const empty: Series = { name: 'iptables-restore per batch', points: [] };
  const full: Series = { name: 'iptables-restore per batch, 10k rules in the chain', points: [] };
  const perRule: Series = { name: 'iptables process per rule', points: [], reference: true };
  const run = async (label: string, into: Series, B: number): Promise<void> => {
    const W = Math.max(64, B);
    const r = await measure(`${label}, batch ${B}`, 2 * W, async () => {
      const base = seq;
      seq += W;
      for (let i = 0; i < W; i += B) await restore(Array.from({ length: Math.min(B, W - i) }, (_, k) => `-A ${dnat(base + i + k, CH)}`));
      for (let i = 0; i < W; i += B) await restore(Array.from({ length: Math.min(B, W - i) }, (_, k) => `-D ${dnat(base + i + k, CH)}`));
    }, { maxTime: 3 });
    record(into, B, r);
  };
  await restore([`:${CH} - [0:0]`, `-A PREROUTING -m addrtype --dst-type LOCAL -j ${CH}`]);
  try {
    for (let rep = 0; rep < ctx.repeats; rep++) {
      header('firewall', rep, ctx);
      for (const B of ctx.sizes) await run('rules add+delete', empty, B);
      const W1 = 32;
      const r1 = await measure('rules add+delete, one iptables process each', 2 * W1, async () => {
        const base = seq;
        seq += W1;
        for (let i = 0; i < W1; i++) await runOk(['iptables', '-w', '-t', 'nat', '-A', ...dnat(base + i, CH).split(' ')]);
        for (let i = 0; i < W1; i++) await runOk(['iptables', '-w', '-t', 'nat', '-D', ...dnat(base + i, CH).split(' ')]);
      }, { maxTime: 3 });
      for (const B of ctx.sizes) record(perRule, B, r1);
      // 10,000 DNAT rules in the same chain (as with --keep 10000): does a change cost O(ruleset)?
      await restore(Array.from({ length: 10_000 }, (_, i) => `-A ${dnat(1_000_000 + i, CH)}`));
      for (const B of ctx.sizes) await run('rules add+delete with 10k present', full, B);
      await restore([`-F ${CH}`]);
    }
  } finally {
    await restore([`-D PREROUTING -m addrtype --dst-type LOCAL -j ${CH}`, `-F ${CH}`, `-X ${CH}`]).catch(() => undefined);
  }
  return {
    suite: 'firewall',
    title: 'firewall changes vs batch size',
    unit: 'rule changes',
    xLabel: 'batch size (rules per iptables-restore)',
    note: 'Each sample adds W = max(64, B) DNAT rules (the plugin\'s published-port rule) and deletes them again, B rules per `iptables-restore --noflush` (nf_tables backend); a change is one add or one delete. The second series does the same with 10,000 other DNAT rules in that chain. Reference: one `iptables -A`/`-D` process per rule.',
    series: [empty, full, perRule],
  };
}

// ------------------------------------------------------------------------------------- pipeline

async function pipelineOnce(B: number): Promise<Awaited<ReturnType<typeof measure>>> {
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
    return r;
  } finally {
    await deleteNetworks(plugin.socketPath, pool);
    await plugin.stop();
  }
}

async function pipeline(ctx: SuiteContext): Promise<SuiteOutput> {
  const series: Series = { name: 'plugin, --batch-max B, 128 clients', points: [] };
  for (let rep = 0; rep < ctx.repeats; rep++) {
    header('pipeline', rep, ctx);
    for (const B of ctx.sizes) record(series, B, await pipelineOnce(B));
  }
  return {
    suite: 'pipeline',
    title: 'whole pipeline through the socket vs --batch-max',
    unit: 'lifecycles',
    xLabel: 'plugin --batch-max',
    note: 'Container lifecycles (CreateEndpoint, Join, ProgramExternalConnectivity with one published port, Revoke, Leave, DeleteEndpoint) by 128 concurrent clients over 16 networks, against a plugin spawned with `--batch-max B` (2 workers, default window). Each sample runs 64 (B ≤ 4), 256 (B = 16) or 512 lifecycles.',
    series: [series],
  };
}

export interface Suite {
  readonly run: (ctx: SuiteContext) => Promise<SuiteOutput>;
  /** works on the kernel of the namespace the bench runs in (else: spawns its own namespaces) */
  readonly kernel: boolean;
  readonly about: string;
}

export const SUITES: Readonly<Record<string, Suite>> = {
  'veth-create': { run: vethCreate, kernel: true, about: 'veth pairs created per second, ip -batch of B lines vs one ip process each' },
  'veth-delete': { run: vethDelete, kernel: true, about: 'veths deleted per second, link del per veth vs link group + one bulk delete' },
  firewall: { run: firewall, kernel: true, about: 'DNAT rule changes per second, iptables-restore of B rules (empty chain, 10k rules) vs one iptables each' },
  pipeline: { run: pipeline, kernel: false, about: 'container lifecycles per second through the plugin socket, --batch-max B, 128 clients' },
};
