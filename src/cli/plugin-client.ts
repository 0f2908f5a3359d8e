// Asking the running plugin over its socket (the private /BatchBridge.* routes), for the CLI's
// commands. A socket file nobody listens on is what a killed plugin leaves behind: "not running".
import { existsSync } from 'node:fs';
import { Agent, request } from 'undici';

export type Asked<T> = { kind: 'answered'; body: T } | { kind: 'not-running' } | { kind: 'failed'; message: string };

/** POSTs `body` to `route`; `check` says whether the answer is the expected one. */
export async function askPlugin<T>(socketPath: string, route: string, body: unknown, check: (v: Record<string, unknown>) => T | null, timeoutMs = 600_000): Promise<Asked<T>> {
  if (!existsSync(socketPath)) return { kind: 'not-running' };
  const dispatcher = new Agent({ connect: { socketPath }, headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
  try {
    const res = await request(`http://localhost${route}`, { method: 'POST', body: JSON.stringify(body), dispatcher });
    const text = await res.body.text();
    let v: Record<string, unknown> = {};
    try {
      const parsed: unknown = JSON.parse(text);
      if (parsed !== null && typeof parsed === 'object') v = parsed as Record<string, unknown>;
    } catch {
      // not JSON: reported below
    }
    const got = res.statusCode === 200 ? check(v) : null;
    if (got === null) return { kind: 'failed', message: `the plugin answered ${res.statusCode}: ${typeof v.Err === 'string' ? v.Err : text.slice(0, 200) || 'nothing'}` };
    return { kind: 'answered', body: got };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ECONNREFUSED' || code === 'ENOENT') return { kind: 'not-running' };
    return { kind: 'failed', message: `cannot reach the plugin at ${socketPath}: ${(err as Error).message}` };
  } finally {
    await dispatcher.close();
  }
}
