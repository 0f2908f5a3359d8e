// Pod lifecycles through CNI plugins, called exactly as a runtime calls them (test/helpers/cni-exec.ts
// does what libcni does): create the pod's namespace (`ip netns add`), ADD with one port mapping,
// DEL, delete the namespace. `--concurrency` pods at a time, `--total` in all; prints pods/s.
// Compared in the same run:
//   netns      namespace add/del alone (the floor of any runtime)
//   noop       a do-nothing plugin (a shell script): the ceiling of any plugin executed per call
//   reference  bridge + host-local + portmap from containernetworking-plugins
//   batchbridge       batchbridge itself: `batchbridge serve --cni-socket` started here (temp
//                     state, sockets; bench/cni-daemon.ts), the C forwarder and a conflist from
//                     `batchbridge cni-install`; stopped after the run
//   batchbridge-node  the same daemon, called through the forward path written in Node
//                     (bench/cni-node-forwarder.cjs) instead of the C forwarder
//   --plugin   any other conflist; --cni-path adds its dir
// and, with --cri, pods/s through containerd's CRI (RunPodSandbox with a port mapping, Stop,
// Remove) with the reference chain, batchbridge (its own daemon in containerd's namespace) when
// the batchbridge variant is chosen, and each --plugin conflist.
// For batchbridge the CPU per pod is printed too: the executables the harness ran (netns add/del
// and the plugin calls) and the daemon's (its own, and that of the ip/iptables it ran).
//
//   unshare --net node dist/bench/cni-pods.js [--total 400] [--concurrency 32] [--threads 1] [--repeats 1]
//       [--variants netns,noop,reference,batchbridge[,batchbridge-node]] [--plugin CONFLIST]...
//       [--cni-path DIR] [--cri] [--cri-total 64] [--cri-concurrency 32] [--daemon-stats FILE]
//       [--daemon-node-arg ARG]...
// --threads: the harness starts processes from this many threads (bench/cni-pod-threads.ts says
// why: one thread was the harness's own limit), `concurrency` pods at a time in all.
// --daemon-stats: batchbridge's daemon (the exec variants') writes its batch statistics there
// when it stops (bench/batch-stats.ts: batches, sizes, ip and iptables-restore runs per pipeline).
// --daemon-node-arg: a node option for that daemon, e.g. --cpu-prof --cpu-prof-dir=DIR (then
// node dist/bench/prof-summary.js DIR/*.cpuprofile).
//
// A plain timed run per repeat rather than benchmark.js: one sample is hundreds of pods and takes
// seconds (the reference chain: about a minute), too long for benchmark.js's many samples; every
// variant is timed the same way so their rates compare. Plugins act in the namespace this process
// runs in (hence unshare --net); pod namespaces are named bbbench-<hex>-<n> and always removed.
import { readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { isInitNetns } from '../scripts/load/run.js';
import { closeAll, makeTempDir, type Resource } from '../test/helpers/cleanup.js';
import { parseConflist } from '../test/helpers/cni-exec.js';
import { noopPlugin, referenceConflist, referencePluginDir, REFERENCE_PLUGINS } from '../test/helpers/cni-fixtures.js';
import { startContainerd } from '../test/helpers/containerd.js';
import { createNetns, type Netns } from '../test/helpers/netns.js';
import { randomHex, run, sleep } from '../test/helpers/proc.js';
import { PodThreads, pool, removeLeftNamespaces } from './cni-pod-threads.js';
import { startBenchDaemon, type BenchDaemon, type DaemonCpu } from './cni-daemon.js';
import { loadavg } from './lib.js';

interface Variant {
  label: string;
  /** null: namespace add/del only */
  conflist: string | null;
  /** plugin dirs */
  path: readonly string[];
  cacheDir: string;
  /** batchbridge's daemon, whose CPU is reported */
  daemon?: BenchDaemon;
  /** netns, noop, reference: what the others are compared with */
  baseline?: boolean;
}

interface RunStats {
  podsPerSec: number;
  seconds: number;
  addMs: number;
  delMs: number;
  /** CPU per pod, ms: the executables this harness waited for (netns add/del, plugins) */
  execCpuMs: number;
  /** CPU per pod, ms: this harness itself (starting those, libcni's work) */
  harnessCpuMs: number;
  /** share of the time the harness's threads' event loops were busy: near 1, the harness is the limit */
  harnessBusy: number;
  /** CPU per pod, ms: the daemon itself, its tool launchers, and the tools it ran */
  daemon: DaemonCpu | undefined;
}

const TICK_MS = 10;

/** user + system of the children this process waited for, in ms */
function childCpuMs(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[13]) + Number(f[14])) * TICK_MS;
}

/** tags of this run's pod namespaces (bbbench-<tag>-<n>), removed at exit if a run failed */
const tags = new Set<string>();
process.on('exit', () => removeLeftNamespaces(tags));

async function lifecycles(threads: PodThreads, v: Variant, total: number, concurrency: number, portBase: number): Promise<RunStats> {
  const tag = randomHex(3);
  tags.add(tag);
  const cpu0 = childCpuMs();
  const d0 = v.daemon?.cpuMs();
  const own0 = process.cpuUsage();
  const t0 = performance.now();
  const r = await threads.run({ conflist: v.conflist, path: v.path, cacheDir: v.cacheDir, tag, portBase }, total, concurrency);
  const seconds = (performance.now() - t0) / 1000;
  const d1 = v.daemon?.cpuMs();
  const own = process.cpuUsage(own0);
  return {
    podsPerSec: total / seconds,
    seconds,
    addMs: r.addMs / total,
    delMs: r.delMs / total,
    execCpuMs: (childCpuMs() - cpu0) / total,
    harnessCpuMs: (own.user + own.system) / 1000 / total,
    harnessBusy: r.busy,
    daemon: d0 === undefined || d1 === undefined ? undefined : { own: (d1.own - d0.own) / total, launchers: (d1.launchers - d0.launchers) / total, tools: (d1.tools - d0.tools) / total },
  };
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[m] ?? 0) : ((s[m - 1] ?? 0) + (s[m] ?? 0)) / 2;
}

const fmt = (x: number) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));

/** What a CRI variant runs: its conflist, extra plugin dirs, and what to stop afterwards. */
interface CriSetup {
  conflist: string;
  binDirs: readonly string[];
  resources: Resource[];
}

async function criVariant(label: string, setup: (host: Netns) => Promise<CriSetup>, total: number, concurrency: number, work: string): Promise<RunStats> {
  const bin = join(work, `cri-bin-${randomHex(3)}`);
  await referencePluginDir(bin);
  const host = await createNetns({ prefix: 'bbbench-cri' });
  const resources: Resource[] = [host];
  try {
    const s = await setup(host);
    resources.push(...s.resources);
    for (const d of s.binDirs) await run(['sh', '-c', 'for f in "$1"/*; do ln -sf "$f" "$2/"; done', 'sh', d, bin]);
    const ctd = await startContainerd(host, { binDir: bin, conflist: s.conflist });
    resources.push(ctd);
    await ctd.importPauseImage();
    const one = async (i: number) => {
      const id = await ctd.cri.runPodSandbox({
        metadata: { name: `pod${i}`, uid: `uid-${i}-${label}`, namespace: 'bench' },
        logDirectory: join(ctd.dir, 'logs', `pod${i}`),
        portMappings: [{ protocol: 'TCP', containerPort: 80, hostPort: 30000 + i }],
        linux: { cgroupParent: ctd.cgroupParent },
      });
      await ctd.cri.stopPodSandbox(id);
      await ctd.cri.removePodSandbox(id);
    };
    await pool(Math.min(4, total), 4, one); // warm-up: image unpack, first shims
    const t0 = performance.now();
    await pool(total, concurrency, (i) => one(i + 1000));
    const seconds = (performance.now() - t0) / 1000;
    return { podsPerSec: total / seconds, seconds, addMs: 0, delMs: 0, execCpuMs: 0, harnessCpuMs: 0, harnessBusy: 0, daemon: undefined };
  } finally {
    // containerd first (its teardown still calls the plugins), then the daemon, then the namespace
    const errors = await closeAll(resources);
    for (const e of errors) process.stderr.write(`  clean-up: ${e.message}\n`);
  }
}

const BASELINES = ['netns', 'noop', 'reference'];
const BATCHBRIDGE = ['batchbridge', 'batchbridge-node'];

interface Options {
  total: number;
  concurrency: number;
  repeats: number;
  threads: number;
  variants: string[];
  plugins: Array<{ file: string; text: string }>;
  cniPath: string[];
  cri: { total: number; concurrency: number } | undefined;
  daemonStats: string | undefined;
  daemonNodeArgs: string[];
}

function options(): Options | undefined {
  const { values } = parseArgs({
    options: {
      total: { type: 'string', default: '400' },
      concurrency: { type: 'string', default: '32' },
      repeats: { type: 'string', default: '1' },
      threads: { type: 'string', default: '1' },
      variants: { type: 'string', default: 'netns,noop,reference,batchbridge' },
      plugin: { type: 'string', multiple: true, default: [] },
      'cni-path': { type: 'string', multiple: true, default: [] },
      cri: { type: 'boolean', default: false },
      'cri-total': { type: 'string', default: '64' },
      'cri-concurrency': { type: 'string', default: '32' },
      'daemon-stats': { type: 'string' },
      'daemon-node-arg': { type: 'string', multiple: true, default: [] },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    const header = readFileSync(new URL(import.meta.url), 'utf8').split('\n').filter((l) => l.startsWith('//'));
    process.stdout.write(`${header.map((l) => l.slice(3)).join('\n')}\n`);
    return undefined;
  }
  const num = (s: string, what: string) => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < 1) throw new Error(`--${what} wants a positive integer, not ${JSON.stringify(s)}`);
    return n;
  };
  const variants = values.variants.split(',').filter((v) => v !== '');
  const known = [...BASELINES, ...BATCHBRIDGE];
  for (const v of variants) if (!known.includes(v)) throw new Error(`unknown variant ${v} (${known.join(', ')})`);
  return {
    total: num(values.total, 'total'),
    concurrency: num(values.concurrency, 'concurrency'),
    repeats: num(values.repeats, 'repeats'),
    threads: num(values.threads, 'threads'),
    variants,
    plugins: values.plugin.map((file) => {
      const text = readFileSync(file, 'utf8');
      parseConflist(text);
      return { file, text };
    }),
    cniPath: values['cni-path'],
    cri: values.cri ? { total: num(values['cri-total'], 'cri-total'), concurrency: num(values['cri-concurrency'], 'cri-concurrency') } : undefined,
    daemonStats: values['daemon-stats'] === undefined ? undefined : resolve(values['daemon-stats']),
    daemonNodeArgs: values['daemon-node-arg'],
  };
}

const NOOP_LIST = '{"cniVersion":"1.0.0","name":"bench-noop","plugins":[{"type":"noop","capabilities":{"portMappings":true}}]}';

/**
 * Fails when a veth is left in this namespace after every pod was DELed (batchbridge deletes its
 * veths itself; the kernel removes those of deleted pod namespaces asynchronously, hence a wait).
 */
async function noVethsLeft(label: string): Promise<void> {
  for (let i = 0; ; i++) {
    const r = await run(['ip', '-o', 'link', 'show', 'type', 'veth']);
    const n = r.stdout.split('\n').filter((l) => l.trim() !== '').length;
    if (n === 0) return;
    if (i >= 50) throw new Error(`${label}: ${n} veth(s) left after every pod was deleted:\n${r.stdout}`);
    await sleep(100);
  }
}

/** The variants, in the order given: baselines, batchbridge's (one daemon for both), --plugin lists. */
async function buildVariants(o: Options, work: string, bin: string, resources: Resource[]): Promise<Variant[]> {
  const common = { path: [...o.cniPath, bin], cacheDir: join(work, 'cache') };
  const reference = referenceConflist({ name: 'bench-ref', bridge: 'bbbench0', subnet: '198.18.128.0/22', dataDir: join(work, 'ipam') });
  let daemon: BenchDaemon | undefined;
  const bb = async (): Promise<BenchDaemon> => {
    if (daemon !== undefined) return daemon;
    const dir = join(work, 'bb');
    await mkdir(dir);
    daemon = await startBenchDaemon({ dir, name: 'bench-bb', subnet: '198.18.136.0/22', bridge: 'bbbench1', nodeArgs: o.daemonNodeArgs, ...(o.daemonStats === undefined ? {} : { batchStats: o.daemonStats }) });
    resources.push(daemon);
    return daemon;
  };
  const out: Variant[] = [];
  for (const v of o.variants) {
    if (v === 'netns') out.push({ label: 'namespace add/del alone', conflist: null, ...common, baseline: true });
    else if (v === 'noop') out.push({ label: 'do-nothing plugin (sh)', conflist: NOOP_LIST, ...common, baseline: true });
    else if (v === 'reference') out.push({ label: 'reference chain (bridge+host-local+portmap)', conflist: reference, ...common, baseline: true });
    else {
      const d = await bb();
      const node = v === 'batchbridge-node';
      out.push({
        label: node ? 'batchbridge, Node forwarder' : 'batchbridge (C forwarder)',
        conflist: d.conflist,
        path: [node ? d.nodeBinDir : d.binDir, bin],
        cacheDir: join(work, 'cache'),
        daemon: d,
      });
    }
  }
  for (const p of o.plugins) out.push({ label: `${parseConflist(p.text).name} (${p.file})`, conflist: p.text, ...common });
  return out;
}

/** The exec variants, each timed `repeats` times after a warm-up; prints a line per variant and the ratios. */
async function execVariants(o: Options, work: string): Promise<void> {
  const bin = await referencePluginDir(join(work, 'bin'), REFERENCE_PLUGINS);
  await noopPlugin(bin, 'noop');
  const resources: Resource[] = [];
  const threads = new PodThreads(o.threads);
  try {
    const variants = await buildVariants(o, work, bin, resources);
    process.stdout.write(`cni-pods: ${o.total} pod lifecycles, ${o.concurrency} at a time from ${o.threads} thread(s), ${o.repeats} repeat(s); load average at start ${loadavg()}\n`);
    const rates = new Map<string, number>();
    for (const v of variants) {
      await lifecycles(threads, v, Math.min(o.concurrency, o.total), o.concurrency, 40000); // warm-up
      const runs: RunStats[] = [];
      for (let r = 0; r < o.repeats; r++) runs.push(await lifecycles(threads, v, o.total, o.concurrency, 20000));
      const m = median(runs.map((x) => x.podsPerSec));
      rates.set(v.label, m);
      const med = (f: (x: RunStats) => number) => fmt(median(runs.map(f)));
      const lat = v.conflist === null ? '' : `  (mean ADD ${med((x) => x.addMs)} ms, DEL ${med((x) => x.delMs)} ms)`;
      process.stdout.write(`  ${v.label.padEnd(48)} ${fmt(m).padStart(7)} pods/s  [${runs.map((x) => fmt(x.podsPerSec)).join(', ')}]${lat}  load ${loadavg()}\n`);
      const daemon = v.daemon === undefined ? '' : `; daemon ${med((x) => x.daemon?.own ?? 0)} ms, its launchers ${med((x) => x.daemon?.launchers ?? 0)} ms, the tools it ran ${med((x) => x.daemon?.tools ?? 0)} ms`;
      const harness = `the harness ${med((x) => x.harnessCpuMs)} ms (event loop busy ${Math.round(median(runs.map((x) => x.harnessBusy)) * 100)} %)`;
      process.stdout.write(`  ${''.padEnd(48)} CPU per pod: ${harness}, executables it ran ${med((x) => x.execCpuMs)} ms${daemon}\n`);
      if (v.daemon !== undefined) await noVethsLeft(v.label);
    }
    const base = rates.get('do-nothing plugin (sh)');
    const ref = rates.get('reference chain (bridge+host-local+portmap)');
    for (const v of variants.filter((x) => x.baseline !== true)) {
      const m = rates.get(v.label) ?? 0;
      if (base !== undefined) process.stdout.write(`  ${v.label}: ${(m / base).toFixed(2)} of the do-nothing plugin\n`);
      if (ref !== undefined) process.stdout.write(`  ${v.label}: ${(m / ref).toFixed(1)}x the reference chain\n`);
    }
  } finally {
    await threads.close();
    const errors = await closeAll(resources);
    for (const e of errors) process.stderr.write(`  clean-up: ${e.message}\n`);
  }
}

async function criVariants(o: Options, cri: NonNullable<Options['cri']>, work: string): Promise<void> {
  process.stdout.write(`cri: ${cri.total} pods through containerd's CRI (RunPodSandbox with a port mapping, Stop, Remove), ${cri.concurrency} at a time\n`);
  await mkdir(work);
  const fixed = (conflist: string, binDirs: readonly string[]) => (): Promise<CriSetup> => Promise.resolve({ conflist, binDirs, resources: [] });
  const lists: Array<{ label: string; setup: (host: Netns) => Promise<CriSetup> }> = [
    { label: 'reference chain', setup: fixed(referenceConflist({ name: 'bench-cri-ref', bridge: 'bbbcri0', subnet: '198.18.132.0/22', dataDir: join(work, 'ipam') }), o.cniPath) },
  ];
  if (o.variants.includes('batchbridge')) {
    lists.push({
      label: 'batchbridge',
      // Its own daemon in containerd's namespace, where the plugins act (bridge, host veths, rules).
      setup: async (host) => {
        const dir = join(work, `bb-${randomHex(3)}`);
        await mkdir(dir);
        const d = await startBenchDaemon({ dir, name: 'bench-cri-bb', subnet: '198.18.140.0/22', bridge: 'bbbcri1', netnsPath: host.path });
        return { conflist: d.conflist, binDirs: [d.binDir], resources: [d] };
      },
    });
  }
  for (const p of o.plugins) lists.push({ label: parseConflist(p.text).name, setup: fixed(p.text, o.cniPath) });
  const rates = new Map<string, number>();
  for (const l of lists) {
    const s = await criVariant(l.label, l.setup, cri.total, cri.concurrency, work);
    rates.set(l.label, s.podsPerSec);
    process.stdout.write(`  ${`CRI, ${l.label}`.padEnd(48)} ${fmt(s.podsPerSec).padStart(7)} pods/s  (${s.seconds.toFixed(1)} s)  load ${loadavg()}\n`);
  }
  const ref = rates.get('reference chain');
  for (const l of lists.slice(1)) if (ref !== undefined) process.stdout.write(`  CRI, ${l.label}: ${((rates.get(l.label) ?? 0) / ref).toFixed(1)}x the reference chain\n`);
}

async function main(): Promise<void> {
  const o = options();
  if (o === undefined) return;
  if (isInitNetns(null)) throw new Error('refusing to run in the root network namespace: run under `unshare --net`');
  await run(['ip', 'link', 'set', 'lo', 'up']);
  const tmp = await makeTempDir('bbbench-cni-');
  try {
    await execVariants(o, tmp.path);
    if (o.cri !== undefined) await criVariants(o, o.cri, join(tmp.path, 'cri'));
  } finally {
    removeLeftNamespaces(tags);
    await tmp.close();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`cni-pods: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
});
