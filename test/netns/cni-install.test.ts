// `batchbridge cni-install` for real: the installed executable talks to the socket it was
// installed for (the patched slot), the conflist is written atomically, usage errors are 2.
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { startCniServer } from '../../src/cni/cni-server.js';
import { cniCall, forwarderBuilt } from '../helpers/cni-call.js';
import { run } from '../helpers/proc.js';

const CLI = fileURLToPath(new URL('../../../bin/batchbridge.js', import.meta.url));
const root = mkdtempSync(join(tmpdir(), 'bbt-cniinst-'));
after(() => rmSync(root, { recursive: true, force: true }));

const install = (...args: string[]) => run([process.execPath, CLI, 'cni-install', ...args], { timeoutMs: 30_000 });

test('cni-install: binary and conflist; the installed copy uses the socket it was installed for', async (t) => {
  forwarderBuilt();
  const bin = join(root, 'bin');
  const conf = join(root, 'net.d');
  const sock = join(root, 'run', 'cni.sock');
  const r = await install('--bin-dir', bin, '--socket', sock, '--add-wait-ms', '200', '--conf-dir', conf, '--name', 'bbnet', '--subnet', '198.18.64.0/24', '--mtu', '1400');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`installed ${join(bin, 'batchbridge-cni')} \\(socket ${sock}, ADD waits up to 200 ms\\)`));
  assert.equal((statSync(join(bin, 'batchbridge-cni')).mode & 0o777).toString(8), '755');
  assert.deepEqual(readdirSync(bin), ['batchbridge-cni'], 'no temporary file left');
  assert.deepEqual(readdirSync(conf), ['10-bbnet.conflist']);
  const list = JSON.parse(readFileSync(join(conf, '10-bbnet.conflist'), 'utf8')) as { name: string; plugins: { socket: string; mtu: number; type: string }[] };
  assert.equal(list.name, 'bbnet');
  assert.deepEqual([list.plugins[0]?.type, list.plugins[0]?.socket, list.plugins[0]?.mtu], ['batchbridge-cni', sock, 1400]);

  const installed = join(bin, 'batchbridge-cni');
  const status = await cniCall(installed, { command: 'STATUS', stdin: '{}' });
  assert.equal(status.code, 1);
  const body = JSON.parse(status.stdout) as { code: number; msg: string };
  assert.equal(body.code, 50);
  assert.ok(body.msg.includes(sock), `names the installed socket: ${body.msg}`);
  const add = await cniCall(installed, { command: 'ADD', stdin: '{}' });
  assert.ok(add.ms >= 200 && add.ms < 3000, `ADD waited the installed 200 ms (${add.ms})`);
  const server = await startCniServer({ socketPath: sock, log: pino({ level: 'silent' }), handler: async () => ({ exitCode: 0, stdout: 'ok' }) });
  t.after(() => server.close());
  await server.ready;
  const again = await cniCall(installed, { command: 'STATUS', stdin: '{}' });
  assert.deepEqual([again.code, again.stdout], [0, 'ok']);
});
