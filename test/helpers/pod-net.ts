// Traffic checks inside pod network namespaces that a runtime created (any path: /run/netns/NAME,
// a containerd state dir, /proc/PID/ns/net): busybox httpd listeners started through nsenter, and
// an HTTP GET with busybox nc (busybox wget segfaults on this machine).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ORDER, track, untrack, type Resource } from './cleanup.js';
import type { Netns } from './netns.js';
import { eventually, run, signalPid, waitPidExit, type RunResult } from './proc.js';

/** Run argv inside the network namespace at `netnsPath`. */
export function inNetns(netnsPath: string, argv: readonly string[], timeoutMs = 15_000): Promise<RunResult> {
  return run(['nsenter', `--net=${netnsPath}`, ...argv], { timeoutMs });
}

/** GET / over `nc` from inside `from` (a Netns or a namespace path); the whole answer. */
export async function httpGet(from: Netns | string, addr: string, port: number): Promise<string> {
  const argv = ['busybox', 'nc', '-w', '3', addr, String(port)];
  const input = 'GET / HTTP/1.0\r\n\r\n';
  const r = typeof from === 'string'
    ? await run(['nsenter', `--net=${from}`, ...argv], { input, timeoutMs: 15_000 })
    : await from.exec(argv, { input, timeoutMs: 15_000 });
  return r.stdout;
}

export interface Listeners extends Resource {
  readonly pids: readonly number[];
}

/**
 * One `busybox httpd -f -p 80` per pod, each serving `body`, started through nsenter (so they are
 * our children, not the pod's); resolves once every one answers inside its pod.
 */
export async function podListeners(pods: ReadonlyArray<{ netns: string; body: string }>, wwwDir: string, port = 80): Promise<Listeners> {
  const children: ChildProcess[] = [];
  const kill = async () => {
    for (const c of children) if (c.pid !== undefined && c.exitCode === null) signalPid(c.pid, 'SIGKILL');
    for (const c of children) if (c.pid !== undefined) await waitPidExit(c.pid, 5_000);
  };
  let closing: Promise<void> | undefined;
  const l: Listeners = {
    get pids() { return children.flatMap((c) => (c.pid === undefined ? [] : [c.pid])); },
    label: `httpd listeners in ${pods.length} pod(s)`,
    order: ORDER.early,
    close: () => (closing ??= kill().finally(() => untrack(l))),
    emergencyCloseSync: () => { for (const c of children) if (c.pid !== undefined) signalPid(c.pid, 'SIGKILL'); },
  };
  track(l);
  try {
    for (const [i, p] of pods.entries()) {
      const dir = join(wwwDir, `pod${i}`);
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, 'index.html'), `${p.body}\n`);
      // nsenter execs httpd, so the child's pid is httpd's
      children.push(spawn('nsenter', [`--net=${p.netns}`, 'busybox', 'httpd', '-f', '-p', String(port), '-h', dir], { stdio: 'ignore' }));
    }
    await Promise.all(pods.map((p) => eventually(async () => {
      const body = await httpGet(p.netns, '127.0.0.1', port);
      if (!body.includes(p.body)) throw new Error(`listener in ${p.netns} not answering yet`);
    }, { timeoutMs: 10_000 })));
  } catch (e) {
    await l.close();
    throw e;
  }
  return l;
}
