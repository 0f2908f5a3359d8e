// The daemon's CNI socket (default /run/batchbridge/cni.sock, mode 0600).
//
// A raw frame server on node:net, not HTTP (fastify serves the Docker socket): its only client
// is the C forwarder, which stays small and fast by knowing no HTTP and no JSON, and every ADD
// and DEL of every pod pays for the protocol at both ends. One connection carries one request
// frame and one reply frame (frame.ts). Requests are handled concurrently, so concurrent ADDs
// and DELs of different pods reach the engine together and can share its batches.
//
// Start order: the socket listens first, then the spool of DELs recorded while the daemon was
// down is replayed (spool.ts); requests that arrive meanwhile wait until the replay is done.
import { mkdirSync, rmSync, statSync, chmodSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import { CniDecodeError, InstanceConflictError } from '../errors.js';
import { renderCniError } from './cni-error.js';
import { decodeRequest, encodeReply, FRAME_TYPE, FrameReader, type RequestFrame } from './frame.js';
import type { CniAnswer, CniHandler } from './handler.js';
import { socketAnswers } from './leftovers.js';
import { Spool, spoolDirFor, type ReplayReport } from './spool.js';

export const DEFAULT_CNI_SOCKET = '/run/batchbridge/cni.sock';

export interface CniServerOptions {
  readonly socketPath: string;
  readonly handler: CniHandler;
  readonly log: Logger;
  /** default: <socketPath>.spool, where the forwarder puts DELs */
  readonly spoolDir?: string;
  /** a client must send its whole frame within this time (default 10 s) */
  readonly readTimeoutMs?: number;
  /** spooled DELs of different attachments replayed at once (default 16) */
  readonly replayConcurrency?: number;
}

export interface CniServer {
  readonly socketPath: string;
  readonly spoolDir: string;
  /** resolves once the spool is replayed and requests are being handled */
  readonly ready: Promise<ReplayReport>;
  /** stops accepting, waits for requests in flight, removes the socket */
  close(): Promise<void>;
}

async function removeStaleSocket(path: string): Promise<void> {
  await checkCniSocketFree(path);
  rmSync(path, { force: true });
}

/** Refuses, changing nothing, when the CNI socket path is taken (checked before the engine starts). */
export async function checkCniSocketFree(path: string): Promise<void> {
  let st;
  try {
    st = statSync(path);
  } catch {
    return;
  }
  if (!st.isSocket()) throw new InstanceConflictError(`CNI socket ${path} exists and is not a socket; not replacing it`);
  if (await socketAnswers(path)) {
    throw new InstanceConflictError(`another process serves the CNI socket ${path} (a second batchbridge daemon?): give this one its own --cni-socket PATH, or --no-cni`);
  }
}

function listen(server: Server, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ path }, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** One connection: one request frame in, one reply frame out. Never throws. */
function serveConnection(sock: Socket, answer: (f: RequestFrame) => Promise<CniAnswer>, ctx: { log: Logger; readTimeoutMs: number; inFlight: Set<Promise<void>> }): void {
  const reader = new FrameReader(FRAME_TYPE.request);
  let received = false;
  sock.on('error', () => undefined); // the forwarder died: nothing to answer
  sock.setTimeout(ctx.readTimeoutMs, () => {
    if (!received) sock.destroy();
  });
  sock.on('end', () => {
    if (!received) sock.destroy();
  });
  const reply = (a: CniAnswer): void => {
    if (!sock.destroyed) sock.end(encodeReply(a));
  };
  sock.on('data', (chunk: Buffer) => {
    if (received) return;
    let frame: RequestFrame;
    try {
      const whole = reader.push(chunk);
      if (whole === null) return;
      frame = decodeRequest(whole);
    } catch (err) {
      received = true;
      ctx.log.warn({ err: (err as Error).message }, 'malformed CNI frame');
      reply(renderCniError(new CniDecodeError(`malformed request from the batchbridge-cni forwarder: ${(err as Error).message}`)));
      return;
    }
    received = true;
    sock.setTimeout(0);
    const p = answer(frame).then(reply, (err: unknown) => reply(renderCniError(err)));
    ctx.inFlight.add(p);
    void p.finally(() => ctx.inFlight.delete(p));
  });
}

export async function startCniServer(opts: CniServerOptions): Promise<CniServer> {
  const { socketPath, handler, log } = opts;
  const readTimeoutMs = opts.readTimeoutMs ?? 10_000;
  const spoolDir = opts.spoolDir ?? spoolDirFor(socketPath);
  // Root only: whoever can talk to this socket can change the host's network. A directory we
  // create is 0700 too, which closes the window between listen() and chmod().
  mkdirSync(dirname(socketPath), { recursive: true, mode: 0o700 });
  mkdirSync(spoolDir, { recursive: true, mode: 0o700 });
  await removeStaleSocket(socketPath);
  const spool = new Spool(spoolDir, log);
  const inFlight = new Set<Promise<void>>();
  let release: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });

  const answer = async (frame: RequestFrame): Promise<CniAnswer> => {
    await gate;
    const started = performance.now();
    const run = (): Promise<CniAnswer> => handler({ env: frame.env, stdin: frame.stdin });
    let result: CniAnswer;
    try {
      result = frame.claim !== null ? await spool.claimed(frame.claim, run) : await run();
    } catch (err) {
      result = renderCniError(err, { command: frame.env.CNI_COMMAND ?? '' });
    }
    log.debug({ cmd: frame.env.CNI_COMMAND, containerId: frame.env.CNI_CONTAINERID, ifname: frame.env.CNI_IFNAME, exitCode: result.exitCode, ms: Math.round(performance.now() - started) }, 'cni request');
    return result;
  };

  // allowHalfOpen: a client that shuts down its sending side still gets its answer.
  const server = createServer({ allowHalfOpen: true }, (sock) => serveConnection(sock, answer, { log, readTimeoutMs, inFlight }));
  await listen(server, socketPath);
  chmodSync(socketPath, 0o600);
  const ino = statSync(socketPath).ino;
  log.info({ socketPath, spoolDir }, 'CNI socket listening');

  const ready = spool.replay(handler, opts.replayConcurrency ?? 16).finally(release);
  ready.catch((err: unknown) => log.error({ err, spoolDir }, 'replaying the DEL spool failed'));

  let closing: Promise<void> | null = null;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await ready.catch(() => undefined);
      await Promise.allSettled([...inFlight]);
      try {
        // Only our own socket: another daemon may have taken the path since.
        if (statSync(socketPath).ino === ino) rmSync(socketPath, { force: true });
      } catch {
        // already gone
      }
    })();
    return closing;
  };
  return { socketPath, spoolDir, ready, close };
}
