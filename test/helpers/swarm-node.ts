// A Docker "node" for multi-node tests on one machine: a network namespace plus a mount and UTS
// namespace of its own, held by a sleeping process (`unshare --mount --uts --propagation
// private`) with a private tmpfs on /run/docker/plugins. dockerd finds managed plugins' sockets
// and keeps their books there, whatever its --exec-root, so without this two dockerds on one
// machine would see each other's plugins. dockerd is started inside with nsenter.
import { spawn, type ChildProcess } from 'node:child_process';
import { readlinkSync } from 'node:fs';
import { ORDER, track, untrack, type Resource } from './cleanup.js';
import type { Netns } from './netns.js';
import { allPids, describeRun, run, signalPid, sleep, waitPidExit } from './proc.js';

export interface NodeNamespaces extends Resource {
  readonly hostname: string;
  readonly holderPid: number;
  /** `ns` with argv() entering the holder's mount and UTS namespaces too: pass it to startDockerd. */
  readonly ns: Netns;
}

function mntOf(pid: number | 'self'): string | null {
  try {
    return readlinkSync(`/proc/${pid}/ns/mnt`);
  } catch {
    return null;
  }
}

/** Processes (other than the holder) living in mount namespace `mnt`. */
function pidsInMnt(mnt: string, holder: number): number[] {
  return allPids().filter((p) => p !== holder && p !== process.pid && mntOf(p) === mnt);
}

export async function startNodeNamespaces(netns: Netns, hostname: string): Promise<NodeNamespaces> {
  if (!/^[a-z][a-z0-9-]{0,30}$/.test(hostname)) throw new Error(`bad hostname ${hostname}`);
  const holder: ChildProcess = spawn('unshare', ['--mount', '--uts', '--propagation', 'private', 'sleep', '86400'], { stdio: 'ignore', detached: true });
  const pid = holder.pid;
  if (pid === undefined) throw new Error('cannot start the namespace holder (unshare)');
  let exited = false;
  holder.on('exit', () => { exited = true; });
  let mnt: string | null = null;
  let closing: Promise<void> | undefined;
  const enter = (argv: readonly string[]) => ['nsenter', `--mount=/proc/${pid}/ns/mnt`, `--uts=/proc/${pid}/ns/uts`, ...argv];

  const node: NodeNamespaces = {
    hostname,
    holderPid: pid,
    // One nsenter opens all three namespace files before it switches, then execs argv (so a
    // spawned dockerd's pid is its own).
    ns: { ...netns, argv: (argv) => enter([`--net=${netns.path}`, ...argv]) },
    label: `mount/uts namespace holder ${pid} (${hostname})`,
    // After dockerd (which runs inside), before the network namespace.
    order: ORDER.plugin,
    close: () => (closing ??= (async () => {
      const problems: string[] = [];
      if (mnt !== null) {
        const left = pidsInMnt(mnt, pid);
        if (left.length > 0) {
          problems.push(`processes still in ${hostname}'s mount namespace were killed: ${left.join(', ')}`);
          for (const p of left) signalPid(p, 'SIGKILL');
          for (const p of left) await waitPidExit(p, 5_000);
        }
      }
      // The namespace and its mounts (the tmpfs, dockerd's overlays) go with their last process.
      if (!exited) holder.kill('SIGKILL');
      for (let i = 0; i < 250 && !exited; i++) await sleep(20);
      if (!exited) problems.push(`holder ${pid} survived SIGKILL`);
      untrack(node);
      if (problems.length > 0) throw new Error(problems.join('; '));
    })()),
    emergencyCloseSync: () => {
      if (mnt !== null) for (const p of pidsInMnt(mnt, pid)) signalPid(p, 'SIGKILL');
      if (!exited) signalPid(pid, 'SIGKILL');
    },
  };
  track(node);
  try {
    // Wait until unshare has exec'd sleep in the new namespaces.
    const mine = mntOf('self');
    for (let i = 0; i < 250; i++) {
      const m = mntOf(pid);
      if (m !== null && m !== mine && !exited) {
        mnt = m;
        break;
      }
      await sleep(20);
    }
    if (mnt === null) throw new Error('the namespace holder never entered a mount namespace of its own');
    for (const argv of [['hostname', hostname], ['mount', '-t', 'tmpfs', '-o', 'mode=0755', 'bbt-plugins', '/run/docker/plugins']]) {
      const full = enter(argv);
      const r = await run(full, { timeoutMs: 20_000 });
      if (r.code !== 0) throw new Error(describeRun(full, r));
    }
  } catch (e) {
    await node.close().catch(() => {});
    throw e;
  }
  return node;
}

/**
 * A veth pair between two namespaces with `a`/`b` (address/prefix) on its ends. The pair goes
 * with either namespace.
 */
export async function linkNamespaces(x: Netns, y: Netns, a: string, b: string, suffix: string): Promise<{ xIf: string; yIf: string }> {
  const xIf = `bbl${suffix}x`;
  const yIf = `bbl${suffix}y`;
  await x.execOk(['ip', 'link', 'add', xIf, 'type', 'veth', 'peer', 'name', yIf]);
  await x.execOk(['ip', 'link', 'set', yIf, 'netns', y.name]);
  await x.execOk(['ip', 'addr', 'add', a, 'dev', xIf]);
  await x.execOk(['ip', 'link', 'set', xIf, 'up']);
  await y.execOk(['ip', 'addr', 'add', b, 'dev', yIf]);
  await y.execOk(['ip', 'link', 'set', yIf, 'up']);
  return { xIf, yIf };
}
