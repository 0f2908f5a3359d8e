// A stateful, strict fake of the kernel behind KernelExecutor (src/workers/pool.ts).
//
// runBatch does what the real worker does, stage by stage, against simulated state: firewall
// removals, then the ip script *as planned by planIpBatch* interpreted line by line with
// `ip -force -batch` semantics (each failing line reports `Command failed -:N` on stderr, the next
// lines still run), then sysctls, then firewall additions. Failures are attributed with the real
// parseIpErrors/attributeIpFailures. A line the interpreter does not understand throws: the fake
// never silently accepts a script the real `ip` would reject.
import assert from 'node:assert/strict';
import type { BatchRequest, BatchResponse, FirewallChange, OpResult } from '../../src/batching/ops.js';
import { attributeIpFailures, parseIpErrors, planIpBatch, type IpWork } from '../../src/batching/plan-ip.js';
import type { KernelExecutor } from '../../src/workers/pool.js';
import type { ToolResult } from '../../src/workers/spawn.js';

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
}

export interface Faults {
  /** return an error text to make this script line fail (as `ip` would print it) */
  ipLine?: (line: string) => string | null;
  /** throw from runBatch (a worker that died) */
  batchThrows?: (req: BatchRequest) => boolean;
  /** delay each batch by this many ms (to let concurrent requests pile up) */
  delayMs?: number;
}

export class FakeKernel implements KernelExecutor {
  readonly links = new Map<string, FakeLink>();
  /** "4 nat BB-POSTROUTING -s …" → how many copies */
  readonly rules = new Map<string, number>();
  readonly sysctls = new Map<string, string>();
  readonly batches: BatchRequest[] = [];
  readonly scripts: string[] = [];
  readonly execs: Array<{ file: string; args: readonly string[] }> = [];
  faults: Faults = {};
  closed = false;

  /** A link that exists before the test (a user's bridge, someone else's veth). */
  addLink(name: string, kind: FakeLink['kind'], addrs: string[] = []): void {
    this.links.set(name, { name, kind, master: null, up: false, mtu: 1500, txqlen: 1000, peer: null, addrs: [...addrs], group: 0, mac: null });
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

  async runBatch(req: BatchRequest): Promise<BatchResponse> {
    assert.equal(this.closed, false, 'runBatch after close');
    this.batches.push(structuredClone(req));
    // Like a worker thread, never answer in the same tick.
    await new Promise((r) => setTimeout(r, this.faults.delayMs ?? 0));
    if (this.faults.batchThrows?.(req) === true) throw new Error('fake worker died');
    const failed = new Map<number, string>();
    for (const o of req.ops) {
      if (o.fwBefore === undefined) continue;
      const m = this.applyFirewall(o.fwBefore);
      if (m !== null) failed.set(o.opId, m);
    }
    const works: IpWork[] = req.ops.flatMap((o) => (o.ip && o.ip.length > 0 && !failed.has(o.opId) ? [{ opId: o.opId, ops: o.ip }] : []));
    if (works.length > 0) {
      const plan = planIpBatch(works, req.linkGroup);
      if (plan.text !== '') {
        this.scripts.push(plan.text);
        const stderr = this.runScript(plan.text);
        const verdict = attributeIpFailures(plan, parseIpErrors(stderr).failures);
        for (const [id, m] of verdict.failedOps) failed.set(id, m);
        assert.equal(verdict.groupDeleteFailed, false, 'the fake never fails a group delete');
      }
    }
    for (const o of req.ops) {
      if (failed.has(o.opId)) continue;
      for (const s of o.sysctls ?? []) this.sysctls.set(s.path, s.value);
    }
    for (const o of req.ops) {
      if (o.fwAfter === undefined || failed.has(o.opId)) continue;
      const m = this.applyFirewall(o.fwAfter);
      if (m !== null) failed.set(o.opId, m);
    }
    const results: OpResult[] = req.ops.map((o) => {
      const m = failed.get(o.opId);
      return m === undefined ? { opId: o.opId, ok: true } : { opId: o.opId, ok: false, message: m };
    });
    return { batchId: req.batchId, results, timings: { ipMs: 0, fwMs: 0, totalMs: 0, ipSpawns: 1, fwSpawns: 0 } };
  }

  async exec(file: string, args: readonly string[], input?: string): Promise<ToolResult> {
    assert.equal(this.closed, false, 'exec after close');
    this.execs.push({ file, args: [...args] });
    await new Promise((r) => setImmediate(r));
    assert.equal(input, undefined, `unexpected input to ${file}`);
    assert.equal(file, 'ip', `the fake only knows ip, not ${file}`);
    const [j, d, what, verb, dev, name, ...rest] = args;
    assert.deepEqual([j, d, what, verb, dev, rest.length], ['-j', '-d', 'addr', 'show', 'dev', 0], `unexpected ip ${args.join(' ')}`);
    assert.ok(name !== undefined);
    const l = this.links.get(name);
    if (l === undefined) return { exitCode: 1, stdout: '', stderr: `Device "${name}" does not exist.\n`, spawnError: null };
    const addrInfo = l.addrs.map((a) => {
      const [local, len] = a.split('/');
      return { family: local?.includes(':') ? 'inet6' : 'inet', local, prefixlen: Number(len) };
    });
    const out = [{ ifindex: 2, ifname: l.name, flags: l.up ? ['UP'] : [], mtu: l.mtu, linkinfo: l.kind === 'other' ? undefined : { info_kind: l.kind }, addr_info: addrInfo }];
    return { exitCode: 0, stdout: JSON.stringify(out) + '\n', stderr: '', spawnError: null };
  }

  linkPresent(name: string): boolean {
    return this.links.has(name);
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  // ---------------------------------------------------------------------------------------------

  private applyFirewall(change: FirewallChange): string | null {
    for (const family of [4, 6] as const) {
      for (const r of family === 4 ? change.v4 : change.v6) {
        // "-A CHAIN rule", "-I CHAIN N rule" and "-D CHAIN rule" all name the rule "CHAIN rule"
        const m = /^(-A|-D|-I) (\S+)(?: (\d+))? (.+)$/.exec(r.line);
        assert.ok(m, `unexpected firewall line ${r.line}`);
        assert.equal(m[3] !== undefined, m[1] === '-I', `bad position in ${r.line}`);
        const key = `${family} ${r.table} ${m[2]} ${m[4]}`;
        const count = this.rules.get(key) ?? 0;
        if (m[1] !== '-D') this.rules.set(key, count + 1);
        else if (count > 0) this.rules.set(key, count - 1);
        else if (!change.tolerant) return `iptables-restore: line 2 failed: Bad rule (does a matching rule exist in that chain?)`;
      }
    }
    for (const [k, c] of this.rules) if (c === 0) this.rules.delete(k);
    return null;
  }

  /** `ip -force -batch -` over the fake state; returns stderr. */
  private runScript(text: string): string {
    assert.ok(text.endsWith('\n'), 'a script ends with a newline');
    let stderr = '';
    text
      .slice(0, -1)
      .split('\n')
      .forEach((line, i) => {
        const err = this.faults.ipLine?.(line) ?? this.runLine(line);
        if (err !== null) stderr += `${err}\nCommand failed -:${i + 1}\n`;
      });
    return stderr;
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
    if ((m = /^link set dev (\S+) group (\d+)$/.exec(line))) {
      const l = this.links.get(m[1] as string);
      if (l === undefined) return noDev(m[1] as string);
      l.group = Number(m[2]);
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
    if (l.kind === 'veth' && l.peer !== null) this.links.delete(l.peer);
    if (l.kind === 'bridge') for (const s of this.links.values()) if (s.master === name) s.master = null;
  }
}
