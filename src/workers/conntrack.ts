// Clears conntrack entries whose reply direction involves an endpoint address, as the built-in
// driver does on RevokeExternalConnectivity (moby/moby#8795): no stale flow keeps going to a
// container that is gone. Best effort: "0 flow entries deleted" is the common case.
//
// Cost (measured, 2 cores): every filtered `conntrack -D` walks the whole conntrack table in the
// kernel, ~10-20 ms each, and there are two per address; done per endpoint that was most of a
// Revoke batch's time. So per batch we first read /proc/net/nf_conntrack once (~0.2 ms, this
// namespace's table) and only flush the addresses that appear in some flow, all in one
// `conntrack -R -` process. Without that file (no nf_conntrack procfs), every address is flushed,
// still in one process.
import { readFile } from 'node:fs/promises';
import type { ConntrackFlush } from '../batching/work.js';
import type { ToolEnv } from '../tools/env.js';

/** Full, uncompressed form, as the kernel prints IPv6 addresses in /proc/net/nf_conntrack (%pI6). */
export function expandIpv6(addr: string): string | null {
  let a = addr.toLowerCase();
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(a);
  if (v4) {
    const b = v4.slice(1).map(Number);
    if (b.some((x) => x > 255)) return null;
    const hi = (((b[0] ?? 0) << 8) | (b[1] ?? 0)).toString(16);
    const lo = (((b[2] ?? 0) << 8) | (b[3] ?? 0)).toString(16);
    a = `${a.slice(0, v4.index)}${hi}:${lo}`;
  }
  const halves = a.split('::');
  if (halves.length > 2) return null;
  const head = halves[0] === '' ? [] : (halves[0] ?? '').split(':');
  const rest = halves.length === 2 ? (halves[1] === '' ? [] : (halves[1] ?? '').split(':')) : [];
  let groups: string[];
  if (halves.length === 2) {
    const fill = 8 - head.length - rest.length;
    if (fill < 1) return null;
    groups = [...head, ...Array<string>(fill).fill('0'), ...rest];
  } else groups = head;
  if (groups.length !== 8 || groups.some((g) => !/^[0-9a-f]{1,4}$/.test(g))) return null;
  return groups.map((g) => g.padStart(4, '0')).join(':');
}

/** The flushes whose address occurs in some flow of `table` (the text of /proc/net/nf_conntrack). */
export function flushesWithFlows(flushes: readonly ConntrackFlush[], table: string): ConntrackFlush[] {
  if (table.length === 0) return [];
  return flushes.filter((f) => {
    const text = f.family === 4 ? f.address : expandIpv6(f.address);
    if (text === null) return true; // cannot tell: flush it
    return table.includes(`src=${text} `) || table.includes(`dst=${text} `);
  });
}

export async function flushConntrack(flushes: readonly ConntrackFlush[], env: ToolEnv): Promise<void> {
  if (flushes.length === 0) return;
  let todo: readonly ConntrackFlush[] = flushes;
  try {
    todo = flushesWithFlows(flushes, await readFile('/proc/net/nf_conntrack', 'utf8'));
  } catch {
    // no procfs view of the table: flush them all
  }
  if (todo.length === 0) return;
  const lines: string[] = [];
  for (const f of todo) {
    const fam = f.family === 4 ? 'ipv4' : 'ipv6';
    lines.push(`-D -f ${fam} --reply-src ${f.address}`, `-D -f ${fam} --reply-dst ${f.address}`);
  }
  const r = await env.run(env.tools.conntrack, ['-R', '-'], `${lines.join('\n')}\n`);
  if (r.exitCode === 0 || r.spawnError !== null) return;
  // An old conntrack without -R (< 1.4.6): one process per filter, as before.
  for (const f of todo) {
    const fam = f.family === 4 ? 'ipv4' : 'ipv6';
    await env.run(env.tools.conntrack, ['-D', '-f', fam, '--reply-src', f.address]);
    await env.run(env.tools.conntrack, ['-D', '-f', fam, '--reply-dst', f.address]);
  }
}
