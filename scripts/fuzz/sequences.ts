// The sequence phase: dockerd-like clients run container lifecycles (CreateEndpoint, Join,
// Program, OperInfo … Revoke, Leave, DeleteEndpoint) on a few networks while another one
// creates and deletes networks, and every call may be duplicated the ways a real client
// duplicates calls: sent again right after its answer, sent twice at once, or sent on a
// connection that is closed as soon as the request is out (the answer is lost) and then sent
// again, as dockerd retries (with the same body here: dockerd 20.10 actually resends an empty
// one, see test/e2e/dockerd-retry.test.ts). Identical calls must be answered alike, and a create
// whose answer was lost must not be refused on its retry while the plugin keeps what it created.
import { readBooks } from '../../test/netns/crash-kit.js';
import type { Answer, FuzzClient, Tally } from './wire.js';

export interface SequenceOptions {
  readonly workers: number;
  /** requests to send in this phase (duplicates and checks included) */
  readonly budget: number;
  readonly seed: number;
  readonly stateDir: string;
}

/** What the clients believe exists at the end (to tear it down). */
export interface Held {
  readonly endpoints: Map<string, string>; // endpoint id -> network id
}

type Mode = 'once' | 'row' | 'concurrent' | 'lost';

/** mulberry32: reproducible from --seed */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const LONG_LIVED = 4;
const PHASE = 'sequences';
/** Calls whose repeats must carry the same body, not only the same status. */
const SAME_BODY = new Set(['CreateNetwork', 'CreateEndpoint', 'Join', 'EndpointOperInfo']);

export async function runSequences(client: FuzzClient, tally: Tally, o: SequenceOptions): Promise<Held> {
  const rand = rng(o.seed);
  let sent = 0;
  const more = (): boolean => sent < o.budget;
  const held: Held = { endpoints: new Map() };
  const modeOf = (): Mode => {
    const x = rand();
    return x < 0.64 ? 'once' : x < 0.76 ? 'row' : x < 0.88 ? 'concurrent' : 'lost';
  };
  const rec = (method: string, a: Answer, how: string, body: unknown): void => {
    sent++;
    tally.record(PHASE, `/NetworkDriver.${method}`, a, 'valid', () => `${how} ${JSON.stringify(body).slice(0, 180)}`);
  };
  const alike = (method: string, a: Answer, b: Answer, how: string, body: unknown): void => {
    if (a.status === -1 || b.status === -1) return; // already a violation of its own
    const differ = (a.status === 200) !== (b.status === 200) || (a.status === 200 && SAME_BODY.has(method) && a.text !== b.text);
    if (differ) tally.violation(`identical ${method} ${how} answered differently`, `${JSON.stringify(body).slice(0, 160)}: ${a.status} ${a.text.slice(0, 120)} / ${b.status} ${b.text.slice(0, 120)}`);
  };
  /** After a lost answer and a refused retry: does the plugin keep what the client now forgets? */
  const keptAnyway = async (method: string, body: Record<string, unknown>): Promise<boolean> => {
    if (method === 'CreateEndpoint') {
      const r = await client.call('EndpointOperInfo', { NetworkID: body.NetworkID, EndpointID: body.EndpointID });
      rec('EndpointOperInfo', r, 'check', body);
      return r.status === 200;
    }
    if (method === 'CreateNetwork') return readBooks(o.stateDir).networks.has(String(body.NetworkID));
    return false;
  };
  const call = async (method: string, body: Record<string, unknown>): Promise<Answer> => {
    const mode = modeOf();
    if (mode === 'once') {
      const a = await client.call(method, body);
      rec(method, a, 'once', body);
      return a;
    }
    if (mode === 'row') {
      const a = await client.call(method, body);
      rec(method, a, 'first of two in a row', body);
      const b = await client.call(method, body);
      rec(method, b, 'repeated in a row', body);
      alike(method, a, b, 'repeated in a row', body);
      return a;
    }
    if (mode === 'concurrent') {
      const [a, b] = await Promise.all([client.call(method, body), client.call(method, body)]);
      rec(method, a, 'sent twice at once', body);
      rec(method, b, 'sent twice at once', body);
      alike(method, a, b, 'sent twice at once', body);
      return a.status === 200 ? a : b;
    }
    await client.sendAndDrop(method, body);
    sent++;
    tally.recordDropped(PHASE, `/NetworkDriver.${method}`);
    // dockerd waits 1 s before it retries; a shorter pause does as well here.
    if (rand() < 0.5) await new Promise((r) => setTimeout(r, rand() * 20));
    const b = await client.call(method, body);
    rec(method, b, 'retried after its answer was lost', body);
    if (b.status !== 200 && b.status !== -1 && (method === 'CreateEndpoint' || method === 'CreateNetwork') && (await keptAnyway(method, body))) {
      tally.violation(`${method} retried after a lost answer is refused, yet the plugin keeps what the first attempt created`, `${JSON.stringify(body).slice(0, 160)} -> ${b.status} ${b.text.slice(0, 160)}`);
    }
    return b;
  };

  // Ids differ in their first 12 characters: the default bridge name and rule tags use those.
  const nets = Array.from({ length: LONG_LIVED }, (_, i) => ({ id: `fz${i}seqnet0000`, third: 160 + i }));
  const netBody = (id: string, third: number, bridge?: string): Record<string, unknown> => ({
    NetworkID: id,
    Options: { 'com.docker.network.generic': bridge === undefined ? {} : { 'com.docker.network.bridge.name': bridge } },
    IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: `198.18.${third}.0/24`, Gateway: `198.18.${third}.1/24` }],
    IPv6Data: [],
  });
  for (const n of nets) await call('CreateNetwork', netBody(n.id, n.third));

  let epSeq = 0;
  const endpointWorker = async (w: number): Promise<void> => {
    const mine = new Map<string, { net: string; programmed: boolean; host: number }>();
    while (more()) {
      if (mine.size < 2 || (mine.size < 4 && rand() < 0.5)) {
        const n = nets[Math.floor(rand() * nets.length)] ?? nets[0];
        if (n === undefined) return;
        const id = `fzw${w}e${(++epSeq).toString(16)}`;
        const ids = { NetworkID: n.id, EndpointID: id };
        // Each client keeps to its own addresses and, like dockerd's IPAM, never picks one its
        // live endpoints hold: only endpoints it forgot can collide with it.
        const held4 = new Set([...mine.values()].filter((m) => m.net === n.id).map((m) => m.host));
        const free = Array.from({ length: 12 }, (_, i) => 10 + w * 12 + i).filter((h) => !held4.has(h));
        const host = free[Math.floor(rand() * free.length)] ?? 10 + w * 12;
        const addr = `198.18.${n.third}.${host}/24`;
        const c = await call('CreateEndpoint', { ...ids, Interface: { Address: addr }, Options: {} });
        if (c.status !== 200) continue;
        const j = await call('Join', { ...ids, SandboxKey: `/var/run/docker/netns/${id}`, Options: {} });
        if (j.status !== 200) {
          await call('DeleteEndpoint', ids);
          continue;
        }
        mine.set(id, { net: n.id, programmed: false, host });
        held.endpoints.set(id, n.id);
        if (rand() < 0.5) {
          const port = rand() < 0.2 ? 0 : 30000 + Math.floor(rand() * 3000);
          const p = await call('ProgramExternalConnectivity', { ...ids, Options: { 'com.docker.network.portmap': [{ Proto: rand() < 0.8 ? 6 : 17, Port: 80, HostPort: port, HostPortEnd: port }] } });
          if (p.status !== 200) {
            mine.delete(id);
            held.endpoints.delete(id);
            await call('Leave', ids);
            await call('DeleteEndpoint', ids);
            continue;
          }
          const m = mine.get(id);
          if (m !== undefined) m.programmed = true;
        }
        await call('EndpointOperInfo', ids);
        if (rand() < 0.05) {
          // The same id with another request: must be refused, and change nothing.
          const other = { ...ids, Interface: { Address: `198.18.${n.third}.${250 - w}/24` }, Options: {} };
          const r = await client.call('CreateEndpoint', other);
          sent++;
          tally.record(PHASE, '/NetworkDriver.CreateEndpoint', r, 'refuse', () => `same id, another address ${JSON.stringify(other)}`);
        }
      } else {
        const keys = [...mine.keys()];
        const id = keys[Math.floor(rand() * keys.length)];
        const m = id === undefined ? undefined : mine.get(id);
        if (id === undefined || m === undefined) continue;
        mine.delete(id);
        held.endpoints.delete(id);
        const ids = { NetworkID: m.net, EndpointID: id };
        if (m.programmed) await call('RevokeExternalConnectivity', ids);
        await call('Leave', ids);
        await call('DeleteEndpoint', ids);
      }
    }
  };
  let netSeq = 0;
  const networkWorker = async (): Promise<void> => {
    while (more()) {
      const k = ++netSeq;
      const id = `fzc${k}churnnet`;
      const third = 180 + (k % 8);
      const c = await call('CreateNetwork', netBody(id, third, rand() < 0.3 ? `fzbr${k % 2}` : undefined));
      if (c.status !== 200) continue;
      const eps: string[] = [];
      for (let i = 0; i < 2; i++) {
        const ep = `fzc${k}e${i}`;
        const r = await call('CreateEndpoint', { NetworkID: id, EndpointID: ep, Interface: { Address: `198.18.${third}.${5 + i}/24` }, Options: {} });
        if (r.status === 200) eps.push(ep);
      }
      for (const ep of eps) await call('DeleteEndpoint', { NetworkID: id, EndpointID: ep });
      await call('DeleteNetwork', { NetworkID: id });
    }
  };
  await Promise.all([...Array.from({ length: o.workers }, (_, w) => endpointWorker(w)), networkWorker()]);
  return held;
}
