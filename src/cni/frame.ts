// The frame between the C forwarder (src/cni/forwarder/batchbridge-cni.c, which documents the
// layout too) and the daemon, and the spool files the forwarder writes (same bytes).
//
//   0 "BBCN" | 4 u8 version 1 | 5 u8 type (1 request, 2 reply) | 6 u16 flags | 8 i32 exit code
//   12 u32 A | 16 u32 B | 20 u32 C | A bytes | B bytes | C bytes        (big-endian)
//   request: A = environment ("K=V\0"…), B = stdin, C = spool file name of a DEL (or empty)
//   reply:   A = stdout, B = stderr, C = empty; flags bit 0 = "record this DEL in the spool"
//
// Lengths are checked against the limits below before anything is buffered, so a peer cannot
// make the daemon allocate more than ~18 MiB per connection.

export const FRAME_MAGIC = 'BBCN';
export const FRAME_VERSION = 1;
export const FRAME_HEADER_BYTES = 24;
export const FRAME_TYPE = { request: 1, reply: 2 } as const;
export type FrameType = (typeof FRAME_TYPE)[keyof typeof FRAME_TYPE];
export const REPLY_FLAG_SPOOL = 1;

export const FRAME_LIMITS = {
  env: 1 << 20,
  stdin: 16 << 20,
  claim: 255,
  stdout: 16 << 20,
  stderr: 1 << 20,
} as const;

/** Names the forwarder gives spool files: del-<ns since the epoch, 20 digits>-<pid>-<n>.frame */
export const SPOOL_NAME_RE = /^del-\d{20}-\d{1,10}-\d{1,3}\.frame$/;

export class FrameError extends Error {
  override name = 'FrameError';
}

export interface RequestFrame {
  /** the first occurrence of each name wins, as getenv() in the forwarder saw it */
  readonly env: Readonly<Record<string, string>>;
  readonly stdin: Buffer;
  /** the spool file this DEL was also recorded as, or null */
  readonly claim: string | null;
}

export interface ReplyFrame {
  readonly exitCode: number;
  readonly stdout: Buffer;
  readonly stderr: Buffer;
  readonly spool: boolean;
}

interface Header {
  readonly type: FrameType;
  readonly flags: number;
  readonly code: number;
  readonly a: number;
  readonly b: number;
  readonly c: number;
}

function header(type: FrameType, flags: number, code: number, a: number, b: number, c: number): Buffer {
  const h = Buffer.alloc(FRAME_HEADER_BYTES);
  h.write(FRAME_MAGIC, 0, 'latin1');
  h.writeUInt8(FRAME_VERSION, 4);
  h.writeUInt8(type, 5);
  h.writeUInt16BE(flags, 6);
  h.writeInt32BE(code, 8);
  h.writeUInt32BE(a, 12);
  h.writeUInt32BE(b, 16);
  h.writeUInt32BE(c, 20);
  return h;
}

/** Validates a header against the limits of the expected type. */
export function parseHeader(h: Buffer, expected: FrameType): Header {
  if (h.length < FRAME_HEADER_BYTES) throw new FrameError('truncated header');
  if (h.toString('latin1', 0, 4) !== FRAME_MAGIC) throw new FrameError('bad magic (not a batchbridge CNI frame)');
  const version = h.readUInt8(4);
  if (version !== FRAME_VERSION) throw new FrameError(`unsupported frame version ${version} (this daemon speaks ${FRAME_VERSION})`);
  const type = h.readUInt8(5);
  if (type !== expected) throw new FrameError(`unexpected frame type ${type} (expected ${expected})`);
  const hd: Header = { type: expected, flags: h.readUInt16BE(6), code: h.readInt32BE(8), a: h.readUInt32BE(12), b: h.readUInt32BE(16), c: h.readUInt32BE(20) };
  const [la, lb, lc] =
    expected === FRAME_TYPE.request
      ? [FRAME_LIMITS.env, FRAME_LIMITS.stdin, FRAME_LIMITS.claim]
      : [FRAME_LIMITS.stdout, FRAME_LIMITS.stderr, 0];
  if (hd.a > la) throw new FrameError(`${expected === FRAME_TYPE.request ? 'environment' : 'stdout'} of ${hd.a} bytes is over the ${la}-byte limit`);
  if (hd.b > lb) throw new FrameError(`${expected === FRAME_TYPE.request ? 'stdin' : 'stderr'} of ${hd.b} bytes is over the ${lb}-byte limit`);
  if (hd.c > lc) throw new FrameError(`third part of ${hd.c} bytes is over the ${lc}-byte limit`);
  return hd;
}

export function frameLength(h: Header): number {
  return FRAME_HEADER_BYTES + h.a + h.b + h.c;
}

function encodeEnv(env: Readonly<Record<string, string>> | readonly string[]): Buffer {
  const entries = Array.isArray(env) ? (env as readonly string[]) : Object.entries(env).map(([k, v]) => `${k}=${v}`);
  return Buffer.from(entries.map((e) => `${e}\0`).join(''), 'utf8');
}

/** "K=V\0" entries; entries without '=' or with an empty name are skipped, as getenv would. */
export function decodeEnv(block: Buffer): Record<string, string> {
  const env: Record<string, string> = Object.create(null) as Record<string, string>;
  if (block.length === 0) return env;
  if (block[block.length - 1] !== 0) throw new FrameError('environment block does not end with NUL');
  for (const entry of block.toString('utf8', 0, block.length - 1).split('\0')) {
    const eq = entry.indexOf('=');
    if (eq <= 0) continue;
    const key = entry.slice(0, eq);
    if (!(key in env)) env[key] = entry.slice(eq + 1);
  }
  return env;
}

export function encodeRequest(req: { env: Readonly<Record<string, string>> | readonly string[]; stdin: Buffer | string; claim?: string | null }): Buffer {
  const env = encodeEnv(req.env);
  const stdin = typeof req.stdin === 'string' ? Buffer.from(req.stdin, 'utf8') : req.stdin;
  const claim = Buffer.from(req.claim ?? '', 'latin1');
  return Buffer.concat([header(FRAME_TYPE.request, 0, 0, env.length, stdin.length, claim.length), env, stdin, claim]);
}

export function encodeReply(rep: { exitCode: number; stdout: Buffer | string; stderr?: Buffer | string; spool?: boolean }): Buffer {
  const out = typeof rep.stdout === 'string' ? Buffer.from(rep.stdout, 'utf8') : rep.stdout;
  const errText = rep.stderr ?? '';
  let err = typeof errText === 'string' ? Buffer.from(errText, 'utf8') : errText;
  // stderr is informational: cut it rather than fail the reply
  if (err.length > FRAME_LIMITS.stderr) err = err.subarray(0, FRAME_LIMITS.stderr);
  if (out.length > FRAME_LIMITS.stdout) throw new FrameError(`stdout of ${out.length} bytes is over the ${FRAME_LIMITS.stdout}-byte limit`);
  const code = Number.isInteger(rep.exitCode) && rep.exitCode >= 0 && rep.exitCode <= 255 ? rep.exitCode : 1;
  return Buffer.concat([header(FRAME_TYPE.reply, rep.spool === true ? REPLY_FLAG_SPOOL : 0, code, out.length, err.length, 0), out, err]);
}

function split(buf: Buffer, expected: FrameType): { h: Header; a: Buffer; b: Buffer; c: Buffer } {
  const h = parseHeader(buf, expected);
  const total = frameLength(h);
  if (buf.length < total) throw new FrameError(`truncated frame: ${buf.length} of ${total} bytes`);
  if (buf.length > total) throw new FrameError(`${buf.length - total} unexpected bytes after the frame`);
  const a0 = FRAME_HEADER_BYTES;
  const b0 = a0 + h.a;
  const c0 = b0 + h.b;
  return { h, a: buf.subarray(a0, b0), b: buf.subarray(b0, c0), c: buf.subarray(c0, total) };
}

export function decodeRequest(buf: Buffer): RequestFrame {
  const { h, a, b, c } = split(buf, FRAME_TYPE.request);
  if (h.flags !== 0 || h.code !== 0) throw new FrameError('request frames carry no flags or exit code');
  let claim: string | null = null;
  if (c.length > 0) {
    claim = c.toString('latin1');
    if (!SPOOL_NAME_RE.test(claim)) throw new FrameError(`invalid spool file name ${JSON.stringify(claim.slice(0, 80))}`);
  }
  return { env: decodeEnv(a), stdin: Buffer.from(b), claim };
}

export function decodeReply(buf: Buffer): ReplyFrame {
  const { h, a, b } = split(buf, FRAME_TYPE.reply);
  return { exitCode: h.code, stdout: Buffer.from(a), stderr: Buffer.from(b), spool: (h.flags & REPLY_FLAG_SPOOL) !== 0 };
}

/**
 * Collects one frame from a stream. push() returns the whole frame once it is complete; it
 * throws FrameError as soon as the header is wrong or more bytes arrive than the frame holds.
 */
export class FrameReader {
  private chunks: Buffer[] = [];
  private have = 0;
  private need: number | null = null;

  constructor(private readonly expected: FrameType) {}

  push(chunk: Buffer): Buffer | null {
    this.chunks.push(chunk);
    this.have += chunk.length;
    if (this.need === null && this.have >= FRAME_HEADER_BYTES) {
      this.chunks = [Buffer.concat(this.chunks)];
      this.need = frameLength(parseHeader(this.chunks[0] as Buffer, this.expected));
    }
    if (this.need === null || this.have < this.need) return null;
    if (this.have > this.need) throw new FrameError(`${this.have - this.need} unexpected bytes after the frame`);
    const whole = Buffer.concat(this.chunks);
    this.chunks = [];
    return whole;
  }

  get bytes(): number {
    return this.have;
  }
}
