// Connection timeouts of the plugin socket (issue 10, J: 1,610 idle connections were held open).
// What a request does once it is received is never timed: CreateEndpoint may wait seconds for
// its batch under load, and dockerd would see a broken call. So only the phases where the client
// owes us something are limited (measured with Node 20's http server, see docs/reliability.md):
//  - headers: from the connection's opening (or, on a kept-alive connection, the request's first
//    byte) to the end of the request headers; a connection that never sends a byte is closed
//    after this, with 408;
//  - request: until the whole request (headers and body) has arrived; a stalled body gets 408.
//    Node stops this clock once the request is received, so a slow answer is not cut;
//  - idle: a kept-alive connection with no request in flight is closed after this (Node 20 adds
//    about 1 s).
// Node checks the first two every `connectionsCheckingInterval` ms, so that follows the limits.

export interface HttpTimeouts {
  readonly headersMs: number;
  readonly requestMs: number;
  readonly idleMs: number;
}

export const DEFAULT_HTTP_TIMEOUTS: HttpTimeouts = { headersMs: 10_000, requestMs: 30_000, idleMs: 60_000 };

export interface ServerTimeoutOptions {
  /** Node's socket inactivity timeout: 0, or a request waiting for its batch would be cut. */
  readonly connectionTimeout: number;
  readonly keepAliveTimeout: number;
  readonly requestTimeout: number;
  readonly http: { readonly headersTimeout: number; readonly connectionsCheckingInterval: number };
}

/** Fastify/Node server options for `t`. Node requires headers <= request; the CLI checks that. */
export function serverTimeoutOptions(t: HttpTimeouts): ServerTimeoutOptions {
  const finest = Math.min(t.headersMs, t.requestMs);
  return {
    connectionTimeout: 0,
    keepAliveTimeout: t.idleMs,
    requestTimeout: t.requestMs,
    // Enforced within a quarter of the shortest limit (at most 1 s late); one pass over the
    // connection list costs microseconds even with thousands open.
    http: { headersTimeout: t.headersMs, connectionsCheckingInterval: Math.max(25, Math.min(1000, Math.floor(finest / 4))) },
  };
}
