// The C forwarder (dist/cni/batchbridge-cni), executed as libcni executes plugins, against the
// real CNI socket server with fake handlers: what it relays, what it does when the daemon is
// down, restarting or killed mid-call, and that the server survives malformed frames.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { startCniServer, type CniServer } from '../../src/cni/cni-server.js';
import { decodeReply, decodeRequest, encodeRequest, FRAME_HEADER_BYTES } from '../../src/cni/frame.js';
import type { CniAnswer, CniHandler, CniInvocation } from '../../src/cni/handler.js';
import { cniCall, forwarderBuilt, type CniCall } from '../helpers/cni-call.js';
import { eventually, sleep } from '../helpers/proc.js';

const log = pino({ level: 'silent' });
const STUB = fileURLToPath(new URL('../helpers/cni-stub-daemon.js', import.meta.url));
const CONF = '{"cniVersion":"1.0.0","name":"fwdnet","type":"batchbridge-cni"}';
let bin = '';
let root = '';
let n = 0;

before(() => {
  bin = forwarderBuilt();
  root = mkdtempSync(join(tmpdir(), 'bbt-cnifwd-'));
});
after(() => rmSync(root, { recursive: true, force: true }));

/** A fresh socket path per test; the forwarder is pointed at it through the environment. */
function place(): { socketPath: string; spool: string; call: (c: CniCall) => ReturnType<typeof cniCall> } {
  const dir = join(root, `t${n++}`);
  const socketPath = join(dir, 'cni.sock');
  return {
    socketPath,
    spool: `${socketPath}.spool`,
    call: (c) => cniCall(bin, { containerId: 'ctr1', ifName: 'eth0', netns: '/run/netns/x', path: '/opt/cni/bin', stdin: CONF, ...c, env: { BATCHBRIDGE_CNI_SOCKET: socketPath, ...c.env } }),
  };
}

function recorder(answer: (req: CniInvocation) => CniAnswer | Promise<CniAnswer>): { seen: CniInvocation[]; handler: CniHandler } {
  const seen: CniInvocation[] = [];
  return { seen, handler: async (req) => { seen.push(req); return answer(req); } };
}

async function serve(socketPath: string, handler: CniHandler): Promise<CniServer> {
  const s = await startCniServer({ socketPath, handler, log });
  await s.ready;
  return s;
}

function spoolFiles(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir).filter((f) => f.startsWith('del-')).sort() : [];
}

test('VERSION is answered by the executable alone, with no daemon anywhere', async () => {
  const p = place();
  const r = await p.call({ command: 'VERSION', stdin: '{"cniVersion":"1.1.0"}' });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), { cniVersion: '1.1.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
  assert.equal(existsSync(p.spool), false);
});

test('ADD, DEL, CHECK, GC, STATUS reach the handler whole; stdout, stderr and exit status come back', async (t) => {
  const p = place();
  const { seen, handler } = recorder((req) => {
    switch (req.env.CNI_COMMAND) {
      case 'ADD': return { exitCode: 0, stdout: '{"cniVersion":"1.0.0","ips":[]}\n', stderr: 'add log line\n' };
      case 'CHECK': return { exitCode: 1, stdout: '{"code":106,"msg":"missing route"}\n' };
      case 'STATUS': return { exitCode: 0, stdout: '' };
      default: return { exitCode: 0, stdout: '' };
    }
  });
  const server = await serve(p.socketPath, handler);
  t.after(() => server.close());
  const big = JSON.stringify({ cniVersion: '1.0.0', name: 'fwdnet', type: 'batchbridge-cni', pad: 'x'.repeat(300_000) });
  const add = await p.call({ command: 'ADD', args: 'IgnoreUnknown=1;K8S_POD_NAME=web', env: { EXTRA_VAR: 'a=b=c' }, stdin: big });
  assert.equal(add.code, 0, add.stderr);
  assert.equal(add.stdout, '{"cniVersion":"1.0.0","ips":[]}\n');
  assert.equal(add.stderr, 'add log line\n');
  const req = seen[0];
  assert.ok(req !== undefined);
  assert.equal(req.stdin.toString(), big, 'stdin arrives byte for byte');
  for (const [k, v] of Object.entries({ CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'ctr1', CNI_IFNAME: 'eth0', CNI_NETNS: '/run/netns/x', CNI_PATH: '/opt/cni/bin', CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAME=web', EXTRA_VAR: 'a=b=c' })) {
    assert.equal(req.env[k], v, k);
  }
  assert.equal(req.env.PATH, process.env.PATH, 'the whole environment is passed');
  const check = await p.call({ command: 'CHECK' });
  assert.equal(check.code, 1);
  assert.deepEqual(JSON.parse(check.stdout), { code: 106, msg: 'missing route' });
  for (const command of ['DEL', 'GC', 'STATUS']) {
    const r = await p.call({ command });
    assert.equal(r.code, 0, `${command}: ${r.stdout}`);
    assert.equal(r.stdout, '');
  }
  assert.deepEqual(seen.map((s) => s.env.CNI_COMMAND), ['ADD', 'CHECK', 'DEL', 'GC', 'STATUS']);
  assert.equal((statSync(p.socketPath).mode & 0o777).toString(8), '600', 'socket mode');
  assert.deepEqual(spoolFiles(p.spool), [], 'nothing spooled while the daemon answers');
});

test('32 concurrent ADDs are in the handler at the same time', async (t) => {
  const p = place();
  let inside = 0;
  let peak = 0;
  let open: () => void = () => undefined;
  const all = new Promise<void>((resolve) => { open = resolve; });
  const server = await serve(p.socketPath, async () => {
    peak = Math.max(peak, ++inside);
    if (inside === 32) open();
    // bounded, so that a forwarder that serialised its calls fails the test instead of hanging it
    await Promise.race([all, new Promise((resolve) => setTimeout(resolve, 10_000).unref())]);
    inside--;
    return { exitCode: 0, stdout: '{}' };
  });
  t.after(() => server.close());
  const rs = await Promise.all(Array.from({ length: 32 }, (_, i) => p.call({ command: 'ADD', containerId: `c${i}` })));
  assert.deepEqual(rs.map((r) => r.code), Array(32).fill(0));
  assert.equal(peak, 32, 'all 32 were handled concurrently');
});

test('daemon down: ADD fails with 11 after the bounded wait; CHECK and GC 11; STATUS 50', async () => {
  const p = place();
  const add = await p.call({ command: 'ADD', env: { BATCHBRIDGE_CNI_ADD_WAIT_MS: '400' } });
  assert.equal(add.code, 1);
  const e = JSON.parse(add.stdout) as { code: number; msg: string };
  assert.equal(e.code, 11);
  assert.match(e.msg, new RegExp(`not reachable at ${p.socketPath.replace(/[.]/g, '\\.')} after waiting 400 ms`));
  assert.ok(add.ms >= 400 && add.ms < 3000, `ADD waited ${add.ms} ms`);
  for (const [command, code] of [['CHECK', 11], ['GC', 11], ['STATUS', 50]] as const) {
    const r = await p.call({ command });
    assert.equal(r.code, 1, command);
    const body = JSON.parse(r.stdout) as { code: number; msg: string };
    assert.equal(body.code, code, command);
    assert.ok(body.msg.includes(p.socketPath), `${command} names the socket: ${body.msg}`);
    assert.ok(r.ms < 1000, `${command} does not wait (${r.ms} ms)`);
  }
  assert.deepEqual(spoolFiles(p.spool), []);
});

test('an ADD sent while the daemon restarts succeeds once it listens within the wait', async (t) => {
  const p = place();
  const pending = p.call({ command: 'ADD', env: { BATCHBRIDGE_CNI_ADD_WAIT_MS: '5000' } });
  await sleep(300);
  const server = await serve(p.socketPath, async () => ({ exitCode: 0, stdout: '{"ok":1}' }));
  t.after(() => server.close());
  const r = await pending;
  assert.equal(r.code, 0, r.stdout);
  assert.equal(r.stdout, '{"ok":1}');
});

test('DEL with the daemon down is spooled durably, succeeds, and is replayed first when the daemon starts', async (t) => {
  const p = place();
  const del = await p.call({ command: 'DEL', containerId: 'gone1', netns: '', stdin: CONF });
  assert.equal(del.code, 0, del.stdout);
  assert.equal(del.stdout, '');
  const files = spoolFiles(p.spool);
  assert.equal(files.length, 1);
  const file = join(p.spool, files[0] as string);
  assert.equal((statSync(file).mode & 0o777).toString(8), '600');
  assert.equal((statSync(p.spool).mode & 0o777).toString(8), '700');
  const frame = decodeRequest(readFileSync(file));
  assert.equal(frame.env.CNI_COMMAND, 'DEL');
  assert.equal(frame.env.CNI_CONTAINERID, 'gone1');
  assert.equal(frame.stdin.toString(), CONF);
  assert.deepEqual(readdirSync(p.spool).filter((f) => f.startsWith('.tmp-')), [], 'no temporary file left');

  const order: string[] = [];
  const server = await startCniServer({
    socketPath: p.socketPath,
    log,
    handler: async (req) => {
      order.push(`${req.env.CNI_COMMAND}:${req.env.CNI_CONTAINERID}`);
      if (req.env.CNI_COMMAND === 'DEL') {
        await sleep(200); // an ADD arriving meanwhile must wait
        order.push('DEL done');
      }
      return { exitCode: 0, stdout: '' };
    },
  });
  t.after(() => server.close());
  const add = await p.call({ command: 'ADD', containerId: 'gone1' });
  assert.equal(add.code, 0);
  const report = await server.ready;
  assert.deepEqual(report, { replayed: 1, failed: 0, kept: 0, bad: 0 });
  assert.deepEqual(order, ['DEL:gone1', 'DEL done', 'ADD:gone1']);
  assert.deepEqual(spoolFiles(p.spool), [], 'removed once handled');
});

test('a daemon killed with SIGKILL in the middle of a DEL: the DEL is spooled and succeeds, then replayed', async (t) => {
  const p = place();
  const marker = join(root, `marker${n}`);
  let stub: ChildProcess | null = spawn(process.execPath, [STUB, p.socketPath, '--hang-del', marker], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => stub?.kill('SIGKILL'));
  await new Promise<void>((resolve, reject) => {
    stub?.stdout?.once('data', () => resolve());
    stub?.once('exit', (code) => reject(new Error(`stub daemon exited ${code}`)));
  });
  const del = p.call({ command: 'DEL', containerId: 'mid1' });
  await eventually(async () => assert.ok(existsSync(marker), 'the daemon got the DEL'), { timeoutMs: 5000, intervalMs: 20 });
  const exited = new Promise((resolve) => stub?.once('exit', resolve));
  stub.kill('SIGKILL');
  await exited;
  stub = null;
  const r = await del;
  assert.equal(r.code, 0, r.stdout);
  assert.equal(spoolFiles(p.spool).length, 1, 'spooled');
  // The killed daemon left its socket behind; a new one replaces it and replays the DEL.
  const { seen, handler } = recorder(() => ({ exitCode: 0, stdout: '' }));
  const server = await serve(p.socketPath, handler);
  t.after(() => server.close());
  assert.deepEqual(seen.map((s) => `${s.env.CNI_COMMAND}:${s.env.CNI_CONTAINERID}`), ['DEL:mid1']);
  assert.deepEqual(spoolFiles(p.spool), []);
});

test('a DEL the daemon cannot take (spool answer) is recorded and succeeds; other verbs relay the error', async (t) => {
  const p = place();
  const server = await serve(p.socketPath, async () => ({ exitCode: 1, stdout: '{"code":11,"msg":"batchbridge is shutting down"}', spool: true }));
  t.after(() => server.close());
  const del = await p.call({ command: 'DEL', containerId: 'late1' });
  assert.equal(del.code, 0, del.stdout);
  assert.equal(spoolFiles(p.spool).length, 1);
  const add = await p.call({ command: 'ADD' });
  assert.equal(add.code, 1);
  assert.equal(JSON.parse(add.stdout).code, 11);
});

test('a claimed DEL runs once: not again if the start-up replay did it, once if the file came later', async (t) => {
  const p = place();
  assert.equal((await p.call({ command: 'DEL', containerId: 'early' })).code, 0);
  const [early] = spoolFiles(p.spool);
  assert.ok(early !== undefined);
  const { seen, handler } = recorder(() => ({ exitCode: 0, stdout: '' }));
  const server = await serve(p.socketPath, handler);
  t.after(() => server.close());
  const send = (frame: Buffer): Promise<Buffer> => new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const s = connect({ path: p.socketPath }, () => s.write(frame));
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('end', () => resolve(Buffer.concat(chunks)));
    s.on('error', reject);
  });
  const env = { CNI_COMMAND: 'DEL', CNI_CONTAINERID: 'early', CNI_IFNAME: 'eth0' };
  const again = decodeReply(await send(encodeRequest({ env, stdin: CONF, claim: early })));
  assert.equal(again.exitCode, 0);
  assert.equal(seen.length, 1, 'the replay already did it');
  // A file that appeared after the start-up listing: the claim runs it and removes it.
  const late = 'del-00000000000000000001-1-0.frame';
  writeFileSync(join(p.spool, late), encodeRequest({ env: { ...env, CNI_CONTAINERID: 'late' }, stdin: CONF }));
  const r = decodeReply(await send(encodeRequest({ env: { ...env, CNI_CONTAINERID: 'late' }, stdin: CONF, claim: late })));
  assert.equal(r.exitCode, 0);
  assert.deepEqual(seen.map((s) => s.env.CNI_CONTAINERID), ['early', 'late']);
  assert.deepEqual(spoolFiles(p.spool), []);
});

test('malformed frames get an error reply and the server keeps serving', async (t) => {
  const p = place();
  const { seen, handler } = recorder(() => ({ exitCode: 0, stdout: '{}' }));
  const server = await serve(p.socketPath, handler);
  t.after(() => server.close());
  const exchange = (bytes: Buffer): Promise<Buffer> => new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const s = connect({ path: p.socketPath }, () => s.write(bytes));
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('end', () => resolve(Buffer.concat(chunks)));
    s.on('error', reject);
  });
  const huge = encodeRequest({ env: {}, stdin: '' });
  huge.writeUInt32BE(0x7fffffff, 16); // stdin length far over the limit
  const cases: [string, Buffer][] = [
    ['not a frame', Buffer.from('POST / HTTP/1.1\r\nHost: x\r\n\r\n')],
    ['stdin over the limit', huge],
    ['reply type sent as request', Buffer.concat([Buffer.from('BBCN\x01\x02'), Buffer.alloc(FRAME_HEADER_BYTES - 6)])],
    ['environment without its NUL', Buffer.concat([encodeRequest({ env: {}, stdin: '' }).subarray(0, 12), Buffer.from([0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('A=b')])],
  ];
  for (const [what, bytes] of cases) {
    const reply = decodeReply(await exchange(bytes));
    assert.equal(reply.exitCode, 1, what);
    const body = JSON.parse(reply.stdout.toString()) as { code: number; msg: string };
    assert.equal(body.code, 6, what);
    assert.match(body.msg, /malformed request/, what);
  }
  const ok = await p.call({ command: 'ADD' });
  assert.equal(ok.code, 0, 'still serving');
  assert.equal(seen.length, 1, 'no malformed frame reached the handler');
});

test('a second server on a live socket is refused; a stale socket is replaced', async (t) => {
  const p = place();
  const first = await serve(p.socketPath, async () => ({ exitCode: 0, stdout: '' }));
  await assert.rejects(startCniServer({ socketPath: p.socketPath, handler: async () => ({ exitCode: 0, stdout: '' }), log }), /another process serves/);
  assert.equal((await p.call({ command: 'STATUS' })).code, 0, 'the first one still serves');
  await first.close();
  assert.equal(existsSync(p.socketPath), false, 'close removes the socket');
  const second = await serve(p.socketPath, async () => ({ exitCode: 0, stdout: '' }));
  t.after(() => second.close());
  assert.equal((await p.call({ command: 'STATUS' })).code, 0);
});
