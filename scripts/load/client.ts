// The plugin protocol client: undici over the unix socket, keep-alive connections like dockerd's.
import { Pool } from 'undici';

export interface CallResult {
  readonly ok: boolean;
  readonly status: number;
  readonly body: Record<string, unknown> | null;
  readonly err: string | null;
}

export class PluginClient {
  private readonly pool: Pool;

  constructor(socketPath: string, connections: number) {
    this.pool = new Pool('http://localhost', {
      socketPath,
      connections,
      pipelining: 1,
      keepAliveTimeout: 60_000,
      // dockerd waits up to 30 s per call; a harness run may queue longer under overload
      headersTimeout: 120_000,
      bodyTimeout: 120_000,
    });
  }

  async call(method: string, body: unknown): Promise<CallResult> {
    try {
      const res = await this.pool.request({
        path: `/${method.includes('.') ? method : `NetworkDriver.${method}`}`,
        method: 'POST',
        headers: { 'content-type': 'application/vnd.docker.plugins.v1.2+json' },
        body: JSON.stringify(body),
      });
      const text = await res.body.text();
      let parsed: Record<string, unknown> | null = null;
      if (text.length > 2) {
        try {
          parsed = JSON.parse(text) as Record<string, unknown>;
        } catch {
          return { ok: false, status: res.statusCode, body: null, err: `bad JSON: ${text.slice(0, 200)}` };
        }
      }
      const err = parsed !== null && typeof parsed.Err === 'string' && parsed.Err !== '' ? parsed.Err : null;
      const ok = res.statusCode === 200 && err === null;
      return { ok, status: res.statusCode, body: parsed, err: ok ? null : (err ?? `HTTP ${res.statusCode}`) };
    } catch (e) {
      return { ok: false, status: 0, body: null, err: e instanceof Error ? `${e.name}: ${e.message}` : String(e) };
    }
  }

  close(): Promise<void> {
    return this.pool.close();
  }
}
