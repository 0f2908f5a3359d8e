// Idle and half-open connections time out; a request being answered never does; and thousands of
// idle connections do not delay a real request (issue 10, J: 1,610 idle connections were held).
import assert from 'node:assert/strict';
import { chmodSync, readdirSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { sleep } from '../helpers/proc.js';
import { assertPrivateNetns, cleanUpAfter, Client, startPlugin, tempDir, type PluginProc } from './crash-kit.js';

const IDLE = 2000;
const TIMEOUT_MS = 1000; // --headers-timeout-ms and --idle-timeout-ms
const REQUEST_TIMEOUT_MS = 1500;
const SLOW_IP_S = 3; // longer than every timeout: the answer must still come

const REQ = (path: string, body: string): string =>
  `POST ${path} HTTP/1.1\r\nHost: plugin\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;

interface Conn {
  readonly sock: Socket;
  received: string;
  closedAt: number | null;
}

/** Connect (retrying while the listen backlog is full: EAGAIN) and send `first`, if any. */
async function open(path: string, t0: number, first?: string): Promise<Conn> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await openOnce(path, t0, first);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN' || attempt >= 200) throw err;
      await sleep(10);
    }
  }
}

function openOnce(path: string, t0: number, first?: string): Promise<Conn> {
  return new Promise((resolve, reject) => {
    const c: Conn = { sock: connect(path), received: '', closedAt: null };
    c.sock.setEncoding('utf8');
    c.sock.on('data', (d: string) => (c.received += d));
    c.sock.on('close', () => (c.closedAt = Date.now() - t0));
    c.sock.once('error', reject);
    c.sock.once('connect', () => {
      c.sock.removeListener('error', reject);
      c.sock.on('error', () => undefined);
      if (first !== undefined) c.sock.write(first);
      resolve(c);
    });
  });
}

test('idle and half-sent connections are closed after their timeouts; real requests stay prompt; a slow answer is not cut', { timeout: 90_000 }, async (t) => {
  assertPrivateNetns();
  const dir = await tempDir('bbt-idle-');
  let plugin: PluginProc | null = null;
  const conns: Conn[] = [];
  cleanUpAfter(t, dir, () => plugin, async () => {
    for (const c of conns) c.sock.destroy();
  });
  // `ip` that takes SLOW_IP_S seconds once the flag file exists (start-up stays fast).
  const flag = join(dir.path, 'slow');
  const slowIp = join(dir.path, 'slow-ip');
  writeFileSync(slowIp, `#!/bin/sh\n[ -e ${flag} ] && sleep ${SLOW_IP_S}\nexec ip "$@"\n`);
  chmodSync(slowIp, 0o755);
  plugin = await startPlugin({
    name: 'bbidle', stateDir: join(dir.path, 'state'), socketDir: join(dir.path, 'sock'), logPath: join(dir.path, 'log'),
    extraArgs: ['--headers-timeout-ms', String(TIMEOUT_MS), '--request-timeout-ms', String(REQUEST_TIMEOUT_MS), '--idle-timeout-ms', String(TIMEOUT_MS), '--reconcile-interval-ms', '0'],
    env: { BB_IP_BIN: slowIp },
  });
  const fds = (): number => readdirSync(`/proc/${plugin?.pid ?? 0}/fd`).length;
  const fdsBefore = fds();
  const path = plugin.socketPath;

  // Half never send a byte; half make one request and then sit on the kept-alive connection.
  const t0 = Date.now();
  for (let i = 0; i < IDLE; i += 100) {
    conns.push(...(await Promise.all(Array.from({ length: 100 }, (_, j) => open(path, t0, (i + j) % 2 === 0 ? undefined : REQ('/NetworkDriver.GetCapabilities', '{}'))))));
  }
  const openedMs = Date.now() - t0;
  // Headers and 10 of 100 body bytes, then nothing.
  const halfOpen = await open(path, t0, REQ('/NetworkDriver.CreateNetwork', 'x'.repeat(100)).slice(0, -90));
  // A real request that takes longer than every timeout once received.
  writeFileSync(flag, '');
  const slowClient = new Client(path, 0);
  t.after(() => slowClient.close());
  const slow = slowClient.call('CreateNetwork', { NetworkID: 'idlenet0000001', Options: {}, IPv4Data: [{ Pool: '198.18.140.0/24' }], IPv6Data: [] });

  // Real requests, one after another, until every idle connection is gone.
  const probe = new Client(path, 0);
  t.after(() => probe.close());
  const latencies: number[] = [];
  let fdsHeld = 0;
  const deadline = Date.now() + 15_000;
  while (conns.some((c) => c.closedAt === null) || halfOpen.closedAt === null) {
    assert.ok(Date.now() < deadline, `${conns.filter((c) => c.closedAt === null).length} idle connection(s) still open after 15 s`);
    const s = Date.now();
    const r = await probe.call('GetCapabilities', undefined);
    latencies.push(Date.now() - s);
    assert.equal(r.status, 200, r.text);
    fdsHeld = Math.max(fdsHeld, fds());
    await sleep(50);
  }
  assert.ok(fdsHeld >= fdsBefore + IDLE * 0.9, `the plugin really held the connections (${fdsHeld} fds, ${fdsBefore} before)`);

  // Closed by the timeouts (not before them), within about a second of them (Node adds ~1 s to
  // the kept-alive one and checks the others every 250 ms).
  const closed = conns.map((c) => c.closedAt ?? Infinity);
  assert.ok(Math.min(...closed) >= TIMEOUT_MS - 50, `closed no earlier than the timeout (${Math.min(...closed)} ms)`);
  assert.ok(Math.max(...closed) <= openedMs + TIMEOUT_MS + 2_500, `all closed ${Math.max(...closed)} ms after opening started (opening took ${openedMs} ms)`);
  const silent = conns.filter((_, i) => i % 2 === 0);
  for (const c of silent) assert.match(c.received, /^HTTP\/1\.1 408 /, 'a connection that never sent a byte gets 408');
  for (const c of conns.filter((_, i) => i % 2 === 1)) assert.match(c.received, /^HTTP\/1\.1 200 /);
  assert.match(halfOpen.received, /^HTTP\/1\.1 408 /, 'the half-sent request gets 408');
  assert.ok((halfOpen.closedAt ?? 0) >= REQUEST_TIMEOUT_MS - 50, `half-sent closed at ${halfOpen.closedAt} ms`);

  const res = await slow;
  assert.equal(res.status, 200, `the request answered after ${SLOW_IP_S} s was not cut: ${res.text}`);
  latencies.sort((a, b) => a - b);
  const max = latencies[latencies.length - 1] ?? 0;
  t.diagnostic(`${IDLE} idle connections opened in ${openedMs} ms; ${latencies.length} real requests meanwhile: median ${latencies[latencies.length >> 1]} ms, max ${max} ms; closed ${Math.min(...closed)}-${Math.max(...closed)} ms`);
  assert.ok(max < 1000, `real requests stayed prompt (max ${max} ms)`);
  await sleep(200);
  assert.ok(fds() < fdsBefore + 20, `the plugin let go of them (${fds()} fds, ${fdsBefore} before)`);
  assert.equal((await plugin.stop()).code, 0);
  plugin = null;
});
