// Helpers for the kernel tests of the ip pipeline and the Driver. They run in the private network
// namespace the runner lives in (`unshare --net node --test --test-concurrency=1 dist/test/netns/`),
// which every test file shares one after another: each test removes what it created.
import assert from 'node:assert/strict';
import { readFileSync, readlinkSync } from 'node:fs';
import { run, runOk } from '../helpers/proc.js';

/** Refuse to touch a namespace that some ancestor process (or init) also lives in. */
export function assertPrivateNetns(): void {
  const nsOf = (pid: number | 'self'): string | null => {
    try {
      return readlinkSync(`/proc/${pid}/ns/net`);
    } catch {
      return null;
    }
  };
  const parentOf = (pid: number): number => {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    } catch {
      return 0;
    }
  };
  const mine = nsOf('self');
  assert.ok(mine !== null, 'cannot read /proc/self/ns/net');
  const init = nsOf(1);
  if (init !== null) {
    assert.notEqual(init, mine, 'kernel tests must run in a private network namespace: unshare --net node --test dist/test/netns/');
    return;
  }
  for (let pid = process.ppid; pid > 1; pid = parentOf(pid)) {
    const ns = nsOf(pid);
    if (ns !== null && ns !== mine) return;
  }
  assert.fail('kernel tests must run in a private network namespace: unshare --net node --test dist/test/netns/');
}

export interface Link {
  ifname: string;
  flags: string[];
  mtu: number;
  master?: string;
  txqlen?: number;
  group?: string;
  operstate?: string;
  link?: string;
  linkinfo?: { info_kind?: string; info_slave_kind?: string };
  addr_info?: Array<{ family: string; local: string; prefixlen: number }>;
}

export async function links(): Promise<Link[]> {
  return JSON.parse(await runOk(['ip', '-j', '-d', 'link', 'show'])) as Link[];
}

export async function linkMap(): Promise<Map<string, Link>> {
  return new Map((await links()).map((l) => [l.ifname, l]));
}

export async function linkNames(): Promise<string[]> {
  return (await links()).map((l) => l.ifname).sort();
}

export async function addrs(dev: string): Promise<string[]> {
  const out = JSON.parse(await runOk(['ip', '-j', 'addr', 'show', 'dev', dev])) as Link[];
  return (out[0]?.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`);
}

const CLEANUP_GROUP = 0x62627fff;

/**
 * Delete links by name, ignoring the ones already gone (test clean-up). Through a link group, so
 * that many veths cost one RCU grace period instead of one each.
 */
export async function deleteLinks(names: Iterable<string>): Promise<void> {
  const list = [...names].filter((n) => n !== 'lo');
  if (list.length === 0) return;
  const script = [...list.map((n) => `link set dev ${n} group ${CLEANUP_GROUP}`), `link del group ${CLEANUP_GROUP}`, ...list.map((n) => `link del dev ${n}`)];
  await run(['ip', '-force', '-batch', '-'], { input: `${script.join('\n')}\n` });
}

export async function iptablesSave(family: 4 | 6): Promise<string> {
  return runOk([family === 4 ? 'iptables-save' : 'ip6tables-save']);
}

/**
 * Remove every BB- chain and every rule that names one, in both families, leaving everything else
 * as it was (test clean-up after syncFirewall).
 */
export async function removeOurFirewall(): Promise<void> {
  for (const family of [4, 6] as const) {
    const save = await iptablesSave(family);
    if (!save.includes('BB-') && !save.includes('bb:')) continue;
    const kept = save
      .split('\n')
      .filter((l) => !l.includes('BB-') && !l.includes('bb:net=') && !l.includes('bb:ep='))
      .join('\n');
    await runOk([family === 4 ? 'iptables-restore' : 'ip6tables-restore', '-w'], { input: kept });
  }
}
