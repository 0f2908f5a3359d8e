// A stand-in for `bin/batchbridge.js` used only by the helper self-test: it accepts the same
// `serve --name N --state-dir D --socket-dir S --log-level L` arguments, answers Plugin.Activate and
// NetworkDriver.GetCapabilities, refuses everything else, and removes its socket on SIGTERM/SIGINT.
import { mkdirSync, unlinkSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';

function arg(flag: string): string | undefined {
  const i = process.argv.indexOf(flag);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const name = arg('--name') ?? 'fake';
const socketDir = arg('--socket-dir') ?? '/run/docker/plugins';
const socketPath = join(socketDir, `${name}.sock`);
mkdirSync(socketDir, { recursive: true });
try {
  unlinkSync(socketPath); // stale socket from a killed instance
} catch {
  /* none */
}

const server = createServer((req, res) => {
  let body = '';
  req.on('data', (b: Buffer) => { body += b.toString(); });
  req.on('end', () => {
    process.stdout.write(`${JSON.stringify({ msg: 'call', url: req.url, body })}\n`);
    let answer: unknown = { Err: `fake plugin: ${req.url ?? ''} not supported` };
    if (req.url === '/Plugin.Activate') answer = { Implements: ['NetworkDriver'] };
    if (req.url === '/NetworkDriver.GetCapabilities') answer = { Scope: 'local', ConnectivityScope: 'local' };
    res.writeHead(200, { 'content-type': 'application/vnd.docker.plugins.v1.1+json' });
    res.end(JSON.stringify(answer));
  });
});
server.listen(socketPath, () => process.stdout.write(`${JSON.stringify({ msg: 'listening', socketPath })}\n`));
const shutdown = () => {
  server.close();
  try {
    unlinkSync(socketPath);
  } catch {
    /* gone */
  }
  process.exit(0);
};
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
