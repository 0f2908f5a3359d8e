// The plugin protocol over HTTP: fastify with one catch-all body parser (dockerd 20.10 sends no
// Content-Type, newer ones send application/vnd.docker.plugins.v1.2+json), a JSON body on every
// answer, and errors rendered in exactly one place. What each call does is in protocol.ts.
import underPressure from '@fastify/under-pressure';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyRequest } from 'fastify';
import type { LevelWithSilent, Logger } from 'pino';
import { InvalidRequestError, NotSupportedError, OverloadedError } from '../errors.js';
import { DEFAULT_HTTP_TIMEOUTS, serverTimeoutOptions, type HttpTimeouts } from './http-timeouts.js';
import { endpointId, list, networkId, options, parseBody, type Body } from './decode.js';
import { NO_REQUEST_METRICS, type RequestMetrics } from '../metrics/requests.js';
import type { DockerProtocol } from './protocol.js';
import { renderError } from './render-error.js';

export interface AppDeps {
  readonly protocol: DockerProtocol;
  readonly logger: Logger;
  /** answer "overloaded" when more operations than this are queued or running */
  readonly maxQueue: number;
  readonly maxEventLoopDelayMs: number;
  readonly maxHeapUsedBytes: number;
  readonly bodyLimit: number;
  /** connection timeouts (default DEFAULT_HTTP_TIMEOUTS) */
  readonly timeouts?: HttpTimeouts;
  /** called on Plugin.Activate: dockerd (re)started and is using us; answered once it settles */
  readonly onActivate?: () => Promise<void> | void;
  /** measures each request (src/metrics/requests.ts) */
  readonly requests?: RequestMetrics;
  /** what /BatchBridge.Status answers (`batchbridge status`) */
  readonly status?: () => unknown;
}

type Handler = (body: Body) => Promise<unknown> | unknown;

interface Route {
  /** the call may come without a body */
  readonly empty: boolean;
  readonly fn: Handler;
}

/** Calls that start new work: the only ones refused when the plugin is overloaded. */
const SHEDDABLE: ReadonlySet<string> = new Set(['/NetworkDriver.CreateEndpoint', '/NetworkDriver.ProgramExternalConnectivity', '/NetworkDriver.CreateNetwork']);
const CONTENT_TYPE = 'application/vnd.docker.plugins.v1.2+json';
/** Creates whose argument-less retry is answered as the create it repeats (retry-memo.ts). */
const RETRIED_CREATES: Readonly<Record<string, 'network' | 'endpoint'>> = { '/NetworkDriver.CreateNetwork': 'network', '/NetworkDriver.CreateEndpoint': 'endpoint' };

let reqCounter = 0;

/** What a request concerns and how it ends, for its log lines and its metrics. */
interface RequestNotes {
  finish: (outcome: string) => void;
  code?: string;
  networkId?: string;
  endpointId?: string;
}

const notes = new WeakMap<FastifyRequest, RequestNotes>();

/** The ids a request names, as given (short printable strings only: they go into log lines). */
function idsOf(b: Body): Pick<RequestNotes, 'networkId' | 'endpointId'> {
  const ok = (v: unknown): v is string => typeof v === 'string' && /^[\x21-\x7e]{1,128}$/.test(v);
  return { ...(ok(b.NetworkID) ? { networkId: b.NetworkID } : {}), ...(ok(b.EndpointID) ? { endpointId: b.EndpointID } : {}) };
}

/** Every call of the protocol (and our private ones), as the metrics name them. */
export const DOCKER_CALLS: readonly string[] = [
  'Plugin.Activate', 'NetworkDriver.GetCapabilities', 'NetworkDriver.CreateNetwork', 'NetworkDriver.DeleteNetwork',
  'NetworkDriver.CreateEndpoint', 'NetworkDriver.EndpointOperInfo', 'NetworkDriver.DeleteEndpoint', 'NetworkDriver.Join',
  'NetworkDriver.Leave', 'NetworkDriver.ProgramExternalConnectivity', 'NetworkDriver.RevokeExternalConnectivity',
  'NetworkDriver.DiscoverNew', 'NetworkDriver.DiscoverDelete', 'NetworkDriver.AllocateNetwork', 'NetworkDriver.FreeNetwork',
  'BatchBridge.Ports', 'BatchBridge.Status', 'BatchBridge.Reconcile',
];
const KNOWN_CALLS = new Set(DOCKER_CALLS);

/** Metrics and ids for every request: started on arrival, finished with its answer. */
function registerNotes(app: FastifyInstance, metrics: RequestMetrics): void {
  app.addHook('onRequest', async (req) => {
    const path = (req.url.split('?')[0] ?? '').slice(1);
    notes.set(req, { finish: metrics.start('docker', KNOWN_CALLS.has(path) ? path : 'other') });
  });
  app.addHook('onResponse', async (req, reply) => {
    const n = notes.get(req);
    n?.finish(reply.statusCode === 200 ? 'ok' : (n.code ?? `HTTP_${reply.statusCode}`));
  });
}

function routes(deps: AppDeps): Record<string, Route> {
  const p = deps.protocol;
  const done = async (work: Promise<void>): Promise<object> => {
    await work;
    return {};
  };
  const swarmOnly = (call: string) => (): never => {
    throw new NotSupportedError(`${call} is not supported: batchbridge is a local-scope driver (no swarm)`);
  };
  return {
    '/Plugin.Activate': {
      empty: true,
      fn: async () => {
        try {
          await deps.onActivate?.();
        } catch (err) {
          // Activation must not fail because settling did: dockerd would not use us at all.
          deps.logger.error({ err }, 'settling after Plugin.Activate failed');
        }
        return { Implements: ['NetworkDriver'] };
      },
    },
    '/NetworkDriver.GetCapabilities': { empty: true, fn: () => ({ Scope: 'local', ConnectivityScope: 'local' }) },
    '/NetworkDriver.CreateNetwork': { empty: false, fn: (b) => done(p.createNetwork({ NetworkID: networkId(b), Options: options(b), IPv4Data: list(b, 'IPv4Data'), IPv6Data: list(b, 'IPv6Data') })) },
    '/NetworkDriver.DeleteNetwork': { empty: false, fn: (b) => done(p.deleteNetwork(networkId(b))) },
    '/NetworkDriver.CreateEndpoint': {
      empty: false,
      fn: (b) => {
        const iface = b.Interface;
        if (iface !== undefined && iface !== null && (typeof iface !== 'object' || Array.isArray(iface))) {
          return Promise.reject(new InvalidRequestError('Interface must be an object'));
        }
        return p.createEndpoint({ NetworkID: networkId(b), EndpointID: endpointId(b), Interface: iface as Record<string, unknown> | null | undefined, Options: options(b) });
      },
    },
    '/NetworkDriver.EndpointOperInfo': { empty: false, fn: (b) => p.endpointOperInfo(networkId(b), endpointId(b)) },
    '/NetworkDriver.DeleteEndpoint': { empty: false, fn: (b) => done(p.deleteEndpoint(networkId(b), endpointId(b))) },
    '/NetworkDriver.Join': {
      empty: false,
      fn: (b) => {
        options(b);
        if (b.SandboxKey !== undefined && typeof b.SandboxKey !== 'string') throw new InvalidRequestError('SandboxKey must be a string');
        return p.join(networkId(b), endpointId(b));
      },
    },
    '/NetworkDriver.Leave': { empty: false, fn: (b) => done(p.leave(networkId(b), endpointId(b))) },
    '/NetworkDriver.ProgramExternalConnectivity': { empty: false, fn: (b) => done(p.programExternalConnectivity(networkId(b), endpointId(b), options(b))) },
    '/NetworkDriver.RevokeExternalConnectivity': { empty: false, fn: (b) => done(p.revokeExternalConnectivity(networkId(b), endpointId(b))) },
    '/NetworkDriver.DiscoverNew': { empty: true, fn: () => ({}) },
    '/NetworkDriver.DiscoverDelete': { empty: true, fn: () => ({}) },
    '/NetworkDriver.AllocateNetwork': { empty: true, fn: swarmOnly('AllocateNetwork') },
    '/NetworkDriver.FreeNetwork': { empty: true, fn: swarmOnly('FreeNetwork') },
    // Not part of Docker's protocol: the CLI's `batchbridge ports` reads the bindings here.
    '/BatchBridge.Ports': { empty: true, fn: () => ({ Bindings: p.listBindings() }) },
    // Not part of Docker's protocol: `batchbridge status` asks here.
    '/BatchBridge.Status': { empty: true, fn: () => ({ Status: deps.status?.() ?? null }) },
    // Not part of Docker's protocol: `batchbridge reconcile` asks the running plugin here.
    '/BatchBridge.Reconcile': {
      empty: true,
      fn: async (b) => {
        if (b.DryRun !== undefined && typeof b.DryRun !== 'boolean') throw new InvalidRequestError('DryRun must be a boolean');
        return { Report: await p.engine.reconcile({ dryRun: b.DryRun === true }) };
      },
    },
  };
}

async function registerPressure(app: FastifyInstance, deps: AppDeps): Promise<void> {
  await app.register(underPressure, {
    maxEventLoopDelay: deps.maxEventLoopDelayMs,
    maxHeapUsedBytes: deps.maxHeapUsedBytes,
    sampleInterval: 50,
    pressureHandler: (req, reply, type, value) => {
      // Only new work is shed. Teardown (Delete*, Leave, Revoke) must always get through: dockerd
      // only logs its errors and forgets the object, so shedding it would leak. Handshakes and
      // reads are cheap. (Returning nothing lets the request go on.)
      if (!SHEDDABLE.has(req.url)) return undefined;
      // under-pressure reports Infinity when no event-loop sample fell in the interval (right
      // after start, or after one long synchronous step): no measurement, not an overload.
      if (type === 'eventLoopDelay' && !Number.isFinite(value)) return undefined;
      const n = notes.get(req);
      if (n !== undefined) n.code = 'BB_ERR_OVERLOADED';
      const a = renderError(new OverloadedError(`batchbridge is overloaded (${type}: ${typeof value === 'number' ? Math.round(value) : String(value)}); retry shortly`));
      void reply.code(a.status).header('content-type', CONTENT_TYPE).send(a.body);
      return undefined;
    },
  });
}

export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.logger as FastifyBaseLogger,
    bodyLimit: deps.bodyLimit,
    genReqId: () => `r${(++reqCounter).toString(36)}`,
    // Idle and half-sent connections time out; a received request never does (http-timeouts.ts).
    ...serverTimeoutOptions(deps.timeouts ?? DEFAULT_HTTP_TIMEOUTS),
    return503OnClosing: true,
  });
  // First: a request shed by under-pressure is answered in its hook, and still counts.
  registerNotes(app, deps.requests ?? NO_REQUEST_METRICS);
  await registerPressure(app, deps);
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string' }, (_req, body, done) => done(null, body));
  app.addHook('onRequest', async (req) => {
    // Requests without a Content-Type still carry a body; route them to the catch-all parser.
    if (req.headers['content-type'] === undefined) req.headers['content-type'] = 'application/octet-stream';
  });
  app.setErrorHandler((err, req, reply) => {
    const a = renderError(err);
    const n = notes.get(req);
    if (n !== undefined) n.code = a.code;
    const line = { code: a.code, err: a.body.Err, url: req.url, ...(n?.networkId === undefined ? {} : { networkId: n.networkId }), ...(n?.endpointId === undefined ? {} : { endpointId: n.endpointId }) };
    // The kernel refused or we failed: an operator's matter. A refused request: the caller's.
    if (a.status >= 500 && a.status !== 503) req.log.error(line, 'request failed');
    else req.log.warn(line, 'request failed');
    void reply.code(a.status).send(a.body);
  });
  app.setNotFoundHandler((req, reply) => {
    const n = notes.get(req);
    if (n !== undefined) n.code = 'BB_ERR_NOT_IMPLEMENTED';
    // 404 is the protocol's "not implemented": right for calls we do not know.
    void reply.code(404).send({ Err: `${req.url} is not implemented by batchbridge` });
  });
  // Never below the configured level: --log-level silent/error must stay quiet. Route-level
  // 'warn' keeps fastify's per-request info lines off the hot path; failures are still logged
  // (with the request id) by the error handler.
  const routeLogLevel: LevelWithSilent = deps.logger.levelVal >= 40 ? (deps.logger.level as LevelWithSilent) : 'warn';
  const engine = deps.protocol.engine;
  for (const [url, route] of Object.entries(routes(deps))) {
    app.post(url, { logLevel: routeLogLevel }, async (req, reply) => {
      // Shed new work (not teardown: deleting must always get through) when the queue is full.
      if (SHEDDABLE.has(url) && engine.queueDepth >= deps.maxQueue) {
        throw new OverloadedError(`batchbridge is overloaded (${engine.queueDepth} operations queued); retry shortly`);
      }
      const text = typeof req.body === 'string' ? req.body : '';
      const retried = RETRIED_CREATES[url];
      let out: unknown;
      if (retried !== undefined && text.trim() === '') out = deps.protocol.retriedCreate(retried);
      else {
        const body = parseBody(text, route.empty);
        const n = notes.get(req);
        if (n !== undefined) Object.assign(n, idsOf(body));
        out = await route.fn(body);
      }
      void reply.header('content-type', CONTENT_TYPE);
      return out ?? {};
    });
  }
  return app;
}
