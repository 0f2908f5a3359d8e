// The forward path of src/cni/forwarder/batchbridge-cni.c written for Node, for
// bench/cni-exec.ts only: it answers VERSION, sends the environment and stdin in the same frame
// to the daemon and relays the reply. (No spool: the benchmark measures what every call pays.)
// bench/cni-exec.ts copies it into a temporary directory with a `#!<node>` line in front, so
// that a runtime can exec it like any plugin.
'use strict';
const net = require('node:net');

const command = process.env.CNI_COMMAND || '';
if (command === 'VERSION') {
  process.stdout.write('{"cniVersion":"1.1.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}\n');
  process.exit(0);
}
const socketPath = process.env.BATCHBRIDGE_CNI_SOCKET || '/run/batchbridge/cni.sock';

function fail(code, msg) {
  process.stdout.write(`${JSON.stringify({ cniVersion: '1.1.0', code, msg })}\n`);
  process.exit(1);
}

const chunks = [];
process.stdin.on('data', (c) => chunks.push(c));
process.stdin.on('end', () => {
  const env = Buffer.from(Object.entries(process.env).map(([k, v]) => `${k}=${v}\0`).join(''));
  const stdin = Buffer.concat(chunks);
  const h = Buffer.alloc(24);
  h.write('BBCN', 0, 'latin1');
  h[4] = 1;
  h[5] = 1;
  h.writeUInt32BE(env.length, 12);
  h.writeUInt32BE(stdin.length, 16);
  const sock = net.connect({ path: socketPath });
  const reply = [];
  sock.on('connect', () => sock.write(Buffer.concat([h, env, stdin])));
  sock.on('data', (c) => reply.push(c));
  sock.on('error', (e) => fail(11, `the batchbridge daemon is not reachable at ${socketPath}: ${e.message}`));
  sock.on('end', () => {
    const r = Buffer.concat(reply);
    if (r.length < 24 || r.toString('latin1', 0, 4) !== 'BBCN') fail(11, 'no answer from the batchbridge daemon');
    const a = r.readUInt32BE(12);
    const b = r.readUInt32BE(16);
    process.stdout.write(r.subarray(24, 24 + a));
    process.stderr.write(r.subarray(24 + a, 24 + a + b));
    process.exitCode = r.readInt32BE(8);
  });
});
