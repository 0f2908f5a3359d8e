// A man in the middle between dockerd and the plugin, to make dockerd's plugin client retry for
// real: it listens where dockerd discovers the plugin (/run/docker/plugins/<name>.sock), forwards
// every call to the real plugin listening elsewhere, and for the calls it is told to drop it lets
// the plugin do the work and then closes the connection without an answer, as a plugin crash or
// a broken connection would. Every call is recorded, with its body, so a test can see exactly
// what dockerd sent and when.
import { unlinkSync } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { Agent, request } from 'undici';
import { ORDER, track, untrack, type Resource } from './cleanup.js';

export interface ProxiedCall {
  /** ms since the proxy started */
  readonly at: number;
  /** the request path, e.g. /NetworkDriver.CreateNetwork */
  readonly path: string;
  readonly body: string;
  /** the plugin's status, or -1 when the plugin could not be reached */
  readonly status: number;
  readonly reply: string;
  /** the plugin's answer was thrown away and dockerd's connection closed */
  readonly dropped: boolean;
}

export interface PluginProxy extends Resource {
  readonly listenPath: string;
  readonly targetPath: string;
  readonly calls: readonly ProxiedCall[];
  /** Drop the answer of the next `times` calls of `path` (e.g. /NetworkDriver.CreateEndpoint). */
  dropNext(path: string, times?: number): void;
  /** The calls of one path, in order. */
  callsOf(path: string): ProxiedCall[];
  /** One line per call, for assertion messages. */
  describe(): string;
}

export async function startPluginProxy(listenPath: string, targetPath: string): Promise<PluginProxy> {
  const started = Date.now();
  const calls: ProxiedCall[] = [];
  const toDrop = new Map<string, number>();
  const agent = new Agent({ connect: { socketPath: targetPath }, headersTimeout: 120_000, bodyTimeout: 120_000 });

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks).toString('utf8');
    const path = req.url ?? '/';
    const headers: Record<string, string> = {};
    for (const h of ['accept', 'content-type']) {
      const v = req.headers[h];
      if (typeof v === 'string') headers[h] = v;
    }
    let status = -1;
    let reply = '';
    try {
      const r = await request(`http://plugin${path}`, { method: (req.method ?? 'POST') as 'POST', dispatcher: agent, headers, body });
      status = r.statusCode;
      reply = await r.body.text();
    } catch (e) {
      reply = String(e);
    }
    const left = toDrop.get(path) ?? 0;
    const dropped = status === -1 || left > 0;
    if (left > 0) toDrop.set(path, left - 1);
    calls.push({ at: Date.now() - started, path, body, status, reply, dropped });
    if (dropped) {
      req.socket.destroy();
      return;
    }
    res.writeHead(status, { 'content-type': 'application/vnd.docker.plugins.v1.2+json' });
    res.end(reply);
  };

  const server = createServer((req, res) => {
    handle(req, res).catch(() => req.socket.destroy());
  });
  // Like the plugin: dockerd keeps connections open between calls.
  server.keepAliveTimeout = 120_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listenPath, () => resolve());
  });

  let closing: Promise<void> | undefined;
  const p: PluginProxy = {
    listenPath,
    targetPath,
    calls,
    label: `plugin proxy ${listenPath} -> ${targetPath}`,
    // Closed after dockerd (whose clean-up still calls the plugin through it), before the plugin.
    order: ORDER.plugin - 1,
    dropNext: (path, times = 1) => {
      toDrop.set(path, (toDrop.get(path) ?? 0) + times);
    },
    callsOf: (path) => calls.filter((c) => c.path === path),
    describe: () => calls.map((c) => `+${c.at}ms ${c.path} ${c.body.length}B -> ${c.status}${c.dropped ? ' DROPPED' : ''} ${c.reply.trim().slice(0, 160)}`).join('\n'),
    close: () => (closing ??= (async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await agent.close().catch(() => {});
      await unlink(listenPath).catch(() => {});
      untrack(p);
    })()),
    emergencyCloseSync: () => {
      try { unlinkSync(listenPath); } catch { /* gone */ }
    },
  };
  track(p);
  return p;
}
