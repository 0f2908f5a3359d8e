// The fuzzer's side of the socket: requests with a per-request timeout, requests whose answer is
// thrown away (the connection is closed as soon as the request is out, like a client that died
// or a connection that broke), and the tally of what came back, per phase and route, with the
// rules every answer must follow.
import { createConnection } from 'node:net';
import { Pool } from 'undici';

export interface Answer {
  /** HTTP status; -1 when no answer came (see error) */
  readonly status: number;
  readonly text: string;
  /** the body when it is a JSON object */
  readonly body: Record<string, unknown> | undefined;
  /** 'timeout' (no answer within the per-request timeout) or the connection error's code */
  readonly error?: string;
}

export class FuzzClient {
  private readonly pool: Pool;

  constructor(
    readonly socketPath: string,
    connections: number,
    readonly timeoutMs: number,
  ) {
    this.pool = new Pool('http://localhost', {
      socketPath,
      connections,
      pipelining: 1,
      keepAliveTimeout: 60_000,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
    });
  }

  async send(path: string, body: string | Buffer | undefined, contentType?: string): Promise<Answer> {
    try {
      const res = await this.pool.request({
        path,
        method: 'POST',
        headers: { accept: 'application/vnd.docker.plugins.v1.2+json', ...(contentType === undefined ? {} : { 'content-type': contentType }) },
        ...(body === undefined ? {} : { body }),
      });
      const text = await res.body.text();
      let parsed: Record<string, unknown> | undefined;
      try {
        const v: unknown = JSON.parse(text);
        if (v !== null && typeof v === 'object' && !Array.isArray(v)) parsed = v as Record<string, unknown>;
      } catch {
        // not JSON: the rules below flag it
      }
      return { status: res.statusCode, text, body: parsed };
    } catch (e) {
      const code = (e as { code?: string }).code ?? 'ERR';
      const timeout = code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT';
      return { status: -1, text: `${code}: ${(e as Error).message}`, body: undefined, error: timeout ? 'timeout' : code };
    }
  }

  call(method: string, body: unknown): Promise<Answer> {
    return this.send(method.includes('.') ? `/${method}` : `/NetworkDriver.${method}`, body === undefined ? undefined : JSON.stringify(body));
  }

  /**
   * Send `body` to `path` on a fresh connection and close it as soon as the answer starts to
   * arrive, without reading it: the plugin did the work, the client never learns the outcome —
   * what dockerd sees when a connection breaks under a call. Resolves then, so that a retry
   * comes after the first attempt, as dockerd's does (it retries once it has seen the error).
   */
  sendAndDrop(method: string, body: unknown): Promise<void> {
    const path = method.includes('.') ? `/${method}` : `/NetworkDriver.${method}`;
    const payload = Buffer.from(JSON.stringify(body));
    return new Promise((resolve) => {
      const sock = createConnection({ path: this.socketPath });
      const done = setTimeout(() => sock.destroy(), this.timeoutMs);
      sock.on('error', () => undefined);
      sock.on('data', () => sock.destroy());
      sock.on('close', () => {
        clearTimeout(done);
        resolve();
      });
      sock.on('connect', () => {
        const head = `POST ${path} HTTP/1.1\r\nHost: plugin\r\nAccept: application/vnd.docker.plugins.v1.2+json\r\nContent-Length: ${payload.length}\r\n\r\n`;
        sock.write(Buffer.concat([Buffer.from(head), payload]));
      });
    });
  }

  close(): Promise<void> {
    return this.pool.close();
  }
}

// ------------------------------------------------------------------------------------ tally

/** any: whatever the request, a clear answer; refuse: must be refused; valid: a kernel failure is a bug too */
export type Expect = 'any' | 'refuse' | 'valid';

interface RouteCount {
  sent: number;
  readonly statuses: Map<string, number>;
}

interface Violation {
  count: number;
  readonly examples: string[];
}

/** Counts per phase and route, and every broken rule with a few examples. */
export class Tally {
  readonly phases = new Map<string, Map<string, RouteCount>>();
  readonly violations = new Map<string, Violation>();
  /** 5xx answers with an Err are clear answers, but worth a look: a few examples of each */
  readonly serverErrors = new Map<string, Violation>();
  total = 0;

  constructor(private readonly knownRoutes: ReadonlySet<string>) {}

  violation(kind: string, example: string): void {
    const v = this.violations.get(kind) ?? { count: 0, examples: [] };
    v.count++;
    if (v.examples.length < 5) v.examples.push(example.slice(0, 400));
    this.violations.set(kind, v);
  }

  private count(phase: string, path: string, key: string): void {
    this.total++;
    const routes = this.phases.get(phase) ?? new Map<string, RouteCount>();
    this.phases.set(phase, routes);
    const route = this.knownRoutes.has(path) ? path : '(unknown routes)';
    const rc = routes.get(route) ?? { sent: 0, statuses: new Map<string, number>() };
    routes.set(route, rc);
    rc.sent++;
    rc.statuses.set(key, (rc.statuses.get(key) ?? 0) + 1);
  }

  /** A request sent on a connection the client closed before the answer (no answer to check). */
  recordDropped(phase: string, path: string): void {
    this.count(phase, path, 'dropped');
  }

  /** Count one answer and check the rules every answer follows. */
  record(phase: string, path: string, a: Answer, expect: Expect, what: () => string): void {
    this.count(phase, path, a.status === -1 ? (a.error ?? 'no answer') : String(a.status));
    if (a.status >= 500) {
      const k = `${path} ${a.status}`;
      const v = this.serverErrors.get(k) ?? { count: 0, examples: [] };
      v.count++;
      if (v.examples.length < 3) v.examples.push(`${what().slice(0, 160)} -> ${a.text.slice(0, 200)}`);
      this.serverErrors.set(k, v);
    }

    const err = a.body?.Err;
    const desc = (): string => `${path} ${what()} -> ${a.status} ${a.text.slice(0, 200)}`;
    if (a.error === 'timeout') this.violation('no answer within the per-request timeout (hang)', desc());
    else if (a.status === -1) this.violation('connection broke without an answer', desc());
    else if (!this.knownRoutes.has(path)) {
      if (a.status !== 404) this.violation('an unknown route not answered 404', desc());
    } else if (a.status === 404) this.violation('404 on a known route', desc());
    else if (a.status === 200) {
      if (a.body === undefined) this.violation('200 without a JSON object body', desc());
      else if (typeof err === 'string' && err !== '') this.violation('200 with an Err', desc());
      if (expect === 'refuse') this.violation('hostile request accepted', desc());
    } else if (typeof err !== 'string' || err === '') this.violation('refusal without a non-empty Err', desc());
    else if (/^internal error/.test(err)) this.violation('internal error (an exception nobody mapped)', desc());
    else if (expect === 'valid' && a.status === 500) this.violation('a valid request failed in the kernel (500)', desc());
  }

  /** One line per phase and route: requests and answers by status. */
  report(): string {
    const lines: string[] = [];
    for (const [phase, routes] of this.phases) {
      let n = 0;
      for (const rc of routes.values()) n += rc.sent;
      lines.push(`phase ${phase}: ${n} requests`);
      for (const [route, rc] of [...routes].sort((a, b) => a[0].localeCompare(b[0]))) {
        const st = [...rc.statuses].sort((a, b) => a[0].localeCompare(b[0])).map(([s, c]) => `${s}:${c}`).join(' ');
        lines.push(`  ${route.padEnd(44)} ${String(rc.sent).padStart(7)}  ${st}`);
      }
    }
    lines.push(`total requests: ${this.total}`);
    for (const [k, v] of this.serverErrors) {
      lines.push(`5xx ${k}: ${v.count}`);
      for (const e of v.examples) lines.push(`    e.g. ${e}`);
    }
    if (this.violations.size === 0) lines.push('violations: none');
    for (const [kind, v] of this.violations) {
      lines.push(`VIOLATION ${kind}: ${v.count}`);
      for (const e of v.examples) lines.push(`    e.g. ${e}`);
    }
    return lines.join('\n');
  }
}
