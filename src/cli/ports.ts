// `batchbridge ports`: asks the running plugin over its socket which bindings it made,
// since dockerd cannot show a remote driver's bindings (`docker port` stays empty,
// libnetwork#2451).
import { parseArgs } from 'node:util';
import { askPlugin } from './plugin-client.js';
import { locatePluginSocket } from './socket-lookup.js';
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

export const PORTS_HELP = `Usage: batchbridge ports [options]

Lists the host ports the running plugin published (dockerd cannot show a remote driver's:
\`docker port\` stays empty), one binding per line.

Options:
  --name NAME       the plugin to ask (default: batchbridge; NAME:TAG for a managed plugin)
  --socket-dir DIR  where its socket is (default: /run/docker/plugins)
  --json            print JSON instead of one line per binding
  -h, --help        this text

Exit status: 0 on success, 1 when the plugin could not be asked, 2 on bad usage.
`;

export async function printPorts(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    strict: true,
    allowPositionals: false,
    options: { name: { type: 'string' }, 'socket-dir': { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help === true) {
    process.stdout.write(PORTS_HELP);
    return 0;
  }
  const socketPath = locatePluginSocket(values.name, values['socket-dir']);
  const r = await askPlugin(socketPath, '/BatchBridge.Ports', {}, (v) => (Array.isArray(v.Bindings) ? (v.Bindings as Binding[]) : null), 30_000);
  if (r.kind !== 'answered') {
    process.stderr.write(`batchbridge: ${r.kind === 'failed' ? r.message : `no plugin answers at ${socketPath}`}\n`);
    return 1;
  }
  const sorted = [...r.body].sort((a, b) => a.mapping.hostPort - b.mapping.hostPort || a.mapping.family - b.mapping.family);
  if (values.json) {
    process.stdout.write(`${JSON.stringify(sorted.map((b) => ({ ...b.mapping, networkId: b.networkId, endpointId: b.endpointId })), null, 2)}\n`);
  } else {
    for (const b of sorted) process.stdout.write(`${formatBinding(b)}\n`);
  }
  return 0;
}
