// Run inside a test namespace (nsenter --net=…): makes TCP listeners on that namespace's loopback
// reachable from the test process through unix sockets (files are shared across namespaces),
// so a test in the root namespace can talk to Prometheus or a metrics listener in its own
// namespace without any route or link between the two. Arguments: SOCKET=HOST:PORT ...
// Prints "ready" once every socket listens; stops on SIGTERM.
import { connect, createServer, type Server } from 'node:net';

const servers: Server[] = [];
let pending = process.argv.length - 2;
for (const arg of process.argv.slice(2)) {
  const m = /^(\/[^=]+)=([^:]+):(\d+)$/.exec(arg);
  if (m === null) throw new Error(`unix-tcp-bridge: expected SOCKET=HOST:PORT, got ${arg}`);
  const [, path, host, port] = m;
  const server = createServer((client) => {
    const upstream = connect(Number(port), host);
    client.pipe(upstream);
    upstream.pipe(client);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
  });
  server.listen(path, () => {
    if (--pending === 0) process.stdout.write('ready\n');
  });
  servers.push(server);
}
process.on('SIGTERM', () => {
  for (const s of servers) s.close();
  process.exit(0);
});
