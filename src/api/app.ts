// The plugin protocol over HTTP: fastify with one catch-all body parser (dockerd 20.10 sends no
// Content-Type, newer ones send application/vnd.docker.plugins.v1.2+json), a JSON body on every
// answer, and errors rendered in exactly one place.
import underPressure from '@fastify/under-pressure';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { LevelWithSilent, Logger } from 'pino';
import { InvalidRequestError, NotSupportedError, OverloadedError } from '../errors.js';
import type { Driver } from '../scheduler/driver.js';
import { reconcileDriver } from '../scheduler/reconcile.js';
import { endpointId, list, networkId, options, parseBody, type Body } from './decode.js';
import { renderError } from './render-error.js';

export interface AppDeps {
  readonly driver: Driver;
  readonly logger: Logger;
  /** answer "overloaded" when more operations than this are queued or running */
  readonly maxQueue: number;
  readonly maxEventLoopDelayMs: number;
  readonly maxHeapUsedBytes: number;
  readonly bodyLimit: number;
  /** called on Plugin.Activate: dockerd (re)started and is using us; answered once it settles */
  readonly onActivate?: () => Promise<void> | void;
}

type Handler = (body: Body) => Promise<unknown> | unknown;

/** Calls that start new work: the only ones refused when the plugin is overloaded. */
const SHEDDABLE: ReadonlySet<string> = new Set(['/NetworkDriver.CreateEndpoint', '/NetworkDriver.ProgramExternalConnectivity', '/NetworkDriver.CreateNetwork']);

let reqCounter = 0;

export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.logger as FastifyBaseLogger,
    bodyLimit: deps.bodyLimit,
    genReqId: () => `r${(++reqCounter).toString(36)}`,
    // dockerd keeps connections open; never time a request out: some wait for a batch.
    connectionTimeout: 0,
    keepAliveTimeout: 120_000,
    return503OnClosing: true,
  });

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
      const a = renderError(new OverloadedError(`batchbridge is overloaded (${type}: ${typeof value === 'number' ? Math.round(value) : String(value)}); retry shortly`));
      void reply.code(a.status).header('content-type', 'application/vnd.docker.plugins.v1.2+json').send(a.body);
      return undefined;
    },
  });

  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string' }, (_req, body, done) => done(null, body));
  app.addHook('onRequest', async (req) => {
    // Requests without a Content-Type still carry a body; route them to the catch-all parser.
    if (req.headers['content-type'] === undefined) req.headers['content-type'] = 'application/octet-stream';
  });

  app.setErrorHandler((err, req, reply) => {
    const a = renderError(err);
    req.log.warn({ code: a.code, err: a.body.Err, url: req.url }, 'request failed');
    void reply.code(a.status).send(a.body);
  });
  app.setNotFoundHandler((req, reply) => {
    // 404 is the protocol's "not implemented": right for calls we do not know.
    void reply.code(404).send({ Err: `${req.url} is not implemented by batchbridge` });
  });

  const { driver } = deps;
  const routes: Record<string, { empty: boolean; fn: Handler }> = {
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
    '/NetworkDriver.CreateNetwork': {
      empty: false,
      fn: async (b) => {
        await driver.createNetwork({ NetworkID: networkId(b), Options: options(b), IPv4Data: list(b, 'IPv4Data'), IPv6Data: list(b, 'IPv6Data') });
        return {};
      },
    },
    '/NetworkDriver.DeleteNetwork': {
      empty: false,
      fn: async (b) => {
        await driver.deleteNetwork(networkId(b));
        return {};
      },
    },
    '/NetworkDriver.CreateEndpoint': {
      empty: false,
      fn: (b) => {
        const iface = b.Interface;
        if (iface !== undefined && iface !== null && (typeof iface !== 'object' || Array.isArray(iface))) {
          return Promise.reject(new InvalidRequestError('Interface must be an object'));
        }
        return driver.createEndpoint({
          NetworkID: networkId(b),
          EndpointID: endpointId(b),
          Interface: iface as Record<string, unknown> | null | undefined,
          Options: options(b),
        });
      },
    },
    '/NetworkDriver.EndpointOperInfo': { empty: false, fn: (b) => driver.endpointOperInfo(networkId(b), endpointId(b)) },
    '/NetworkDriver.DeleteEndpoint': {
      empty: false,
      fn: async (b) => {
        await driver.deleteEndpoint(networkId(b), endpointId(b));
        return {};
      },
    },
    '/NetworkDriver.Join': {
      empty: false,
      fn: (b) => {
        options(b);
        if (b.SandboxKey !== undefined && typeof b.SandboxKey !== 'string') throw new InvalidRequestError('SandboxKey must be a string');
        return driver.join(networkId(b), endpointId(b));
      },
    },
    '/NetworkDriver.Leave': {
      empty: false,
      fn: async (b) => {
        await driver.leave(networkId(b), endpointId(b));
        return {};
      },
    },
    '/NetworkDriver.ProgramExternalConnectivity': {
      empty: false,
      fn: async (b) => {
        await driver.programExternalConnectivity(networkId(b), endpointId(b), options(b));
        return {};
      },
    },
    '/NetworkDriver.RevokeExternalConnectivity': {
      empty: false,
      fn: async (b) => {
        await driver.revokeExternalConnectivity(networkId(b), endpointId(b));
        return {};
      },
    },
    '/NetworkDriver.DiscoverNew': { empty: true, fn: () => ({}) },
    '/NetworkDriver.DiscoverDelete': { empty: true, fn: () => ({}) },
    '/NetworkDriver.AllocateNetwork': {
      empty: true,
      fn: () => {
        throw new NotSupportedError('AllocateNetwork is not supported: batchbridge is a local-scope driver (no swarm)');
      },
    },
    '/NetworkDriver.FreeNetwork': {
      empty: true,
      fn: () => {
        throw new NotSupportedError('FreeNetwork is not supported: batchbridge is a local-scope driver (no swarm)');
      },
    },
    // Not part of Docker's protocol: the CLI's `batchbridge ports` reads the bindings here.
    '/BatchBridge.Ports': { empty: true, fn: () => ({ Bindings: driver.listBindings() }) },
    // Not part of Docker's protocol: `batchbridge reconcile` asks the running plugin here.
    '/BatchBridge.Reconcile': {
      empty: true,
      fn: async (b) => {
        if (b.DryRun !== undefined && typeof b.DryRun !== 'boolean') throw new InvalidRequestError('DryRun must be a boolean');
        return { Report: await reconcileDriver(driver, { dryRun: b.DryRun === true }) };
      },
    },
  };

  const heavy = SHEDDABLE;
  // Never below the configured level: --log-level silent/error must stay quiet.
  const routeLogLevel: LevelWithSilent = deps.logger.levelVal >= 40 ? (deps.logger.level as LevelWithSilent) : 'warn';
  for (const [url, route] of Object.entries(routes)) {
    // Route-level 'warn' keeps fastify's per-request info lines off the hot path; failures are
    // still logged (with the request id) by the error handler.
    app.post(url, { logLevel: routeLogLevel }, async (req, reply) => {
      // Shed new work (not teardown: deleting must always get through) when the queue is full.
      if (heavy.has(url) && driver.queueDepth >= deps.maxQueue) {
        throw new OverloadedError(`batchbridge is overloaded (${driver.queueDepth} operations queued); retry shortly`);
      }
      const body = parseBody(typeof req.body === 'string' ? req.body : '', route.empty);
      const out = await route.fn(body);
      void reply.header('content-type', 'application/vnd.docker.plugins.v1.2+json');
      return out ?? {};
    });
  }
  return app;
}
