// The one place where an error becomes a protocol answer. dockerd shows `Err` to the user for
// any non-200 status; 404 would mean "not implemented" (and is silently ignored for Program/
// RevokeExternalConnectivity), so no domain error ever maps to 404.
import { BbError, type ErrorKind } from '../errors.js';

const STATUS: Record<ErrorKind, number> = {
  'bad-request': 400,
  conflict: 409,
  'not-found': 422,
  'not-supported': 501,
  unavailable: 503,
  kernel: 500,
  // Raised before the socket listens (or by the CLI); never a protocol answer in practice.
  setup: 500,
};

export interface ErrorAnswer {
  readonly status: number;
  readonly body: { Err: string };
  readonly code: string;
}

interface FastifyLikeError {
  code?: string;
  statusCode?: number;
  message?: string;
}

export function renderError(err: unknown): ErrorAnswer {
  if (err instanceof BbError) return { status: STATUS[err.kind], body: { Err: err.message }, code: err.code };
  const e = (err ?? {}) as FastifyLikeError;
  // Fastify's own errors (body too large, bad JSON, …) keep their 4xx status, never 404.
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500 && e.statusCode !== 404) {
    return { status: e.statusCode, body: { Err: `invalid request: ${e.message ?? 'bad request'}` }, code: e.code ?? 'BB_ERR_INVALID_REQUEST' };
  }
  if (e.statusCode === 503) return { status: 503, body: { Err: `batchbridge is overloaded: ${e.message ?? ''}`.trim() }, code: 'BB_ERR_OVERLOADED' };
  return { status: 500, body: { Err: `internal error: ${e.message ?? String(err)}` }, code: 'BB_ERR_INTERNAL' };
}
