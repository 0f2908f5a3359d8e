// A stand-in daemon for the forwarder tests and the exec benchmark: the real CNI socket server
// (src/cni/cni-server.ts) with a handler that does no work. Run as its own process so that a
// test can kill it with SIGKILL in the middle of a call.
//   node cni-stub-daemon.js SOCKET [--hang-del MARKER]
// --hang-del: a DEL is never answered; MARKER is written when one arrives.
import { writeFileSync } from 'node:fs';
import { pino } from 'pino';
import { startCniServer } from '../../src/cni/cni-server.js';

const [socketPath, flag, marker] = process.argv.slice(2);
if (socketPath === undefined) throw new Error('usage: cni-stub-daemon SOCKET [--hang-del MARKER]');
const hangDel = flag === '--hang-del' && marker !== undefined;

const server = await startCniServer({
  socketPath,
  log: pino({ level: 'silent' }),
  handler: async (req) => {
    if (hangDel && req.env.CNI_COMMAND === 'DEL') {
      writeFileSync(marker, 'DEL received\n');
      return new Promise(() => undefined);
    }
    return { exitCode: 0, stdout: req.env.CNI_COMMAND === 'ADD' ? '{"cniVersion":"1.0.0"}\n' : '' };
  },
});
await server.ready;
process.stdout.write('ready\n');
process.on('SIGTERM', () => {
  void server.close().then(() => process.exit(0));
});
