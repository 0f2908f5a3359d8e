// Pod lifecycles through CNI plugins, called exactly as a runtime calls them (test/helpers/cni-exec.ts
// does what libcni does): create the pod's namespace (`ip netns add`), ADD with one port mapping,
// DEL, delete the namespace. `--concurrency` pods at a time, `--total` in all; prints pods/s.
// Compared in the same run:
//   netns      namespace add/del alone (the floor of any runtime)
//   noop       a do-nothing plugin (a shell script): the ceiling of any plugin executed per call
//   reference  bridge + host-local + portmap from containernetworking-plugins
//   --plugin   any conflist (batchbridge's, once its executable exists); --cni-path adds its dir
// and, with --cri, pods/s through containerd's CRI (RunPodSandbox with a port mapping, Stop,
// Remove) with the reference chain and each --plugin conflist.
//
//   unshare --net node dist/bench/cni-pods.js [--total 400] [--concurrency 32] [--repeats 1]
//       [--variants netns,noop,reference] [--plugin CONFLIST]... [--cni-path DIR]
//       [--cri] [--cri-total 64] [--cri-concurrency 32]
//
// A plain timed run per repeat rather than benchmark.js: one sample is hundreds of pods and takes
// seconds (the reference chain: about a minute), too long for benchmark.js's many samples; every
// variant is timed the same way so their rates compare. Plugins act in the namespace this process
// runs in (hence unshare --net); pod namespaces are named bbbench-<hex>-<n> and always removed.
import { readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { isInitNetns } from '../scripts/load/run.js';
import { closeAll, makeTempDir, type Resource } from '../test/helpers/cleanup.js';
import { CniExec, parseConflist, type NetConfList, type RuntimeConf } from '../test/helpers/cni-exec.js';
import { noopPlugin, referenceConflist, referencePluginDir, REFERENCE_PLUGINS } from '../test/helpers/cni-fixtures.js';
import { startContainerd } from '../test/helpers/containerd.js';
import { createNetns } from '../test/helpers/netns.js';
import { randomHex, run, runSync } from '../test/helpers/proc.js';
import { loadavg } from './lib.js';

interface Variant {
  label: string;
  /** undefined: namespace add/del only */
  list: NetConfList | undefined;
}

interface RunStats {
  podsPerSec: number;
  seconds: number;
  addMs: number;
  delMs: number;
}

const live = new Set<string>();
process.on('exit', () => { for (const n of live) runSync(['ip', 'netns', 'del', n]); });

async function netnsAdd(name: string): Promise<void> {
  live.add(name);
  const r = await run(['ip', 'netns', 'add', name]);
  if (r.code !== 0) throw new Error(`ip netns add ${name}: ${r.stderr.trim()}`);
}

async function netnsDel(name: string): Promise<void> {
  const r = await run(['ip', 'netns', 'del', name]);
  if (r.code !== 0) throw new Error(`ip netns del ${name}: ${r.stderr.trim()}`);
  live.delete(name);
}

/** `n` tasks, `concurrency` at a time; the first error stops new starts and is rethrown. */
async function pool(n: number, concurrency: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failed: unknown;
  const worker = async () => {
    while (failed === undefined && next < n) {
      const i = next++;
      try {
        await task(i);
      } catch (e) {
        failed ??= e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker));
  if (failed !== undefined) throw failed;
}

async function lifecycles(v: Variant, cni: CniExec, total: number, concurrency: number, portBase: number): Promise<RunStats> {
  const tag = randomHex(3);
  let addMs = 0;
  let delMs = 0;
  const t0 = performance.now();
  await pool(total, concurrency, async (i) => {
    const name = `bbbench-${tag}-${i}`;
    await netnsAdd(name);
    if (v.list !== undefined) {
      const id = `${tag}${i.toString().padStart(6, '0')}`;
      const rt: RuntimeConf = {
        containerId: id,
        netns: `/run/netns/${name}`,
        ifName: 'eth0',
        args: [['IgnoreUnknown', '1'], ['K8S_POD_NAMESPACE', 'bench'], ['K8S_POD_NAME', `pod${i}`], ['K8S_POD_INFRA_CONTAINER_ID', id]],
        // containerd's keys (Podman's are lowercase; Go decodes either)
        capabilityArgs: { portMappings: [{ HostPort: portBase + (i % 10_000), ContainerPort: 80, Protocol: 'tcp', HostIP: '' }] },
      };
      const a = performance.now();
      await cni.addList(v.list, rt);
      const b = performance.now();
      await cni.delList(v.list, rt);
      addMs += b - a;
      delMs += performance.now() - b;
    }
    await netnsDel(name);
  });
  const seconds = (performance.now() - t0) / 1000;
  return { podsPerSec: total / seconds, seconds, addMs: addMs / total, delMs: delMs / total };
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[m] ?? 0) : ((s[m - 1] ?? 0) + (s[m] ?? 0)) / 2;
}

const fmt = (x: number) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));

async function criVariant(label: string, conflist: string, binDirs: readonly string[], total: number, concurrency: number, work: string): Promise<RunStats> {
  const bin = join(work, `cri-bin-${randomHex(3)}`);
  await referencePluginDir(bin);
  for (const d of binDirs) await run(['sh', '-c', 'for f in "$1"/*; do ln -sf "$f" "$2/"; done', 'sh', d, bin]);
  const host = await createNetns({ prefix: 'bbbench-cri' });
  const resources: Resource[] = [host];
  try {
    const ctd = await startContainerd(host, { binDir: bin, conflist });
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
    return { podsPerSec: total / seconds, seconds, addMs: 0, delMs: 0 };
  } finally {
    const errors = await closeAll(resources);
    for (const e of errors) process.stderr.write(`  clean-up: ${e.message}\n`);
  }
}

interface Options {
  total: number;
  concurrency: number;
  repeats: number;
  variants: string[];
  plugins: Array<{ file: string; text: string }>;
  cniPath: string[];
  cri: { total: number; concurrency: number } | undefined;
}

function options(): Options | undefined {
  const { values } = parseArgs({
    options: {
      total: { type: 'string', default: '400' },
      concurrency: { type: 'string', default: '32' },
      repeats: { type: 'string', default: '1' },
      variants: { type: 'string', default: 'netns,noop,reference' },
      plugin: { type: 'string', multiple: true, default: [] },
      'cni-path': { type: 'string', multiple: true, default: [] },
      cri: { type: 'boolean', default: false },
      'cri-total': { type: 'string', default: '64' },
      'cri-concurrency': { type: 'string', default: '32' },
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
  for (const v of variants) if (!['netns', 'noop', 'reference'].includes(v)) throw new Error(`unknown variant ${v} (netns, noop, reference)`);
  return {
    total: num(values.total, 'total'),
    concurrency: num(values.concurrency, 'concurrency'),
    repeats: num(values.repeats, 'repeats'),
    variants,
    plugins: values.plugin.map((file) => {
      const text = readFileSync(file, 'utf8');
      parseConflist(text);
      return { file, text };
    }),
    cniPath: values['cni-path'],
    cri: values.cri ? { total: num(values['cri-total'], 'cri-total'), concurrency: num(values['cri-concurrency'], 'cri-concurrency') } : undefined,
  };
}

const NOOP_LIST = '{"cniVersion":"1.0.0","name":"bench-noop","plugins":[{"type":"noop","capabilities":{"portMappings":true}}]}';

/** The exec variants, each timed `repeats` times after a warm-up; prints a line per variant and the ratios. */
async function execVariants(o: Options, work: string): Promise<void> {
  const bin = await referencePluginDir(join(work, 'bin'), REFERENCE_PLUGINS);
  await noopPlugin(bin, 'noop');
  const cni = new CniExec({ path: [...o.cniPath, bin], cacheDir: join(work, 'cache') });
  const reference = referenceConflist({ name: 'bench-ref', bridge: 'bbbench0', subnet: '198.18.128.0/22', dataDir: join(work, 'ipam') });
  const byName: Record<string, Variant> = {
    netns: { label: 'namespace add/del alone', list: undefined },
    noop: { label: 'do-nothing plugin (sh)', list: parseConflist(NOOP_LIST) },
    reference: { label: 'reference chain (bridge+host-local+portmap)', list: parseConflist(reference) },
  };
  const variants = o.variants.map((v) => byName[v] as Variant);
  for (const p of o.plugins) variants.push({ label: `${parseConflist(p.text).name} (${p.file})`, list: parseConflist(p.text) });

  process.stdout.write(`cni-pods: ${o.total} pod lifecycles, ${o.concurrency} at a time, ${o.repeats} repeat(s); load average at start ${loadavg()}\n`);
  const rates = new Map<string, number>();
  for (const v of variants) {
    await lifecycles(v, cni, Math.min(o.concurrency, o.total), o.concurrency, 40000); // warm-up
    const runs: RunStats[] = [];
    for (let r = 0; r < o.repeats; r++) runs.push(await lifecycles(v, cni, o.total, o.concurrency, 20000));
    const m = median(runs.map((x) => x.podsPerSec));
    rates.set(v.label, m);
    const lat = v.list === undefined ? '' : `  (mean ADD ${fmt(median(runs.map((x) => x.addMs)))} ms, DEL ${fmt(median(runs.map((x) => x.delMs)))} ms)`;
    process.stdout.write(`  ${v.label.padEnd(48)} ${fmt(m).padStart(7)} pods/s  [${runs.map((x) => fmt(x.podsPerSec)).join(', ')}]${lat}  load ${loadavg()}\n`);
  }
  const base = rates.get(byName['noop']?.label ?? '');
  const ref = rates.get(byName['reference']?.label ?? '');
  for (const v of variants.slice(o.variants.length)) {
    const m = rates.get(v.label) ?? 0;
    if (base !== undefined) process.stdout.write(`  ${v.label}: ${(m / base).toFixed(2)} of the do-nothing plugin\n`);
    if (ref !== undefined) process.stdout.write(`  ${v.label}: ${(m / ref).toFixed(1)}x the reference chain\n`);
  }
}

async function criVariants(o: Options, cri: NonNullable<Options['cri']>, work: string): Promise<void> {
  process.stdout.write(`cri: ${cri.total} pods through containerd's CRI (RunPodSandbox with a port mapping, Stop, Remove), ${cri.concurrency} at a time\n`);
  await mkdir(work);
  const lists = [
    { label: 'reference chain', text: referenceConflist({ name: 'bench-cri-ref', bridge: 'bbbcri0', subnet: '198.18.132.0/22', dataDir: join(work, 'ipam') }) },
    ...o.plugins.map((p) => ({ label: parseConflist(p.text).name, text: p.text })),
  ];
  for (const l of lists) {
    const s = await criVariant(l.label, l.text, o.cniPath, cri.total, cri.concurrency, work);
    process.stdout.write(`  ${`CRI, ${l.label}`.padEnd(48)} ${fmt(s.podsPerSec).padStart(7)} pods/s  (${s.seconds.toFixed(1)} s)  load ${loadavg()}\n`);
  }
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
    for (const n of [...live]) await netnsDel(n).catch(() => {});
    await tmp.close();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`cni-pods: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
});
