// What one CNI call costs the host in the executable the runtime starts: the C forwarder
// (dist/cni/batchbridge-cni), the same forward path in Node (bench/cni-node-forwarder.cjs), and
// a shell script that does nothing (the floor for any plugin a runtime executes). The two
// forwarders talk to a stub daemon (the real CNI socket server, a handler that does no work) in
// a process of its own, so that its CPU is counted apart.
//
//   node dist/bench/cni-exec.js [--calls 640] [--node-calls 64] [--concurrency 32] [--variants c,node,sh]
// (Node costs ~50x more per call; fewer calls keep its run short on a shared machine.)
//
// CPU per call: the executables' user+system time from this process's cutime/cstime
// (/proc/self/stat: children that were waited for), the stub daemon's from /proc/PID/stat, and
// this harness's own (spawning) from process.cpuUsage(). Clock ticks are 1/100 s.
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const TICK_MS = 10;
const { values } = parseArgs({ options: { calls: { type: 'string' }, 'node-calls': { type: 'string' }, concurrency: { type: 'string' }, variants: { type: 'string' } } });
const CALLS = Number(values.calls ?? 640);
const NODE_CALLS = Number(values['node-calls'] ?? 64);
const CONCURRENCY = Number(values.concurrency ?? 32);
const VARIANTS = (values.variants ?? 'c,node,sh').split(',');
const CONF = JSON.stringify({ cniVersion: '1.0.0', name: 'bench', type: 'batchbridge-cni', ipam: { ranges: [[{ subnet: '198.18.64.0/24' }]] }, runtimeConfig: { portMappings: [{ hostPort: 18080, containerPort: 80, protocol: 'tcp' }] } });

function ticks(stat: string): [number, number, number, number] {
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields 14-17 of proc(5), counted from "state" as field 3
  return [Number(f[11]), Number(f[12]), Number(f[13]), Number(f[14])];
}

function once(file: string, env: NodeJS.ProcessEnv, i: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, [], {
      env: { ...env, CNI_COMMAND: 'ADD', CNI_CONTAINERID: `bench${i}`, CNI_NETNS: `/run/netns/bench${i}`, CNI_IFNAME: 'eth0', CNI_ARGS: 'IgnoreUnknown=1', CNI_PATH: '/opt/cni/bin' },
      stdio: ['pipe', 'ignore', 'ignore'],
    });
    child.on('error', reject);
    child.on('close', (code) => resolve(code ?? -1));
    child.stdin.on('error', () => undefined);
    child.stdin.end(CONF);
  });
}

async function measure(name: string, file: string, env: NodeJS.ProcessEnv, daemonPid: number | null, calls: number): Promise<void> {
  let next = 0;
  const worker = async (count: number): Promise<number> => {
    let failed = 0;
    for (let i = next++; i < count; i = next++) if ((await once(file, env, i)) !== 0) failed++;
    return failed;
  };
  next = 0;
  await Promise.all(Array.from({ length: CONCURRENCY }, () => worker(16))); // warm-up
  next = 0;
  const self0 = ticks(readFileSync('/proc/self/stat', 'utf8'));
  const d0 = daemonPid === null ? null : ticks(readFileSync(`/proc/${daemonPid}/stat`, 'utf8'));
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const failed = (await Promise.all(Array.from({ length: CONCURRENCY }, () => worker(calls)))).reduce((a, b) => a + b, 0);
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const self1 = ticks(readFileSync('/proc/self/stat', 'utf8'));
  const d1 = daemonPid === null ? null : ticks(readFileSync(`/proc/${daemonPid}/stat`, 'utf8'));
  const childMs = (self1[2] - self0[2] + self1[3] - self0[3]) * TICK_MS;
  const daemonMs = d0 === null || d1 === null ? 0 : (d1[0] - d0[0] + d1[1] - d0[1]) * TICK_MS;
  const row = {
    variant: name,
    calls,
    failed,
    'wall s': (wallMs / 1000).toFixed(2),
    'calls/s': Math.round((calls * 1000) / wallMs),
    'exec CPU ms/call': (childMs / calls).toFixed(2),
    'daemon CPU ms/call': (daemonMs / calls).toFixed(2),
    'harness CPU ms/call': ((cpu.user + cpu.system) / 1000 / calls).toFixed(2),
  };
  process.stdout.write(`${JSON.stringify(row)}\n`);
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'bbt-cnibench-'));
  const socketPath = join(dir, 'cni.sock');
  const stub = spawn(process.execPath, [fileURLToPath(new URL('../test/helpers/cni-stub-daemon.js', import.meta.url)), socketPath], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    await new Promise<void>((resolve, reject) => {
      stub.stdout.once('data', () => resolve());
      stub.once('exit', (code) => reject(new Error(`stub daemon exited ${code}`)));
    });
    const nodeFwd = join(dir, 'node-forwarder');
    writeFileSync(nodeFwd, `#!${process.execPath}\n${readFileSync(new URL('../../bench/cni-node-forwarder.cjs', import.meta.url), 'utf8')}`);
    chmodSync(nodeFwd, 0o755);
    const sh = join(dir, 'noop.sh');
    writeFileSync(sh, '#!/bin/sh\nexit 0\n');
    chmodSync(sh, 0o755);
    const env = { ...process.env, BATCHBRIDGE_CNI_SOCKET: socketPath };
    const files: Record<string, [string, number | null]> = {
      c: [fileURLToPath(new URL('../cni/batchbridge-cni', import.meta.url)), stub.pid ?? null],
      node: [nodeFwd, stub.pid ?? null],
      sh: [sh, null],
    };
    process.stdout.write(`# ${CONCURRENCY} calls at a time; load average ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}\n`);
    for (const v of VARIANTS) {
      const f = files[v];
      if (f === undefined) throw new Error(`unknown variant ${v} (c, node, sh)`);
      await measure(v, f[0], env, f[1], v === 'node' ? NODE_CALLS : CALLS);
    }
  } finally {
    stub.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
