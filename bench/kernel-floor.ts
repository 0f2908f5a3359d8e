// The kernel floor: the veth, bridge and rule work of N container lifecycles (one published port
// each, 16 networks) done by hand-written `ip -batch` and `iptables-restore --noflush` files in
// batches of 256, with veth deletion by link group: per batch one ip file creating 256 veth pairs
// (enslaved, up), one restore adding 256 DNAT rules, one removing them, one ip file moving the
// veths into a link group and deleting the group. No HTTP, no books, no planning: what batchbridge
// is compared against.
//
//   unshare --net node dist/bench/kernel-floor.js [--lifecycles 4096] [--batch 256] [--networks 16] [--keep N] [--runs N] [--json] [--save]
//
// --save also writes kernel-floor.json into a new bench/results/<date>-<commit>/ folder.
//
// --keep N first makes N more veth pairs on the same bridges (not timed) and leaves them there
// during the timed lifecycles, like the load harness's --keep: what the kernel itself costs with
// that many interfaces around.
//
// Runs in the namespace it is started in, and refuses the host's root namespace. Creates bridges
// bbfloor<n> and chain BBFLOOR-DNAT, removes them at the end.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { realpathSync } from 'node:fs';
import { renderIpScript, type IpLine } from '../src/ip/lines.js';
import { runOk } from '../scripts/load/exec.js';
import { isInitNetns } from '../scripts/load/run.js';
import { currentCommit, datedDir, RESULTS_ROOT } from './output.js';

export interface FloorResult {
  readonly lifecycles: number;
  readonly batch: number;
  readonly networks: number;
  readonly keep: number;
  readonly seconds: number;
  readonly lifecyclesPerSec: number;
  /** seconds spent in each step, summed over batches */
  readonly steps: { vethCreate: number; rulesAdd: number; rulesDel: number; vethDelete: number };
}

const GROUP = 0x62660000; // "bf": never a group the plugin (0x6262xxxx) or anyone else uses

export async function runKernelFloor(lifecycles: number, batch = 256, networks = 16, keep = 0): Promise<FloorResult> {
  if (isInitNetns(null)) throw new Error('kernel-floor: refusing to run in the root network namespace (run it under `unshare --net`)');
  const bridges = Array.from({ length: networks }, (_, i) => `bbfloor${i}`);
  await runOk(['ip', '-batch', '-'], renderIpScript(bridges.flatMap((b): IpLine[] => [{ op: 'bridge-add', name: b, mtu: 0 }, { op: 'link-up', dev: b }])));
  await runOk(['iptables-restore', '--noflush', '-w'], '*nat\n:BBFLOOR-DNAT - [0:0]\n-A PREROUTING -m addrtype --dst-type LOCAL -j BBFLOOR-DNAT\nCOMMIT\n');
  const steps = { vethCreate: 0, rulesAdd: 0, rulesDel: 0, vethDelete: 0 };
  const KEEP_GROUP = GROUP + 1;
  let t0 = performance.now();
  let tEnd = t0;
  try {
    for (let k = 0; k < keep; k += 256) {
      const lines: IpLine[] = [];
      for (let i = k; i < Math.min(keep, k + 256); i++) {
        lines.push({ op: 'veth-add', host: `vk${i.toString(36)}`, peer: `vl${i.toString(36)}`, bridge: bridges[i % networks] as string, mtu: 0, group: KEEP_GROUP });
      }
      await runOk(['ip', '-force', '-batch', '-'], renderIpScript(lines));
    }
    t0 = performance.now();
    let n = 0;
    for (let done = 0; done < lifecycles; done += batch) {
      const size = Math.min(batch, lifecycles - done);
      const eps = Array.from({ length: size }, () => {
        const i = n++;
        const net = i % networks;
        return { host: `vf${i.toString(36)}`, peer: `vg${i.toString(36)}`, bridge: bridges[net] as string, ip: `198.18.${(net * 16) + ((i >> 8) & 15)}.${(i & 255) || 1}`, port: 32768 + (i % 28000) };
      });
      let t = performance.now();
      // the same lines the plugin writes (the ip vocabulary, src/ip/lines.ts)
      await runOk(['ip', '-force', '-batch', '-'], renderIpScript(eps.map((e): IpLine => ({ op: 'veth-add', host: e.host, peer: e.peer, bridge: e.bridge, mtu: 0 }))));
      steps.vethCreate += performance.now() - t;
      const rule = (e: (typeof eps)[number]): string =>
        `BBFLOOR-DNAT -p tcp -m tcp --dport ${e.port} -m comment --comment bb:ep=${e.host} -j DNAT --to-destination ${e.ip}:80`;
      t = performance.now();
      await runOk(['iptables-restore', '--noflush', '-w'], `*nat\n${eps.map((e) => `-A ${rule(e)}\n`).join('')}COMMIT\n`);
      steps.rulesAdd += performance.now() - t;
      t = performance.now();
      await runOk(['iptables-restore', '--noflush', '-w'], `*nat\n${eps.map((e) => `-D ${rule(e)}\n`).join('')}COMMIT\n`);
      steps.rulesDel += performance.now() - t;
      t = performance.now();
      await runOk(['ip', '-force', '-batch', '-'], renderIpScript([...eps.map((e): IpLine => ({ op: 'set-group', dev: e.host, group: GROUP })), { op: 'del-group', group: GROUP }]));
      steps.vethDelete += performance.now() - t;
    }
    tEnd = performance.now();
  } finally {
    if (keep > 0) await runOk(['ip', 'link', 'del', 'group', String(KEEP_GROUP)]).catch(() => '');
    await runOk(['iptables-restore', '--noflush', '-w'], '*nat\n-D PREROUTING -m addrtype --dst-type LOCAL -j BBFLOOR-DNAT\n-F BBFLOOR-DNAT\n-X BBFLOOR-DNAT\nCOMMIT\n').catch(() => '');
    await runOk(['ip', '-force', '-batch', '-'], renderIpScript(bridges.map((b): IpLine => ({ op: 'link-del', dev: b })))).catch(() => '');
  }
  const seconds = (tEnd - t0) / 1000;
  const r3 = (v: number): number => Math.round(v) / 1000;
  return {
    lifecycles,
    batch,
    networks,
    keep,
    seconds: Math.round(seconds * 1000) / 1000,
    lifecyclesPerSec: Math.round((lifecycles / seconds) * 10) / 10,
    steps: { vethCreate: r3(steps.vethCreate), rulesAdd: r3(steps.rulesAdd), rulesDel: r3(steps.rulesDel), vethDelete: r3(steps.vethDelete) },
  };
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: { lifecycles: { type: 'string' }, batch: { type: 'string' }, networks: { type: 'string' }, keep: { type: 'string' }, json: { type: 'boolean' }, runs: { type: 'string' }, save: { type: 'boolean' } },
    strict: true,
  });
  const runs = Number(values.runs ?? 1);
  const results: FloorResult[] = [];
  for (let i = 0; i < runs; i++) results.push(await runKernelFloor(Number(values.lifecycles ?? 4096), Number(values.batch ?? 256), Number(values.networks ?? 16), Number(values.keep ?? 0)));
  const best = results.reduce((a, b) => (b.lifecyclesPerSec > a.lifecyclesPerSec ? b : a));
  if (values.save) {
    // A new dated folder, as the bench suites use: never over committed results.
    const dir = datedDir(RESULTS_ROOT, new Date(), currentCommit(), ['kernel-floor']);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'kernel-floor.json'), `${JSON.stringify({ runs: results, best, loadavg: readLoad() }, null, 2)}\n`);
    process.stderr.write(`saved ${join(dir, 'kernel-floor.json')}\n`);
  }
  if (values.json) process.stdout.write(`${JSON.stringify({ runs: results, best })}\n`);
  else {
    for (const r of results) {
      process.stdout.write(
        `kernel floor: ${r.lifecycles} lifecycles in batches of ${r.batch} over ${r.networks} bridges${r.keep > 0 ? ` with ${r.keep} other veths on them` : ''}: ${r.seconds} s -> ${r.lifecyclesPerSec} lifecycles/s ` +
          `(veth create ${r.steps.vethCreate} s, DNAT add ${r.steps.rulesAdd} s, DNAT del ${r.steps.rulesDel} s, veth group delete ${r.steps.vethDelete} s)\n`,
      );
    }
  }
  return 0;
}

function readLoad(): string {
  try {
    return readFileSync('/proc/loadavg', 'utf8').trim();
  } catch {
    return '';
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) {
  main().then(
    (c) => (process.exitCode = c),
    (e: unknown) => {
      process.stderr.write(`kernel-floor: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exitCode = 1;
    },
  );
}
