// `batchbridge ports`: asks the running plugin over its socket (undici) which bindings it made,
// since dockerd cannot show a remote driver's bindings (`docker port` stays empty,
// libnetwork#2451).
import { parseArgs } from 'node:util';
import { Agent, request } from 'undici';
import { resolvePluginSocket, socketBaseName } from './socket-lookup.js';
import type { PortMapping } from '../domain/publishing.js';

interface Binding {
  readonly networkId: string;
  readonly endpointId: string;
  readonly mapping: PortMapping;
}

export function formatBinding(b: Binding): string {
  const m = b.mapping;
  const host = m.family === 6 ? `[${m.hostIp}]` : m.hostIp;
  const ctr = m.family === 6 ? `[${m.containerIp}]` : m.containerIp;
  return `${m.proto} ${host}:${m.hostPort} -> ${ctr}:${m.containerPort}`;
}

export async function printPorts(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    strict: true,
    allowPositionals: false,
    options: { name: { type: 'string' }, 'socket-dir': { type: 'string' }, json: { type: 'boolean' } },
  });
  const name = socketBaseName(values.name ?? 'batchbridge');
  if (name === null) {
    process.stderr.write(`batchbridge: invalid --name ${JSON.stringify(values.name)}\n`);
    return 2;
  }
  let socketPath: string;
  try {
    socketPath = resolvePluginSocket(values['socket-dir'] ?? '/run/docker/plugins', name);
  } catch (err) {
    process.stderr.write(`batchbridge: ${(err as Error).message}\n`);
    return 1;
  }
  const dispatcher = new Agent({ connect: { socketPath } });
  try {
    const res = await request('http://localhost/BatchBridge.Ports', { method: 'POST', body: '{}', dispatcher });
    const body = (await res.body.json()) as { Bindings?: Binding[]; Err?: string };
    if (res.statusCode !== 200 || !Array.isArray(body.Bindings)) {
      process.stderr.write(`batchbridge: the plugin answered ${res.statusCode}: ${body.Err ?? 'no bindings list'}\n`);
      return 1;
    }
    const sorted = [...body.Bindings].sort((a, b) => a.mapping.hostPort - b.mapping.hostPort || a.mapping.family - b.mapping.family);
    if (values.json) {
      process.stdout.write(`${JSON.stringify(sorted.map((b) => ({ ...b.mapping, networkId: b.networkId, endpointId: b.endpointId })), null, 2)}\n`);
    } else {
      for (const b of sorted) process.stdout.write(`${formatBinding(b)}\n`);
    }
    return 0;
  } catch (err) {
    process.stderr.write(`batchbridge: cannot reach the plugin at ${socketPath}: ${(err as Error).message}\n`);
    return 1;
  } finally {
    await dispatcher.close();
  }
}
