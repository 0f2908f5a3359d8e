// A stateful, strict fake of the kernel at the tool boundary: it answers the tool runs
// (`ip -force -batch -`, `ip -j … show`, iptables-restore, iptables-save, conntrack) and the
// sysctl writes that the real code makes. Everything above it runs for real in unit tests: the
// engine, the pipelines, and the worker's batch orchestration (runBatch: two tracks, rule
// removals before the ip script, IPv4 rules undone when the IPv6 half fails, conntrack flushes),
// only in this thread instead of a worker thread.
//
// `ip -force -batch` semantics: each failing line reports `Command failed -:N` on stderr and the
// next lines still run. iptables-restore semantics: a table block is all or nothing and is
// committed at its COMMIT; a failing line reports "line N failed" and ends the run. A line either
// fake does not understand fails the test: it never silently accepts what the real tool would
// reject.
import assert from 'node:assert/strict';
import type { BatchRequest, BatchResponse } from '../../src/batching/work.js';
import type { SysctlWrite } from '../../src/domain/network-setup.js';
import { DEFAULT_TOOLS } from '../../src/tools/paths.js';
import type { ToolEnv } from '../../src/tools/env.js';
import type { ToolResult } from '../../src/tools/spawn.js';
import { runBatch } from '../../src/workers/batch-worker.js';
import { workerEnv, type WorkerEnv } from '../../src/workers/env.js';
import type { KernelExecutor } from '../../src/workers/pool.js';

export interface FakeLink {
  name: string;
  kind: 'bridge' | 'veth' | 'other';
  master: string | null;
  up: boolean;
  mtu: number;
  txqlen: number;
  peer: string | null;
  addrs: string[];
  group: number;
  mac: string | null;
  /** a veth whose peer is in a pod's namespace: that namespace's path */
  peerNetns?: string;
  hairpin?: boolean;
}

/** A pod's network namespace (CNI): its interfaces and routes. */
export interface FakePod {
  links: Map<string, FakeLink>;
  routes: Array<{ dst: string; via: string | null; dev: string }>;
}

export interface Faults {
  /** return an error text to make this script line fail (as `ip` would print it) */
  ipLine?: (line: string) => string | null;
  /** throw from runBatch (a worker that died) */
  batchThrows?: (req: BatchRequest) => boolean;
  /** delay each batch by this many ms (to let concurrent requests pile up) */
  delayMs?: number;
}

const ok = (stdout = ''): ToolResult => ({ exitCode: 0, stdout, stderr: '', spawnError: null });
const fail = (stderr: string, exitCode = 1): ToolResult => ({ exitCode, stdout: '', stderr, spawnError: null });

export class FakeKernel implements KernelExecutor {
  readonly links = new Map<string, FakeLink>();
  /** "4 nat BB-POSTROUTING -s …" → how many copies */
  readonly rules = new Map<string, number>();
  readonly sysctls = new Map<string, string>();
  /** pod namespaces by path (CNI_NETNS) */
  readonly pods = new Map<string, FakePod>();
  readonly batches: BatchRequest[] = [];
  readonly scripts: string[] = [];
  readonly execs: Array<{ file: string; args: readonly string[] }> = [];
  faults: Faults = {};
  closed = false;
  /** the real worker environment, over this fake's tools (no sessions: they need real processes) */
  readonly env: WorkerEnv;

  constructor() {
    this.env = workerEnv(
      { tools: DEFAULT_TOOLS, switches: { ipSessions: false, restoreSessions: false, earlyDelete: false }, firewall: 'iptables', directSpawn: false },
      { run: (f, a, i) => this.run(f, a, i), sysctl: (s) => this.sysctl(s) },
    );
  }

  /** The tool environment for the engine's own kernel reads (probes, reconciliation). */
  get tools(): ToolEnv {
    return this.env.tool;
  }

  /** A link that exists before the test (a user's bridge, someone else's veth). */
  addLink(name: string, kind: FakeLink['kind'], addrs: string[] = []): void {
    this.links.set(name, { name, kind, master: null, up: false, mtu: 1500, txqlen: 1000, peer: null, addrs: [...addrs], group: 0, mac: null });
  }

  addPod(path: string): FakePod {
    const pod: FakePod = { links: new Map(), routes: [] };
    this.pods.set(path, pod);
    return pod;
  }

  pod(path: string): FakePod {
    const p = this.pods.get(path);
    assert.ok(p, `no pod namespace ${path}`);
    return p;
  }

  /** The namespace dies: its interfaces go, and with them their veths' host ends. */
  removePod(path: string): void {
    this.pods.delete(path);
    for (const l of [...this.links.values()]) if (l.peerNetns === path) this.links.delete(l.name);
  }

  link(name: string): FakeLink {
    const l = this.links.get(name);
    assert.ok(l, `no link ${name}; links: ${[...this.links.keys()].join(', ')}`);
    return l;
  }

  ruleCount(): number {
    let n = 0;
    for (const c of this.rules.values()) n += c;
    return n;
  }

  /** Nothing of ours left: only the given links exist, no rules. */
  assertClean(keepLinks: readonly string[] = []): void {
    assert.deepEqual([...this.links.keys()].sort(), [...keepLinks].sort(), 'links left behind');
    assert.deepEqual([...this.rules.entries()].filter(([, c]) => c > 0), [], 'firewall rules left behind');
  }

  // ----------------------------------------------------------------- KernelExecutor

  async runBatch(req: BatchRequest): Promise<BatchResponse> {
    assert.equal(this.closed, false, 'runBatch after close');
    this.batches.push(structuredClone(req));
    // Like a worker thread, never answer in the same tick.
    await new Promise((r) => setTimeout(r, this.faults.delayMs ?? 0));
    if (this.faults.batchThrows?.(req) === true) throw new Error('fake worker died');
    return runBatch(req, this.env);
  }

  exec(file: string, args: readonly string[], input?: string): Promise<ToolResult> {
    assert.equal(this.closed, false, 'exec after close');
    return this.run(file, args, input);
  }

  linkPresent(name: string): boolean {
    return this.links.has(name);
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  // ----------------------------------------------------------------- the tools

  async run(file: string, args: readonly string[], input?: string): Promise<ToolResult> {
    this.execs.push({ file, args: [...args] });
    await new Promise((r) => setImmediate(r));
    const a = args.join(' ');
    const inPod = podCall(file, args);
    if (inPod !== null) return this.runInPod(inPod.path, inPod.args.join(' '), input ?? '');
    if (file === 'ip') {
      const show = /^-j link show dev (\S+)$/.exec(a);
      if (show !== null) {
        const l = this.links.get(show[1] as string);
        return l === undefined ? fail(`Device "${show[1] ?? ''}" does not exist.\n`) : ok(JSON.stringify([this.linkJson(l)]));
      }
      if (a === '-force -batch -') return this.ipBatch(input ?? '');
      if (a === '-j -d addr show' || a === '-j link show') return ok(JSON.stringify([...this.links.values()].map((l) => this.linkJson(l))));
      const dev = /^-j -d addr show dev (\S+)$/.exec(a);
      if (dev !== null) {
        const l = this.links.get(dev[1] as string);
        return l === undefined ? fail(`Device "${dev[1] ?? ''}" does not exist.\n`) : ok(JSON.stringify([this.linkJson(l)]));
      }
    }
    const family = file.startsWith('ip6') ? 6 : 4;
    if (file === 'iptables-restore' || file === 'ip6tables-restore') {
      if (a === '--version') return ok(`${file} v1.8.9 (legacy)\n`);
      assert.equal(a, '--noflush -w', `unexpected ${file} ${a}`);
      return this.restore(family, input ?? '');
    }
    if (file === 'iptables-save' || file === 'ip6tables-save') return ok(this.save(family));
    if (file === 'conntrack') return ok();
    assert.fail(`the fake kernel does not know: ${file} ${a}`);
  }

  private async sysctl(s: SysctlWrite): Promise<string | null> {
    this.sysctls.set(s.path, s.value);
    return null;
  }

  private linkJson(l: FakeLink): object {
    const addrInfo = l.addrs.map((x) => {
      const [local, len] = x.split('/');
      return { family: local?.includes(':') ? 'inet6' : 'inet', local, prefixlen: Number(len) };
    });
    return {
      ifindex: 2,
      ifname: l.name,
      ...(l.mac === null ? {} : { address: l.mac }),
      flags: l.up ? ['UP'] : [],
      mtu: l.mtu,
      group: l.group === 0 ? 'default' : String(l.group),
      ...(l.master === null ? {} : { master: l.master }),
      ...(l.kind === 'other' ? {} : { linkinfo: { info_kind: l.kind } }),
      addr_info: addrInfo,
    };
  }

  // ----------------------------------------------------------------- pods

  private runInPod(path: string, a: string, input: string): ToolResult {
    const pod = this.pods.get(path);
    if (pod === undefined) return fail(`Cannot open network namespace "${path}": No such file or directory\n`, 255);
    if (a === '-force -batch -') {
      this.scripts.push(`[${path}]\n${input}`);
      let stderr = '';
      input
        .slice(0, -1)
        .split('\n')
        .forEach((line, i) => {
          const err = this.faults.ipLine?.(`[pod] ${line}`) ?? this.podLine(pod, line);
          if (err !== null) stderr += `${err}\nCommand failed -:${i + 1}\n`;
        });
      return { exitCode: stderr === '' ? 0 : 1, stdout: '', stderr, spawnError: null };
    }
    const dev = /^-j addr show dev (\S+)$/.exec(a);
    if (dev !== null) {
      const l = pod.links.get(dev[1] as string);
      return l === undefined ? fail(`Device "${dev[1] ?? ''}" does not exist.\n`) : ok(JSON.stringify([this.linkJson(l)]));
    }
    if (a === '-j route show' || a === '-6 -j route show') {
      const v6 = a.startsWith('-6');
      const routes = pod.routes.filter((r) => r.dst.includes(':') === v6).map((r) => ({ dst: r.dst === '0.0.0.0/0' || r.dst === '::/0' ? 'default' : r.dst, ...(r.via === null ? {} : { gateway: r.via }), dev: r.dev }));
      return ok(JSON.stringify(routes));
    }
    assert.fail(`the fake kernel does not know, in a pod: ip ${a}`);
  }

  private podLine(pod: FakePod, line: string): string | null {
    let m: RegExpExecArray | null;
    const noDev = (n: string) => `Cannot find device "${n}"`;
    if ((m = /^address add (\S+) dev (\S+)( nodad)?$/.exec(line))) {
      const l = pod.links.get(m[2] as string);
      if (l === undefined) return noDev(m[2] as string);
      assert.equal(m[3] !== undefined, (m[1] as string).includes(':'), 'nodad exactly for IPv6 addresses');
      if (l.addrs.includes(m[1] as string)) return 'RTNETLINK answers: File exists';
      l.addrs.push(m[1] as string);
      return null;
    }
    if ((m = /^link set dev (\S+) up$/.exec(line))) {
      const l = pod.links.get(m[1] as string);
      if (l === undefined) return noDev(m[1] as string);
      l.up = true;
      return null;
    }
    if ((m = /^route add (\S+)(?: via (\S+))? dev (\S+)$/.exec(line))) {
      const l = pod.links.get(m[3] as string);
      if (l === undefined) return noDev(m[3] as string);
      if (!l.up) return 'Error: Nexthop device is not up.';
      if (pod.routes.some((r) => r.dst === m?.[1])) return 'RTNETLINK answers: File exists';
      pod.routes.push({ dst: m[1] as string, via: m[2] ?? null, dev: m[3] as string });
      return null;
    }
    assert.fail(`the fake ip does not understand, in a pod: ${JSON.stringify(line)}`);
  }

  // ----------------------------------------------------------------- iptables

  /** Applies a payload block by block; a failing line fails its block and ends the run. */
  private restore(family: 4 | 6, text: string): ToolResult {
    const lines = text.split('\n');
    let table: string | null = null;
    let staged: Map<string, number> | null = null;
    for (const [i, line] of lines.entries()) {
      if (line === '') continue;
      if (line.startsWith('*')) {
        table = line.slice(1);
        staged = new Map(this.rules);
        continue;
      }
      assert.ok(table !== null && staged !== null, `line outside a table block: ${line}`);
      if (line === 'COMMIT') {
        for (const [k, c] of [...staged]) if (c === 0) staged.delete(k);
        this.rules.clear();
        for (const [k, c] of staged) this.rules.set(k, c);
        table = null;
        staged = null;
        continue;
      }
      const err = applyRuleLine(staged, `${family} ${table}`, line);
      if (err !== null) return fail(`${family === 4 ? 'iptables' : 'ip6tables'}-restore: line ${i + 1} failed: ${err}\n`);
    }
    return ok();
  }

  private save(family: 4 | 6): string {
    const byTable = new Map<string, string[]>();
    for (const [key, count] of this.rules) {
      const m = /^(\d) (\S+) (\S+) (.*)$/.exec(key);
      if (m === null || Number(m[1]) !== family) continue;
      const list = byTable.get(m[2] as string) ?? [];
      for (let i = 0; i < count; i++) list.push(`-A ${m[3] ?? ''} ${m[4] ?? ''}`);
      byTable.set(m[2] as string, list);
    }
    return [...byTable].map(([t, l]) => `*${t}\n${l.join('\n')}\nCOMMIT\n`).join('');
  }

  // ----------------------------------------------------------------- ip

  /** `ip -force -batch -` over the fake state. */
  private ipBatch(text: string): ToolResult {
    assert.ok(text.endsWith('\n'), 'a script ends with a newline');
    this.scripts.push(text);
    let stderr = '';
    text
      .slice(0, -1)
      .split('\n')
      .forEach((line, i) => {
        const err = this.faults.ipLine?.(line) ?? this.runLine(line);
        if (err !== null) stderr += `${err}\nCommand failed -:${i + 1}\n`;
      });
    return { exitCode: stderr === '' ? 0 : 1, stdout: '', stderr, spawnError: null };
  }

  private runLine(line: string): string | null {
    let m: RegExpExecArray | null;
    const noDev = (n: string) => `Cannot find device "${n}"`;
    if ((m = /^link add name (\S+)(?: group (\d+))?(?: mtu (\d+))? txqueuelen 0 master (\S+) up type veth peer name (\S+)(?: mtu (\d+))? txqueuelen 0$/.exec(line))) {
      const [, host, group, mtu1, master, peer, mtu2] = m as unknown as [string, string, string | undefined, string | undefined, string, string, string | undefined];
      assert.equal(mtu1, mtu2, 'both veth ends get the same MTU');
      if (!this.links.has(master)) return noDev(master);
      if (this.links.has(host) || this.links.has(peer)) return 'RTNETLINK answers: File exists';
      const mtu = mtu1 === undefined ? 1500 : Number(mtu1);
      this.links.set(host, { name: host, kind: 'veth', master, up: true, mtu, txqlen: 0, peer, addrs: [], group: group === undefined ? 0 : Number(group), mac: null });
      this.links.set(peer, { name: peer, kind: 'veth', master: null, up: false, mtu, txqlen: 0, peer: host, addrs: [], group: 0, mac: null });
      return null;
    }
    if ((m = /^link add name (\S+)(?: group (\d+))? address ([0-9a-f:]{17})(?: mtu (\d+))? txqueuelen 0 master (\S+) up type veth peer name (\S+) address ([0-9a-f:]{17})(?: mtu (\d+))? txqueuelen 0 netns (\S+)$/.exec(line))) {
      const [, host, group, hostMac, mtu1, master, peer, peerMac, mtu2, netns] = m as unknown as [string, string, string | undefined, string, string | undefined, string, string, string, string | undefined, string];
      assert.equal(mtu1, mtu2, 'both veth ends get the same MTU');
      const pod = this.pods.get(netns);
      if (pod === undefined) return `Error: argument "${netns}" is wrong: Invalid "netns" value`;
      if (!this.links.has(master)) return noDev(master);
      if (this.links.has(host) || pod.links.has(peer)) return 'RTNETLINK answers: File exists';
      const mtu = mtu1 === undefined ? 1500 : Number(mtu1);
      this.links.set(host, { name: host, kind: 'veth', master, up: true, mtu, txqlen: 0, peer, addrs: [], group: group === undefined ? 0 : Number(group), mac: hostMac, peerNetns: netns });
      pod.links.set(peer, { name: peer, kind: 'veth', master: null, up: false, mtu, txqlen: 0, peer: host, addrs: [], group: 0, mac: peerMac });
      return null;
    }
    if ((m = /^link set dev (\S+) type bridge_slave hairpin on$/.exec(line))) {
      const l = this.links.get(m[1] as string);
      if (l === undefined) return noDev(m[1] as string);
      l.hairpin = true;
      return null;
    }
    if ((m = /^link add name (\S+)(?: group (\d+))? address ([0-9a-f:]{17})(?: mtu (\d+))? type bridge$/.exec(line))) {
      const [, name, group, mac, mtu] = m as unknown as [string, string, string | undefined, string, string | undefined];
      if (this.links.has(name)) return 'RTNETLINK answers: File exists';
      this.links.set(name, { name, kind: 'bridge', master: null, up: false, mtu: mtu === undefined ? 1500 : Number(mtu), txqlen: 1000, peer: null, addrs: [], group: group === undefined ? 0 : Number(group), mac });
      return null;
    }
    if ((m = /^address (add|del) (\S+) dev (\S+)$/.exec(line))) {
      const [, verb, addr, dev] = m as unknown as [string, string, string, string];
      const l = this.links.get(dev);
      if (l === undefined) return noDev(dev);
      const has = l.addrs.includes(addr);
      if (verb === 'add') {
        if (has) return 'RTNETLINK answers: File exists';
        l.addrs.push(addr);
      } else {
        if (!has) return 'RTNETLINK answers: Cannot assign requested address';
        l.addrs = l.addrs.filter((a) => a !== addr);
      }
      return null;
    }
    if ((m = /^link set dev (\S+) (up|down)$/.exec(line))) {
      const l = this.links.get(m[1] as string);
      if (l === undefined) return noDev(m[1] as string);
      l.up = m[2] === 'up';
      return null;
    }
    if ((m = /^link set dev (\S+) (group|master) (\S+)$/.exec(line))) {
      const l = this.links.get(m[1] as string);
      if (l === undefined) return noDev(m[1] as string);
      if (m[2] === 'group') l.group = Number(m[3]);
      else if (!this.links.has(m[3] as string)) return noDev(m[3] as string);
      else l.master = m[3] as string;
      return null;
    }
    if ((m = /^link del group (\d+)$/.exec(line))) {
      const g = Number(m[1]);
      assert.notEqual(g, 0, 'never delete group 0');
      for (const l of [...this.links.values()]) if (l.group === g) this.deleteLink(l.name);
      return null;
    }
    if ((m = /^link del dev (\S+)$/.exec(line))) {
      if (!this.links.has(m[1] as string)) return noDev(m[1] as string);
      this.deleteLink(m[1] as string);
      return null;
    }
    assert.fail(`the fake ip does not understand: ${JSON.stringify(line)}`);
  }

  private deleteLink(name: string): void {
    const l = this.links.get(name);
    if (l === undefined) return;
    this.links.delete(name);
    if (l.kind === 'veth' && l.peer !== null) {
      if (l.peerNetns === undefined) this.links.delete(l.peer);
      else this.pods.get(l.peerNetns)?.links.delete(l.peer);
    }
    if (l.kind === 'bridge') for (const s of this.links.values()) if (s.master === name) s.master = null;
  }
}

/**
 * One iptables-restore line against staged rules: "-A CHAIN rule", "-I CHAIN N rule" and
 * "-D CHAIN rule" all name the rule "CHAIN rule"; ":CHAIN" (a declaration) flushes a chain and
 * "-X CHAIN" deletes it. Returns an error text, or null.
 */
function applyRuleLine(rules: Map<string, number>, prefix: string, line: string): string | null {
  const decl = /^:(\S+) - \[0:0\]$/.exec(line) ?? /^-X (\S+)$/.exec(line);
  if (decl !== null) {
    for (const k of [...rules.keys()]) if (k.startsWith(`${prefix} ${decl[1] ?? ''} `)) rules.delete(k);
    return null;
  }
  const m = /^(-A|-D|-I) (\S+)(?: (\d+))? (.+)$/.exec(line);
  assert.ok(m, `unexpected firewall line ${line}`);
  assert.equal(m[3] !== undefined, m[1] === '-I', `bad position in ${line}`);
  const key = `${prefix} ${m[2] ?? ''} ${m[4] ?? ''}`;
  const count = rules.get(key) ?? 0;
  if (m[1] !== '-D') rules.set(key, count + 1);
  else if (count > 0) rules.set(key, count - 1);
  else return 'Bad rule (does a matching rule exist in that chain?)';
  return null;
}

/** `ip -n NAME ARGS` or `nsenter --net=PATH -- ip ARGS`: the pod's path and ip's arguments. */
function podCall(file: string, args: readonly string[]): { path: string; args: readonly string[] } | null {
  if (file === 'ip' && args[0] === '-n') return { path: `/run/netns/${args[1] ?? ''}`, args: args.slice(2) };
  if (file === 'nsenter') {
    const net = args[0] ?? '';
    assert.ok(net.startsWith('--net=') && args[1] === '--' && args[2] === 'ip', `unexpected nsenter ${args.join(' ')}`);
    return { path: net.slice('--net='.length), args: args.slice(3) };
  }
  return null;
}
