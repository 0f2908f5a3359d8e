// The metrics' own plain HTTP listener (`serve --metrics-listen HOST:PORT`), apart from the
// plugin socket: Prometheus scrapes over TCP, and nothing on this port can reach the protocol.
// GET /metrics only; anything else is 404 (405 for another method on /metrics).
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { Metrics } from './registry.js';

export interface MetricsListener {
  /** http://HOST:PORT/metrics as bound (the port is the real one when 0 was asked) */
  readonly url: string;
  close(): Promise<void>;
}

function serveScrape(server: Server, metrics: Metrics, log: Logger): void {
  server.on('request', (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: metrics are at /metrics\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed\n');
      return;
    }
    metrics.registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(req.method === 'HEAD' ? undefined : text),
      (err: unknown) => {
        log.error({ err }, 'collecting metrics failed');
        res.writeHead(500, { 'content-type': 'text/plain' }).end('collecting metrics failed\n');
      },
    );
  });
}

export async function startMetricsListener(metrics: Metrics, at: { host: string; port: number }, log: Logger): Promise<MetricsListener> {
  const server = createServer({ requestTimeout: 30_000, headersTimeout: 10_000, keepAliveTimeout: 65_000 });
  serveScrape(server, metrics, log);
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new Error(`cannot listen for metrics on ${at.host}:${at.port}: ${err.message}`)));
    server.listen(at.port, at.host, () => resolve());
  });
  const a = server.address() as AddressInfo;
  const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
  const url = `http://${host}:${a.port}/metrics`;
  log.info({ url }, 'serving metrics');
  return {
    url,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
