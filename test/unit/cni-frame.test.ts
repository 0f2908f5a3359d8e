// The forwarder ↔ daemon frame: round trips, the byte layout the C side writes, limits, and
// every way a frame can be malformed.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  decodeEnv,
  decodeReply,
  decodeRequest,
  encodeReply,
  encodeRequest,
  FRAME_HEADER_BYTES,
  FRAME_LIMITS,
  FRAME_TYPE,
  FrameError,
  FrameReader,
} from '../../src/cni/frame.js';

test('a request round-trips; the header is the documented layout', () => {
  const env = { CNI_COMMAND: 'ADD', CNI_ARGS: 'A=1;B=2', EMPTY: '' };
  const f = encodeRequest({ env, stdin: '{"x":1}', claim: 'del-00000000000000000042-7-0.frame' });
  assert.equal(f.toString('latin1', 0, 4), 'BBCN');
  assert.equal(f[4], 1, 'version');
  assert.equal(f[5], FRAME_TYPE.request);
  assert.equal(f.readUInt16BE(6), 0);
  assert.equal(f.readInt32BE(8), 0);
  const envBytes = Buffer.from('CNI_COMMAND=ADD\0CNI_ARGS=A=1;B=2\0EMPTY=\0');
  assert.equal(f.readUInt32BE(12), envBytes.length);
  assert.equal(f.readUInt32BE(16), 7);
  assert.equal(f.readUInt32BE(20), 34);
  assert.deepEqual(f.subarray(FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + envBytes.length), envBytes);
  const d = decodeRequest(f);
  assert.deepEqual({ ...d.env }, env);
  assert.equal(d.stdin.toString(), '{"x":1}');
  assert.equal(d.claim, 'del-00000000000000000042-7-0.frame');
});

test('a reply round-trips with its exit code, stderr and spool flag', () => {
  const r = decodeReply(encodeReply({ exitCode: 7, stdout: 'out', stderr: 'err', spool: true }));
  assert.deepEqual([r.exitCode, r.stdout.toString(), r.stderr.toString(), r.spool], [7, 'out', 'err', true]);
  assert.equal(decodeReply(encodeReply({ exitCode: 0, stdout: '' })).spool, false);
  for (const bad of [-1, 256, 1.5, Number.NaN]) assert.equal(decodeReply(encodeReply({ exitCode: bad, stdout: '' })).exitCode, 1, String(bad));
  const longErr = decodeReply(encodeReply({ exitCode: 0, stdout: '', stderr: 'e'.repeat(FRAME_LIMITS.stderr + 10) }));
  assert.equal(longErr.stderr.length, FRAME_LIMITS.stderr, 'stderr is cut, not refused');
  assert.throws(() => encodeReply({ exitCode: 0, stdout: Buffer.alloc(FRAME_LIMITS.stdout + 1) }), FrameError);
});

test('the environment block: first occurrence wins, entries without a name are skipped', () => {
  const env = decodeEnv(Buffer.from('A=1\0A=2\0=x\0NOEQUALS\0B==c\0'));
  assert.deepEqual({ ...env }, { A: '1', B: '=c' });
  assert.throws(() => decodeEnv(Buffer.from('A=1')), /does not end with NUL/);
  assert.equal(Object.getPrototypeOf(decodeEnv(Buffer.from('__proto__=x\0'))), null, 'no prototype to pollute');
});

test('FrameReader assembles a frame from any chunking', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1, maxLength: 40 }), (stdin, cuts) => {
      const f = encodeRequest({ env: { CNI_COMMAND: 'DEL' }, stdin: Buffer.from(stdin) });
      const reader = new FrameReader(FRAME_TYPE.request);
      let got: Buffer | null = null;
      let at = 0;
      for (let i = 0; at < f.length; i++) {
        const len = cuts[i % cuts.length] ?? 1;
        assert.equal(got, null);
        got = reader.push(f.subarray(at, at + len));
        at += len;
      }
      assert.ok(got !== null);
      assert.deepEqual(decodeRequest(got).stdin, Buffer.from(stdin));
    }),
    { numRuns: 200 },
  );
});

test('malformed frames are refused with a FrameError naming the problem', () => {
  const good = encodeRequest({ env: { A: 'b' }, stdin: 'x' });
  const mutate = (fn: (b: Buffer) => void): Buffer => {
    const b = Buffer.from(good);
    fn(b);
    return b;
  };
  const cases: [string, Buffer, RegExp][] = [
    ['bad magic', mutate((b) => b.write('XXXX', 0)), /bad magic/],
    ['other version', mutate((b) => b.writeUInt8(2, 4)), /unsupported frame version 2/],
    ['reply type', mutate((b) => b.writeUInt8(2, 5)), /unexpected frame type 2/],
    ['flags on a request', mutate((b) => b.writeUInt16BE(1, 6)), /no flags/],
    ['environment over the limit', mutate((b) => b.writeUInt32BE(FRAME_LIMITS.env + 1, 12)), /environment of \d+ bytes is over/],
    ['stdin over the limit', mutate((b) => b.writeUInt32BE(FRAME_LIMITS.stdin + 1, 16)), /stdin of \d+ bytes is over/],
    ['claim over the limit', mutate((b) => b.writeUInt32BE(256, 20)), /third part/],
    ['truncated', good.subarray(0, good.length - 1), /truncated frame/],
    ['trailing bytes', Buffer.concat([good, Buffer.from('z')]), /unexpected bytes after the frame/],
    ['short header', good.subarray(0, 10), /truncated header/],
    ['a claim that is not a spool name', encodeRequest({ env: {}, stdin: '', claim: '../../etc/passwd' }), /invalid spool file name/],
  ];
  for (const [what, bytes, re] of cases) assert.throws(() => decodeRequest(bytes), (e: Error) => e instanceof FrameError && re.test(e.message), what);
  // The reader refuses an oversized header before buffering the body.
  const reader = new FrameReader(FRAME_TYPE.request);
  assert.throws(() => reader.push(mutate((b) => b.writeUInt32BE(0xffffffff, 16)).subarray(0, FRAME_HEADER_BYTES)), /over the/);
  const r2 = new FrameReader(FRAME_TYPE.request);
  assert.throws(() => r2.push(Buffer.concat([good, Buffer.from('more')])), /unexpected bytes/);
});

test('random bytes never decode into a request by accident and never throw anything but FrameError', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
      try {
        decodeRequest(Buffer.from(bytes));
        assert.fail('decoded random bytes');
      } catch (e) {
        assert.ok(e instanceof FrameError, String(e));
      }
    }),
    { numRuns: 500 },
  );
});
