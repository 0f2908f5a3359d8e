// Named network namespaces for kernel/e2e tests. Nothing here ever touches the root namespace:
// every `ip` command that creates links runs inside a namespace we created (through nsenter).
import { existsSync, statSync } from 'node:fs';
import { ORDER, track, untrack, type Resource } from './cleanup.js';
import {
  describeRun, pidsInNetnsInode, randomHex, run, runSync, signalPid, waitPidExit,
  type RunOptions, type RunResult,
} from './proc.js';

export const NETNS_DIR = '/run/netns';

export interface Netns extends Resource {
  readonly name: string;
  /** /run/netns/<name> */
  readonly path: string;
  /** ['nsenter', '--net=<path>', ...argv] */
  argv(argv: readonly string[]): string[];
  /** Run argv inside the namespace; never throws for a non-zero exit. */
  exec(argv: readonly string[], opts?: RunOptions): Promise<RunResult>;
  /** Run argv inside the namespace; throws on a non-zero exit; returns stdout. */
  execOk(argv: readonly string[], opts?: RunOptions): Promise<string>;
  /** Kill anything still running inside (reported as an error), then `ip netns delete`. Idempotent. */
  delete(): Promise<void>;
}

/** The argv that runs `argv` inside the named namespace (`nsenter --net=/run/netns/NAME ...`). */
export function nsenterArgv(nsName: string, argv: readonly string[]): string[] {
  return ['nsenter', `--net=${NETNS_DIR}/${nsName}`, ...argv];
}

export async function listNetns(): Promise<string[]> {
  const r = await run(['ip', 'netns', 'list']);
  return r.stdout.split('\n').map((l) => l.split(' ')[0] ?? '').filter((n) => n !== '');
}

function netnsInode(path: string): number | undefined {
  try {
    return statSync(path).ino;
  } catch {
    return undefined;
  }
}

/** Create `bbt-<random>` (or `<prefix>-<random>`), with lo up. */
export async function createNetns({ prefix = 'bbt' }: { prefix?: string } = {}): Promise<Netns> {
  const name = `${prefix}-${randomHex(5)}`;
  const path = `${NETNS_DIR}/${name}`;
  const add = await run(['ip', 'netns', 'add', name]);
  if (add.code !== 0) throw new Error(`cannot create netns ${name}: ${describeRun(['ip', 'netns', 'add', name], add)}`);
  // Remember the namespace's identity now: after a failure we must recognise our processes.
  const ino = netnsInode(path);

  let deleting: Promise<void> | undefined;
  const exec = (argv: readonly string[], opts?: RunOptions) => run(nsenterArgv(name, argv), opts);
  const ns: Netns = {
    name,
    path,
    label: `netns ${name}`,
    order: ORDER.netns,
    argv: (argv) => nsenterArgv(name, argv),
    exec,
    execOk: async (argv, opts) => {
      const full = nsenterArgv(name, argv);
      const r = await run(full, opts);
      if (r.code !== 0) throw new Error(describeRun(full, r));
      return r.stdout;
    },
    delete: () => (deleting ??= (async () => {
      const problems: string[] = [];
      if (ino !== undefined) {
        const pids = pidsInNetnsInode(ino);
        if (pids.length > 0) {
          problems.push(`processes still running in ${name} were killed: ${pids.join(', ')}`);
          for (const pid of pids) signalPid(pid, 'SIGKILL');
          for (const pid of pids) await waitPidExit(pid, 5_000);
        }
      }
      if (existsSync(path)) {
        const r = await run(['ip', 'netns', 'delete', name]);
        if (r.code !== 0 && existsSync(path)) problems.push(describeRun(['ip', 'netns', 'delete', name], r));
      }
      untrack(ns);
      if (problems.length > 0) throw new Error(`netns ${name}: ${problems.join('; ')}`);
    })()),
    close: () => ns.delete(),
    emergencyCloseSync: () => {
      if (ino !== undefined) for (const pid of pidsInNetnsInode(ino)) signalPid(pid, 'SIGKILL');
      if (existsSync(path)) runSync(['ip', 'netns', 'delete', name]);
    },
  };
  track(ns);
  try {
    await ns.execOk(['ip', 'link', 'set', 'lo', 'up']);
  } catch (e) {
    await ns.delete().catch(() => {});
    throw e;
  }
  return ns;
}

// ---------------------------------------------------------------------------------------------
// External peer

export interface ExternalPeer extends Resource {
  /** The peer namespace. */
  readonly peer: Netns;
  /** veth end inside the test namespace, and its address. */
  readonly hostIf: string;
  readonly hostAddr: string;
  /** veth end inside the peer namespace, and its address. */
  readonly peerIf: string;
  readonly peerAddr: string;
  readonly prefixLen: number;
  /** Deletes the peer namespace (which removes the veth pair). Idempotent. */
  delete(): Promise<void>;
}

export interface ExternalPeerOptions {
  hostAddr?: string;
  peerAddr?: string;
  prefixLen?: number;
}

/**
 * A second namespace joined by a veth pair to `ns`: `hostIf` (198.19.255.1/24) in `ns`, `peerIf`
 * (198.19.255.2/24) in the peer. The peer gets no other route, so it cannot answer container subnets
 * unless traffic is masqueraded. The pair is created inside `ns` and one end moved into the peer; the
 * veth names (bbh<hex>/bbp<hex>) never start with "veth".
 */
export async function createExternalPeer(ns: Netns, opts: ExternalPeerOptions = {}): Promise<ExternalPeer> {
  const hostAddr = opts.hostAddr ?? '198.19.255.1';
  const peerAddr = opts.peerAddr ?? '198.19.255.2';
  const prefixLen = opts.prefixLen ?? 24;
  const hex = randomHex(3);
  const hostIf = `bbh${hex}`;
  const peerIf = `bbp${hex}`;
  const peer = await createNetns({ prefix: 'bbt-peer' });
  // The peer namespace is deleted by the ExternalPeer, not separately.
  let deleting: Promise<void> | undefined;
  const ep: ExternalPeer = {
    peer,
    hostIf,
    hostAddr,
    peerIf,
    peerAddr,
    prefixLen,
    label: `external peer ${peer.name} of ${ns.name}`,
    order: ORDER.peer,
    delete: () => (deleting ??= (async () => {
      const errors: string[] = [];
      await peer.delete().catch((e: unknown) => errors.push(String(e)));
      // Deleting the peer namespace destroys the pair; make sure, if the test namespace still exists.
      if (existsSync(ns.path)) {
        const r = await ns.exec(['ip', '-j', 'link', 'show', 'dev', hostIf]);
        if (r.code === 0) await ns.exec(['ip', 'link', 'del', 'dev', hostIf]);
      }
      untrack(ep);
      if (errors.length > 0) throw new Error(errors.join('; '));
    })()),
    close: () => ep.delete(),
    emergencyCloseSync: () => peer.emergencyCloseSync(),
  };
  track(ep);
  try {
    await ns.execOk(['ip', 'link', 'add', hostIf, 'type', 'veth', 'peer', 'name', peerIf]);
    await ns.execOk(['ip', 'link', 'set', peerIf, 'netns', peer.name]);
    await ns.execOk(['ip', 'addr', 'add', `${hostAddr}/${prefixLen}`, 'dev', hostIf]);
    await ns.execOk(['ip', 'link', 'set', hostIf, 'up']);
    await peer.execOk(['ip', 'addr', 'add', `${peerAddr}/${prefixLen}`, 'dev', peerIf]);
    await peer.execOk(['ip', 'link', 'set', peerIf, 'up']);
  } catch (e) {
    await ep.delete().catch(() => {});
    throw e;
  }
  return ep;
}

// ---------------------------------------------------------------------------------------------
// Inspection

export interface IpLink {
  ifindex: number;
  ifname: string;
  flags: string[];
  mtu: number;
  operstate?: string;
  master?: string;
  address?: string;
  link_type?: string;
  linkinfo?: { info_kind?: string; info_slave_kind?: string; [k: string]: unknown };
  [k: string]: unknown;
}

/** `ip -j -d link show [args]` inside `ns`, parsed. */
export async function ipLinks(ns: Netns, args: readonly string[] = []): Promise<IpLink[]> {
  const out = await ns.execOk(['ip', '-j', '-d', 'link', 'show', ...args]);
  return out.trim() === '' ? [] : (JSON.parse(out) as IpLink[]);
}

/** `ip -j addr show [args]` inside `ns`, parsed. */
export async function ipAddrs(ns: Netns, args: readonly string[] = []): Promise<Array<IpLink & { addr_info: Array<{ family: string; local: string; prefixlen: number }> }>> {
  const out = await ns.execOk(['ip', '-j', 'addr', 'show', ...args]);
  return out.trim() === '' ? [] : JSON.parse(out);
}

/** `iptables-save` (or ip6tables-save) inside `ns`, as lines. */
export async function iptablesSave(ns: Netns, { ipv6 = false }: { ipv6?: boolean } = {}): Promise<string[]> {
  const out = await ns.execOk([ipv6 ? 'ip6tables-save' : 'iptables-save']);
  return out.split('\n');
}

/** Ping from inside `ns` with busybox (there is no ping binary on the host). Exit code 0 = replies. */
export function nsPing(ns: Netns, addr: string, { count = 2, waitSec = 3 }: { count?: number; waitSec?: number } = {}): Promise<RunResult> {
  return ns.exec(['busybox', 'ping', '-c', String(count), '-W', String(waitSec), addr], { timeoutMs: (count + waitSec + 10) * 1000 });
}
