// One batchbridge per network namespace. Two instances with different books in one namespace
// would each take the other's bridges, veths and rules for orphans and remove them (issue 10, E),
// so the second one refuses to start (docs/security.md says why this and not coexistence).
//
// The guard is a listening unix socket in the abstract namespace: that namespace belongs to the
// network namespace, the name vanishes with the process (kill -9 included) and leaves no file,
// and whoever holds it answers every connection with who it is, so a refusal can name it.
import { createServer, connect, type Server, type Socket } from 'node:net';
import { InstanceConflictError } from '../errors.js';
import { describeInstance, type InstanceInfo } from '../state/instance-lock.js';

/** Abstract socket name (leading NUL); `ss -xlp | grep batchbridge` shows it as @batchbridge/netns-guard. */
export const GUARD_NAME = '\0batchbridge/netns-guard';
const ASK_TIMEOUT_MS = 1000;

export type GuardHolder = { kind: 'batchbridge'; info: InstanceInfo } | { kind: 'foreign' } | null;

/** Who holds this namespace's guard: a batchbridge (and which), something else, or nobody. */
export function netnsHolder(timeoutMs = ASK_TIMEOUT_MS): Promise<GuardHolder> {
  return new Promise((resolve) => {
    const c = connect({ path: GUARD_NAME });
    let text = '';
    let settled = false;
    const done = (v: GuardHolder): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      c.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => done({ kind: 'foreign' }), timeoutMs);
    c.setEncoding('utf8');
    c.on('data', (d: string) => {
      text += d;
      if (text.length > 64 * 1024) done({ kind: 'foreign' });
    });
    c.on('end', () => {
      try {
        const v = JSON.parse(text) as InstanceInfo;
        done(typeof v.pid === 'number' && typeof v.stateDir === 'string' ? { kind: 'batchbridge', info: v } : { kind: 'foreign' });
      } catch {
        done({ kind: 'foreign' });
      }
    });
    c.on('error', (err: NodeJS.ErrnoException) => done(err.code === 'ECONNREFUSED' || err.code === 'ENOENT' ? null : { kind: 'foreign' }));
  });
}

export interface NetnsGuard {
  release(): Promise<void>;
}

function listen(server: Server): Promise<NodeJS.ErrnoException | null> {
  return new Promise((resolve) => {
    server.once('error', (err: NodeJS.ErrnoException) => resolve(err));
    server.listen({ path: GUARD_NAME }, () => resolve(null));
  });
}

/** Take this network namespace's guard, or throw InstanceConflictError naming the holder. */
export async function acquireNetnsGuard(info: InstanceInfo): Promise<NetnsGuard> {
  const answer = `${JSON.stringify(info)}\n`;
  const open = new Set<Socket>();
  const server = createServer((c) => {
    open.add(c);
    c.on('close', () => open.delete(c));
    c.on('error', () => undefined);
    // A client that never reads must not hold us: the answer is tiny, give it a second.
    c.setTimeout(ASK_TIMEOUT_MS, () => c.destroy());
    c.end(answer);
  });
  const err = await listen(server);
  if (err !== null) {
    if (err.code !== 'EADDRINUSE') throw err;
    const holder = await netnsHolder();
    const who =
      holder?.kind === 'batchbridge'
        ? describeInstance(holder.info)
        : 'a process that does not answer like batchbridge (find it with `ss -xlp | grep batchbridge/netns-guard`)';
    throw new InstanceConflictError(
      `this network namespace is already served by ${who}; two instances in one namespace would remove each other's bridges and rules, so batchbridge refuses to start (nothing was changed)`,
    );
  }
  // The guard alone must never keep a process alive.
  server.unref();
  let closing: Promise<void> | null = null;
  return {
    release: () =>
      (closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const c of open) c.destroy();
      })),
  };
}
