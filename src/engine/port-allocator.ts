// Port allocation for published ports, by the built-in driver's rules (libnetwork
// portallocator/portmapper): keyed by host IP and protocol; single ports fail when taken; ranges
// take the first free port; HostPort 0 takes an ephemeral port round-robin from
// ip_local_port_range. Like Docker without its userland proxy, each TCP/UDP binding also holds a
// listening socket on the host, so a port already used by a host program fails the request and a
// port we hold cannot be taken by another program later. CNI attachments (an endpoint with a
// sandbox) hold no socket, as the reference portmap plugin holds none: a runtime that reserves
// host ports does it itself right after the ADD — Podman binds every published port for conmon and
// fails the container with EADDRINUSE if the port is held (test/e2e/podman-batchbridge.test.ts).
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { parseCidr } from '../domain/addr.js';
import type { NetworkSpec } from '../domain/network-spec.js';
import type { PortMapping, Proto, RequestedBinding } from '../domain/publishing.js';
import { InvalidPortError, PortAllocatedError } from '../errors.js';
import type { EndpointRecord } from '../state/records.js';

export type PortRequest = RequestedBinding;

type Holder = { kind: 'tcp'; server: Server } | { kind: 'udp'; socket: UdpSocket } | { kind: 'none' };

interface Held {
  readonly key: string; // hostIp/proto
  readonly port: number;
  readonly holder: Holder;
}

function readEphemeralRange(): [number, number] {
  try {
    const [lo, hi] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (lo !== undefined && hi !== undefined && lo > 0 && hi >= lo && hi <= 65535) return [lo, hi];
  } catch {
    // fall through to Docker's fallback range
  }
  return [49153, 65535];
}

async function hold(proto: Proto, family: 4 | 6, hostIp: string, port: number): Promise<Holder> {
  if (proto === 'sctp') return { kind: 'none' };
  if (proto === 'tcp') {
    const server = createServer((sock) => sock.destroy());
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: hostIp, port, exclusive: true, ipv6Only: family === 6 }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.unref();
    return { kind: 'tcp', server };
  }
  const socket = createSocket({ type: family === 4 ? 'udp4' : 'udp6', ipv6Only: family === 6 });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind({ address: hostIp, port, exclusive: true }, () => {
      socket.off('error', reject);
      resolve();
    });
  });
  socket.unref();
  return { kind: 'udp', socket };
}

const NO_HOLDER: Holder = { kind: 'none' };

function unhold(h: Holder): void {
  if (h.kind === 'tcp') h.server.close();
  else if (h.kind === 'udp') h.socket.close();
}

export class PortAllocator {
  private readonly inUse = new Map<string, Set<number>>();
  private readonly byEndpoint = new Map<string, Held[]>();
  private readonly ephemeral: [number, number] = readEphemeralRange();
  private lastEphemeral = new Map<string, number>();

  private taken(key: string): Set<number> {
    let s = this.inUse.get(key);
    if (s === undefined) this.inUse.set(key, (s = new Set()));
    return s;
  }

  /** Re-reserve the ports of a booked endpoint after a restart (`sockets`: false for a CNI attachment). */
  restore(endpointId: string, mappings: readonly PortMapping[], sockets = true): void {
    const held: Held[] = [];
    for (const m of mappings) {
      const key = `${m.hostIp}/${m.proto}`;
      this.taken(key).add(m.hostPort);
      const entry: Held = { key, port: m.hostPort, holder: { kind: 'none' } };
      held.push(entry);
      if (!sockets) continue;
      // Take the listening socket back, best effort: the DNAT rule is what carries traffic.
      hold(m.proto, m.family, m.hostIp, m.hostPort).then(
        (h) => {
          const list = this.byEndpoint.get(endpointId);
          const idx = list?.indexOf(entry) ?? -1;
          if (list !== undefined && idx >= 0) list[idx] = { ...entry, holder: h };
          else unhold(h);
        },
        () => undefined,
      );
    }
    if (held.length > 0) this.byEndpoint.set(endpointId, held);
  }

  release(endpointId: string): void {
    const held = this.byEndpoint.get(endpointId);
    if (held === undefined) return;
    this.byEndpoint.delete(endpointId);
    for (const h of held) {
      this.inUse.get(h.key)?.delete(h.port);
      unhold(h.holder);
    }
  }

  async allocate(endpointId: string, net: NetworkSpec, ep: EndpointRecord, requests: readonly PortRequest[]): Promise<PortMapping[]> {
    const mappings: PortMapping[] = [];
    const held: Held[] = [];
    const ipv4 = parseCidr(ep.ipv4, 'endpoint address', 4).ip;
    const ipv6 = ep.ipv6 === null ? null : parseCidr(ep.ipv6, 'endpoint address', 6).ip;
    try {
      for (const r of requests) {
        const copies: Array<{ family: 4 | 6; hostIp: string; containerIp: string }> = [];
        const dflt = net.hostBindingIpv4;
        const dfltIs6 = dflt.includes(':');
        if (r.hostIp === '') {
          if (!dfltIs6) copies.push({ family: 4, hostIp: dflt, containerIp: ipv4 });
          if (ipv6 !== null && (dflt === '0.0.0.0' || dfltIs6)) copies.push({ family: 6, hostIp: dflt === '0.0.0.0' ? '::' : dflt, containerIp: ipv6 });
        } else if (r.hostIp.includes(':')) {
          // Docker (without its userland proxy) skips an IPv6 binding of an endpoint without IPv6.
          if (ipv6 !== null) copies.push({ family: 6, hostIp: r.hostIp, containerIp: ipv6 });
        } else {
          copies.push({ family: 4, hostIp: r.hostIp, containerIp: ipv4 });
        }
        for (const c of copies) {
          const key = `${c.hostIp}/${r.proto}`;
          const { port, holder } = await this.pick(key, r, c.family, c.hostIp, ep.sandbox === undefined);
          held.push({ key, port, holder });
          mappings.push({ proto: r.proto, family: c.family, hostIp: c.hostIp, hostPort: port, containerIp: c.containerIp, containerPort: r.containerPort });
        }
      }
    } catch (err) {
      for (const h of held) {
        this.inUse.get(h.key)?.delete(h.port);
        unhold(h.holder);
      }
      throw err;
    }
    this.byEndpoint.set(endpointId, held);
    return mappings;
  }

  private async pick(key: string, r: PortRequest, family: 4 | 6, hostIp: string, sockets: boolean): Promise<{ port: number; holder: Holder }> {
    const taken = this.taken(key);
    const show = family === 6 ? `[${hostIp}]` : hostIp;
    if (r.hostPort !== 0 && r.hostPort === r.hostPortEnd) {
      if (taken.has(r.hostPort)) throw new PortAllocatedError(`Bind for ${show}:${r.hostPort} failed: port is already allocated`);
      const holder = sockets ? await this.tryHold(r.proto, family, hostIp, r.hostPort) : NO_HOLDER;
      if (holder === null) throw new PortAllocatedError(`Bind for ${show}:${r.hostPort} failed: port is already in use by another program on the host`);
      taken.add(r.hostPort);
      return { port: r.hostPort, holder };
    }
    // A range takes the first port that is free both in our books and on the host; an ephemeral
    // port is taken round-robin after the last one handed out, so freed ports are not reused at once.
    // Like Docker's allocator, each distinct range keeps its own cursor (the first pick is the
    // range's first port).
    const ephemeral = r.hostPort === 0;
    const [lo, hi] = ephemeral ? this.ephemeral : [r.hostPort, r.hostPortEnd];
    const span = hi - lo + 1;
    const cursorKey = ephemeral ? key : `${key}/${lo}-${hi}`;
    const start = ((this.lastEphemeral.get(cursorKey) ?? lo - 1) + 1 - lo + span) % span;
    let attempts = 0;
    for (let i = 0; i < span; i++) {
      const port = lo + ((start + i) % span);
      if (taken.has(port)) continue;
      const holder = sockets ? await this.tryHold(r.proto, family, hostIp, port) : NO_HOLDER;
      if (holder === null) {
        if (++attempts >= (ephemeral ? 10 : span)) break;
        continue;
      }
      taken.add(port);
      this.lastEphemeral.set(cursorKey, port);
      return { port, holder };
    }
    throw new PortAllocatedError(ephemeral ? `Bind for ${show}:0 failed: no free ephemeral port` : `Bind for ${show}:${lo}-${hi} failed: all ports are allocated`);
  }

  private async tryHold(proto: Proto, family: 4 | 6, hostIp: string, port: number): Promise<Holder | null> {
    try {
      return await hold(proto, family, hostIp, port);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EADDRINUSE' || code === 'EACCES') return null;
      if (code === 'EADDRNOTAVAIL') throw new InvalidPortError(`cannot bind ${hostIp}:${port}: the address is not assigned on this host`);
      throw new InvalidPortError(`cannot bind ${hostIp}:${port}: ${(err as Error).message}`);
    }
  }

  async close(): Promise<void> {
    for (const id of [...this.byEndpoint.keys()]) this.release(id);
  }
}
