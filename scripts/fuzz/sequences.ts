// The sequence phase: dockerd-like clients run container lifecycles (CreateEndpoint, Join,
// Program, OperInfo … Revoke, Leave, DeleteEndpoint) on a few networks while another one
// creates and deletes networks, and every call may be duplicated the ways a real client
// duplicates calls: sent again right after its answer, sent twice at once, or sent on a
// connection that is closed before the answer (the outcome is lost) and then sent again, as
// dockerd retries (with the same body here: dockerd 20.10 actually resends an empty one, see
// test/e2e/dockerd-retry.test.ts). Identical calls must be answered alike, and a create whose
// answer was lost must not be refused on its retry while the plugin keeps what it created.
import { readBooks } from '../../test/netns/crash-kit.js';
import type { Answer, FuzzClient, Tally } from './wire.js';
import { rng } from '../../test/helpers/rng.js';

export interface SequenceOptions {
  readonly workers: number;
  /** requests to send in this phase (duplicates and checks included) */
  readonly budget: number;
  readonly seed: number;
  readonly stateDir: string;
}

/** What the clients believe exists at the end (to tear it down): endpoint id -> network id. */
export type Held = Map<string, string>;

type Body = Record<string, unknown>;

const PHASE = 'sequences';
const LONG_LIVED = 4;
/** Calls whose repeats must carry the same body, not only the same status. */
const SAME_BODY = new Set(['CreateNetwork', 'CreateEndpoint', 'Join', 'EndpointOperInfo']);

/** Sends calls the ways a client duplicates them, counts them, and checks the answers agree. */
class Caller {
  sent = 0;

  constructor(
    private readonly client: FuzzClient,
    private readonly tally: Tally,
    readonly rand: () => number,
    private readonly stateDir: string,
  ) {}

  private rec(method: string, a: Answer, how: string, body: Body): void {
    this.sent++;
    this.tally.record(PHASE, `/NetworkDriver.${method}`, a, 'valid', () => `${how} ${JSON.stringify(body).slice(0, 180)}`);
  }

  private alike(method: string, a: Answer, b: Answer, how: string, body: Body): void {
    if (a.status === -1 || b.status === -1) return; // already a violation of its own
    const differ = (a.status === 200) !== (b.status === 200) || (a.status === 200 && SAME_BODY.has(method) && a.text !== b.text);
    if (differ) this.tally.violation(`identical ${method} ${how} answered differently`, `${JSON.stringify(body).slice(0, 160)}: ${a.status} ${a.text.slice(0, 120)} / ${b.status} ${b.text.slice(0, 120)}`);
  }

  /** After a lost answer and a refused retry: does the plugin keep what the client now forgets? */
  private async keptAnyway(method: string, body: Body): Promise<boolean> {
    if (method === 'CreateEndpoint') {
      const r = await this.client.call('EndpointOperInfo', { NetworkID: body.NetworkID, EndpointID: body.EndpointID });
      this.rec('EndpointOperInfo', r, 'check', body);
      return r.status === 200;
    }
    return method === 'CreateNetwork' && readBooks(this.stateDir).networks.has(String(body.NetworkID));
  }

  /** Once (64 %), twice in a row, twice at once, or lost and sent again (12 % each). */
  async call(method: string, body: Body): Promise<Answer> {
    const x = this.rand();
    const c = this.client;
    if (x < 0.64) {
      const a = await c.call(method, body);
      this.rec(method, a, 'once', body);
      return a;
    }
    if (x < 0.76) {
      const a = await c.call(method, body);
      this.rec(method, a, 'first of two in a row', body);
      const b = await c.call(method, body);
      this.rec(method, b, 'repeated in a row', body);
      this.alike(method, a, b, 'repeated in a row', body);
      return a;
    }
    if (x < 0.88) {
      const [a, b] = await Promise.all([c.call(method, body), c.call(method, body)]);
      this.rec(method, a, 'sent twice at once', body);
      this.rec(method, b, 'sent twice at once', body);
      this.alike(method, a, b, 'sent twice at once', body);
      return a.status === 200 ? a : b;
    }
    return this.lostThenRetried(method, body);
  }

  private async lostThenRetried(method: string, body: Body): Promise<Answer> {
    await this.client.sendAndDrop(method, body);
    this.sent++;
    this.tally.recordDropped(PHASE, `/NetworkDriver.${method}`);
    // dockerd waits 1 s before it retries; a shorter pause does as well here.
    if (this.rand() < 0.5) await new Promise((r) => setTimeout(r, this.rand() * 20));
    const b = await this.client.call(method, body);
    this.rec(method, b, 'retried after its answer was lost', body);
    if (b.status !== 200 && b.status !== -1 && (method === 'CreateEndpoint' || method === 'CreateNetwork') && (await this.keptAnyway(method, body))) {
      this.tally.violation(`${method} retried after a lost answer is refused, yet the plugin keeps what the first attempt created`, `${JSON.stringify(body).slice(0, 160)} -> ${b.status} ${b.text.slice(0, 160)}`);
    }
    return b;
  }

  /** A request that must be refused (sent once). */
  async refused(method: string, body: Body, what: string): Promise<void> {
    const r = await this.client.call(method, body);
    this.sent++;
    this.tally.record(PHASE, `/NetworkDriver.${method}`, r, 'refuse', () => `${what} ${JSON.stringify(body)}`);
  }
}

interface Net {
  readonly id: string;
  readonly third: number; // 198.18.<third>.0/24
}

function netBody(id: string, third: number, bridge?: string): Body {
  return {
    NetworkID: id,
    Options: { 'com.docker.network.generic': bridge === undefined ? {} : { 'com.docker.network.bridge.name': bridge } },
    IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: `198.18.${third}.0/24`, Gateway: `198.18.${third}.1/24` }],
    IPv6Data: [],
  };
}

interface Mine {
  readonly net: string;
  readonly host: number;
  programmed: boolean;
}

/** Client `w`: containers come and go; it holds 2–4 at a time. */
async function endpointWorker(w: number, nets: readonly Net[], k: Caller, more: () => boolean, held: Held, seq: { n: number }): Promise<void> {
  const mine = new Map<string, Mine>();
  const rand = k.rand;
  while (more()) {
    if (mine.size < 2 || (mine.size < 4 && rand() < 0.5)) {
      const n = nets[Math.floor(rand() * nets.length)] ?? nets[0];
      if (n === undefined) return;
      const id = `fzw${w}e${(++seq.n).toString(16)}`;
      const ids = { NetworkID: n.id, EndpointID: id };
      // Each client keeps to its own addresses and, like dockerd's IPAM, never picks one its
      // live endpoints hold: only endpoints it forgot can collide with it.
      const taken = new Set([...mine.values()].filter((m) => m.net === n.id).map((m) => m.host));
      const free = Array.from({ length: 12 }, (_, i) => 10 + w * 12 + i).filter((h) => !taken.has(h));
      const host = free[Math.floor(rand() * free.length)] ?? 10 + w * 12;
      if ((await k.call('CreateEndpoint', { ...ids, Interface: { Address: `198.18.${n.third}.${host}/24` }, Options: {} })).status !== 200) continue;
      if ((await k.call('Join', { ...ids, SandboxKey: `/var/run/docker/netns/${id}`, Options: {} })).status !== 200) {
        await k.call('DeleteEndpoint', ids);
        continue;
      }
      const m: Mine = { net: n.id, host, programmed: false };
      mine.set(id, m);
      held.set(id, n.id);
      if (rand() < 0.5) {
        const port = rand() < 0.2 ? 0 : 30000 + Math.floor(rand() * 3000);
        const p = await k.call('ProgramExternalConnectivity', { ...ids, Options: { 'com.docker.network.portmap': [{ Proto: rand() < 0.8 ? 6 : 17, Port: 80, HostPort: port, HostPortEnd: port }] } });
        if (p.status !== 200) {
          mine.delete(id);
          held.delete(id);
          await k.call('Leave', ids);
          await k.call('DeleteEndpoint', ids);
          continue;
        }
        m.programmed = true;
      }
      await k.call('EndpointOperInfo', ids);
      // Now and then the same id with another request: refused, and nothing changes.
      if (rand() < 0.05) await k.refused('CreateEndpoint', { ...ids, Interface: { Address: `198.18.${n.third}.${250 - w}/24` }, Options: {} }, 'same id, another address');
    } else {
      const keys = [...mine.keys()];
      const id = keys[Math.floor(rand() * keys.length)];
      const m = id === undefined ? undefined : mine.get(id);
      if (id === undefined || m === undefined) continue;
      mine.delete(id);
      held.delete(id);
      const ids = { NetworkID: m.net, EndpointID: id };
      if (m.programmed) await k.call('RevokeExternalConnectivity', ids);
      await k.call('Leave', ids);
      await k.call('DeleteEndpoint', ids);
    }
  }
}

/** Networks come and go, a third of them on two bridge names used over and over. */
async function networkWorker(k: Caller, more: () => boolean): Promise<void> {
  for (let n = 1; more(); n++) {
    // Ids differ in their first 12 characters: the default bridge name and rule tags use those.
    const id = `fzc${n}churnnet`;
    const third = 180 + (n % 8);
    if ((await k.call('CreateNetwork', netBody(id, third, k.rand() < 0.3 ? `fzbr${n % 2}` : undefined))).status !== 200) continue;
    const eps: string[] = [];
    for (let i = 0; i < 2; i++) {
      const ep = `fzc${n}e${i}`;
      const r = await k.call('CreateEndpoint', { NetworkID: id, EndpointID: ep, Interface: { Address: `198.18.${third}.${5 + i}/24` }, Options: {} });
      if (r.status === 200) eps.push(ep);
    }
    for (const ep of eps) await k.call('DeleteEndpoint', { NetworkID: id, EndpointID: ep });
    await k.call('DeleteNetwork', { NetworkID: id });
  }
}

export async function runSequences(client: FuzzClient, tally: Tally, o: SequenceOptions): Promise<Held> {
  const k = new Caller(client, tally, rng(o.seed), o.stateDir);
  const more = (): boolean => k.sent < o.budget;
  const held: Held = new Map();
  const nets: Net[] = Array.from({ length: LONG_LIVED }, (_, i) => ({ id: `fz${i}seqnet0000`, third: 160 + i }));
  for (const n of nets) await k.call('CreateNetwork', netBody(n.id, n.third));
  const seq = { n: 0 };
  await Promise.all([...Array.from({ length: o.workers }, (_, w) => endpointWorker(w, nets, k, more, held, seq)), networkWorker(k, more)]);
  return held;
}
