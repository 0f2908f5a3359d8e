// What a CNI pod costs in the kernel tools, step by step, with the very lines batchbridge writes
// (src/ip/lines.ts, src/ip/sandbox.ts): for `--pods` pod namespaces at once,
//   host     one `ip -force -batch` creating every pod's veth with its container end made in
//            the pod's namespace (the shared host-side script of a veth batch);
//   in-pod   per pod, one `ip -n NAME -force -batch` with its address, link up and default route
//            (one after the other, for the CPU of one; then 8 at a time, as a sandbox batch runs
//            them, for the wall time);
//   delete   one script moving the veths to a link group and deleting the group (a deletion batch).
// CPU is the tools' user + system time (this process's cutime/cstime), wall is wall time; both
// per pod, medians of --runs. No daemon: the kernel and ip only.
//
//   unshare --net node dist/bench/cni-pod-cost.js [--pods 32] [--runs 5]
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { renderIpScript, type IpLine } from '../src/ip/lines.js';
import { ipInNetns, sandboxLines } from '../src/ip/sandbox.js';
import { runLimited } from '../src/tools/limit.js';
import { DEFAULT_TOOLS } from '../src/tools/paths.js';
import { isInitNetns } from '../scripts/load/run.js';
import { randomHex, run, runOk } from '../test/helpers/proc.js';
import { loadavg } from './lib.js';

const TICK_MS = 10;
const GROUP = 0x62670000; // never a group batchbridge uses (0x6262xxxx, 0x63xxxxxx)

function childCpuMs(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[13]) + Number(f[14])) * TICK_MS;
}

async function timed(fn: () => Promise<unknown>): Promise<{ wallMs: number; cpuMs: number }> {
  const c0 = childCpuMs();
  const t0 = performance.now();
  await fn();
  return { wallMs: performance.now() - t0, cpuMs: childCpuMs() - c0 };
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? 0;
}

async function ipBatch(file: string, args: readonly string[], lines: readonly IpLine[]): Promise<void> {
  const r = await run([file, ...args], { input: renderIpScript(lines) });
  if (r.code !== 0 || r.stderr.trim() !== '') throw new Error(`${file} ${args.join(' ')}: ${r.stderr.trim()}`);
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { pods: { type: 'string', default: '32' }, runs: { type: 'string', default: '5' } } });
  const pods = Number(values.pods);
  const runs = Number(values.runs);
  if (isInitNetns(null)) throw new Error('cni-pod-cost: refusing to run in the root network namespace (run it under `unshare --net`)');
  const tag = randomHex(3);
  const names = Array.from({ length: pods }, (_, i) => `bbcost-${tag}-${i}`);
  const bridge = 'bbcost0';
  await ipBatch('ip', ['-batch', '-'], [{ op: 'bridge-add', name: bridge, mtu: 0 }, { op: 'addr-add', addr: '198.18.96.1/22', dev: bridge }, { op: 'link-up', dev: bridge }]);
  const rows: Record<string, number[]> = { hostWall: [], hostCpu: [], podCpu: [], podWall: [], pod8Wall: [], delWall: [], delCpu: [] };
  try {
    for (const n of names) await runOk(['ip', 'netns', 'add', n]);
    const hosts = names.map((_, i) => `vcost${i.toString(36)}`);
    const setup = (i: number) => sandboxLines({ dev: 'eth0', addrs: [`198.18.${96 + Math.floor((i + 2) / 256)}.${(i + 2) % 256}/22`], routes: [{ dst: '0.0.0.0/0', via: '198.18.96.1' }] });
    const inPod = (i: number) => {
      const { file, args } = ipInNetns(DEFAULT_TOOLS, `/run/netns/${names[i] as string}`, ['-force', '-batch', '-']);
      return ipBatch(file, args, setup(i));
    };
    const create = () => ipBatch('ip', ['-force', '-batch', '-'], hosts.map((h, i): IpLine => ({ op: 'veth-add', host: h, peer: 'eth0', bridge, mtu: 0, peerNetns: `/run/netns/${names[i] as string}`, peerMac: undefined })));
    const remove = () => ipBatch('ip', ['-force', '-batch', '-'], [...hosts.map((h): IpLine => ({ op: 'set-group', dev: h, group: GROUP })), { op: 'del-group', group: GROUP }]);
    for (let r = 0; r < runs; r++) {
      const h = await timed(create);
      rows.hostWall?.push(h.wallMs / pods);
      rows.hostCpu?.push(h.cpuMs / pods);
      const one = await timed(async () => {
        for (let i = 0; i < pods; i++) await inPod(i);
      });
      rows.podWall?.push(one.wallMs / pods);
      rows.podCpu?.push(one.cpuMs / pods);
      const d = await timed(remove);
      rows.delWall?.push(d.wallMs / pods);
      rows.delCpu?.push(d.cpuMs / pods);
      await create();
      const par = await timed(() => runLimited(names.map((_, i) => i), 8, inPod));
      rows.pod8Wall?.push(par.wallMs / pods);
      await remove();
    }
  } finally {
    for (const n of names) await run(['ip', 'netns', 'del', n]);
    await run(['ip', 'link', 'del', bridge]);
  }
  const f = (k: string) => median(rows[k] ?? []).toFixed(2);
  process.stdout.write(`cni-pod-cost: ${pods} pods, median of ${runs} runs, ms per pod; load average ${loadavg()}\n`);
  process.stdout.write(`  host-side script creating ${pods} veths into their pods  wall ${f('hostWall')}  CPU ${f('hostCpu')}\n`);
  process.stdout.write(`  in-pod ip -n batch (addr, up, route), one at a time   wall ${f('podWall')}  CPU ${f('podCpu')}\n`);
  process.stdout.write(`  in-pod ip -n batch, 8 at a time                        wall ${f('pod8Wall')}\n`);
  process.stdout.write(`  group delete of ${pods} veths                              wall ${f('delWall')}  CPU ${f('delCpu')}\n`);
}

main().catch((e: unknown) => {
  process.stderr.write(`cni-pod-cost: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
});
