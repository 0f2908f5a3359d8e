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

async function main(): Promise<void> {
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
    process.stdout.write(readFileSync(new URL(import.meta.url), 'utf8').split('\n').filter((l) => l.startsWith('//')).map((l) => l.slice(3)).join('\n') + '\n');
    return;
  }
  if (isInitNetns(null)) throw new Error('refusing to run in the root network namespace: run under `unshare --net`');
  const num = (s: string, what: string) => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < 1) throw new Error(`--${what} wants a positive integer, not ${JSON.stringify(s)}`);
    return n;
  };
  const total = num(values.total, 'total');
  const concurrency = num(values.concurrency, 'concurrency');
  const repeats = num(values.repeats, 'repeats');
  await run(['ip', 'link', 'set', 'lo', 'up']);

  const tmp = await makeTempDir('bbbench-cni-');
  try {
    const bin = await referencePluginDir(join(tmp.path, 'bin'), REFERENCE_PLUGINS);
    await noopPlugin(bin, 'noop');
    const path = [...values['cni-path'], bin];
    const cni = new CniExec({ path, cacheDir: join(tmp.path, 'cache') });
    const reference = referenceConflist({ name: 'bench-ref', bridge: 'bbbench0', subnet: '198.18.128.0/22', dataDir: join(tmp.path, 'ipam') });
    const variants: Variant[] = [];
    for (const v of values.variants.split(',').filter((s) => s !== '')) {
      if (v === 'netns') variants.push({ label: 'namespace add/del alone', list: undefined });
      else if (v === 'noop') variants.push({ label: 'do-nothing plugin (sh)', list: parseConflist('{"cniVersion":"1.0.0","name":"bench-noop","plugins":[{"type":"noop","capabilities":{"portMappings":true}}]}') });
      else if (v === 'reference') variants.push({ label: 'reference chain (bridge+host-local+portmap)', list: parseConflist(reference) });
      else throw new Error(`unknown variant ${v} (netns, noop, reference)`);
    }
    const plugins = values.plugin.map((f) => ({ file: f, text: readFileSync(f, 'utf8') }));
    for (const p of plugins) variants.push({ label: `${parseConflist(p.text).name} (${p.file})`, list: parseConflist(p.text) });

    process.stdout.write(`cni-pods: ${total} pod lifecycles, ${concurrency} at a time, ${repeats} repeat(s); load average at start ${loadavg()}\n`);
    const rows: Array<{ label: string; runs: RunStats[] }> = [];
    for (const v of variants) {
      await lifecycles(v, cni, Math.min(concurrency, total), concurrency, 40000); // warm-up
      const runs: RunStats[] = [];
      for (let r = 0; r < repeats; r++) runs.push(await lifecycles(v, cni, total, concurrency, 20000));
      rows.push({ label: v.label, runs });
      const m = median(runs.map((x) => x.podsPerSec));
      const lat = v.list === undefined ? '' : `  (mean ADD ${fmt(median(runs.map((x) => x.addMs)))} ms, DEL ${fmt(median(runs.map((x) => x.delMs)))} ms)`;
      process.stdout.write(`  ${v.label.padEnd(48)} ${fmt(m).padStart(7)} pods/s  [${runs.map((x) => fmt(x.podsPerSec)).join(', ')}]${lat}  load ${loadavg()}\n`);
    }
    const base = rows.find((r) => r.label.startsWith('do-nothing'));
    const ref = rows.find((r) => r.label.startsWith('reference'));
    for (const p of plugins) {
      const row = rows.find((r) => r.label.includes(`(${p.file})`));
      if (row === undefined) continue;
      const m = median(row.runs.map((x) => x.podsPerSec));
      if (base) process.stdout.write(`  ${row.label}: ${(m / median(base.runs.map((x) => x.podsPerSec))).toFixed(2)} of the do-nothing plugin\n`);
      if (ref) process.stdout.write(`  ${row.label}: ${(m / median(ref.runs.map((x) => x.podsPerSec))).toFixed(1)}x the reference chain\n`);
    }

    if (values.cri) {
      const criTotal = num(values['cri-total'], 'cri-total');
      const criConc = num(values['cri-concurrency'], 'cri-concurrency');
      process.stdout.write(`cri: ${criTotal} pods through containerd's CRI (RunPodSandbox with a port mapping, Stop, Remove), ${criConc} at a time\n`);
      const work = join(tmp.path, 'cri');
      await mkdir(work);
      const criLists = [{ label: 'reference chain', text: referenceConflist({ name: 'bench-cri-ref', bridge: 'bbbcri0', subnet: '198.18.132.0/22', dataDir: join(work, 'ipam') }) },
        ...plugins.map((p) => ({ label: parseConflist(p.text).name, text: p.text }))];
      for (const l of criLists) {
        const s = await criVariant(l.label, l.text, values['cni-path'], criTotal, criConc, work);
        process.stdout.write(`  ${`CRI, ${l.label}`.padEnd(48)} ${fmt(s.podsPerSec).padStart(7)} pods/s  (${s.seconds.toFixed(1)} s)  load ${loadavg()}\n`);
      }
    }
  } finally {
    for (const n of [...live]) await netnsDel(n).catch(() => {});
    await tmp.close();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`cni-pods: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
});
