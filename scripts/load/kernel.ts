// Kernel state the leak check compares: links (`ip -j -d link`), both rulesets (iptables-save /
// ip6tables-save, counters stripped), and the harness's own sandbox namespaces. Everything is
// read inside the plugin's namespace through nsenter; nothing here writes to the kernel except
// injectLeak (the test hook that proves the check works).
import { readdirSync } from 'node:fs';
import { inNetns, runCmd, runOk } from './exec.js';

export interface KernelSnapshot {
  /** ifname → kind ("veth", "bridge", "" …) */
  readonly links: Map<string, string>;
  readonly rules4: string[];
  readonly rules6: string[];
  /** named namespaces whose name starts with the run's sandbox prefix */
  readonly sandboxes: string[];
}

export function normalizeRules(save: string): string[] {
  const out: string[] = [];
  for (const raw of save.split('\n')) {
    const line = raw.trimEnd();
    if (line === '' || line.startsWith('#')) continue;
    // ":CHAIN POLICY [packets:bytes]" → ":CHAIN POLICY"; "[n:m] -A …" (iptables-save -c) never used
    out.push(line.replace(/^(:\S+ \S+) \[\d+:\d+\]$/, '$1'));
  }
  return out;
}

export async function snapshotKernel(nsPath: string | null, sandboxPrefix: string | null): Promise<KernelSnapshot> {
  const [linkOut, v4, v6] = await Promise.all([
    runOk(inNetns(nsPath, ['ip', '-j', '-d', 'link', 'show'])),
    runOk(inNetns(nsPath, ['iptables-save'])),
    runCmd(inNetns(nsPath, ['ip6tables-save'])),
  ]);
  const links = new Map<string, string>();
  for (const l of JSON.parse(linkOut) as Array<{ ifname?: string; linkinfo?: { info_kind?: string } }>) {
    if (typeof l.ifname === 'string') links.set(l.ifname, l.linkinfo?.info_kind ?? '');
  }
  let sandboxes: string[] = [];
  if (sandboxPrefix !== null) {
    try {
      sandboxes = readdirSync('/run/netns').filter((n) => n.startsWith(sandboxPrefix));
    } catch {
      sandboxes = [];
    }
  }
  return { links, rules4: normalizeRules(v4), rules6: v6.code === 0 ? normalizeRules(v6.stdout) : [], sandboxes };
}

function multisetDiff(before: readonly string[], after: readonly string[]): { added: string[]; removed: string[] } {
  const count = new Map<string, number>();
  for (const l of before) count.set(l, (count.get(l) ?? 0) + 1);
  const added: string[] = [];
  for (const l of after) {
    const n = count.get(l) ?? 0;
    if (n > 0) count.set(l, n - 1);
    else added.push(l);
  }
  const removed: string[] = [];
  for (const [l, n] of count) for (let i = 0; i < n; i++) removed.push(l);
  return { added, removed };
}

export interface LeakReport {
  readonly ok: boolean;
  readonly problems: string[];
}

/** Everything that differs between the two snapshots, as human-readable problems. */
export function compareSnapshots(before: KernelSnapshot, after: KernelSnapshot): LeakReport {
  const problems: string[] = [];
  for (const [name, kind] of after.links) {
    if (!before.links.has(name)) problems.push(`link left behind: ${name}${kind ? ` (${kind})` : ''}`);
  }
  for (const [name] of before.links) if (!after.links.has(name)) problems.push(`link vanished: ${name}`);
  for (const [fam, b, a] of [
    ['iptables', before.rules4, after.rules4],
    ['ip6tables', before.rules6, after.rules6],
  ] as const) {
    const d = multisetDiff(b, a);
    for (const l of d.added) problems.push(`${fam} rule left behind: ${l}`);
    for (const l of d.removed) problems.push(`${fam} rule vanished: ${l}`);
  }
  for (const l of [...after.rules4, ...after.rules6]) {
    if (/bb:ep=/.test(l) && !problems.some((p) => p.endsWith(l))) problems.push(`endpoint rule present: ${l}`);
  }
  for (const n of after.sandboxes) if (!before.sandboxes.includes(n)) problems.push(`sandbox namespace left behind: ${n}`);
  return { ok: problems.length === 0, problems };
}

export type LeakKind = 'veth' | 'rule' | 'rule6';

/** Test hook: leave something behind on purpose, so a test can prove the check catches it. */
export async function injectLeak(nsPath: string | null, kind: LeakKind): Promise<string> {
  switch (kind) {
    case 'veth':
      await runOk(inNetns(nsPath, ['ip', 'link', 'add', 'bbleak0', 'type', 'veth', 'peer', 'name', 'bbleak1']));
      return 'bbleak0';
    case 'rule':
      await runOk(inNetns(nsPath, ['iptables-restore', '--noflush', '-w']), '*nat\n-A BB-DNAT -p tcp -m tcp --dport 9 -m comment --comment bb:ep=injectedleak -j RETURN\nCOMMIT\n');
      return 'bb:ep=injectedleak';
    case 'rule6':
      await runOk(inNetns(nsPath, ['ip6tables-restore', '--noflush', '-w']), '*filter\n:BBLEAK - [0:0]\nCOMMIT\n');
      return 'BBLEAK';
  }
}
