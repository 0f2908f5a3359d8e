// Wires the parts together, binds the plugin socket, and handles signals. Everything with logic
// lives elsewhere; this file only decides the order of start and stop.
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { buildApp } from './api/app.js';
import type { HttpTimeouts } from './api/http-timeouts.js';
import { DockerProtocol } from './api/protocol.js';
import { createCniHandler } from './cni/adapter.js';
import { checkCniSocketFree, startCniServer, type CniServer } from './cni/cni-server.js';
import { DEFAULT_ENGINE_OPTIONS, type EngineOptions } from './engine/core.js';
import { Engine } from './engine/engine.js';
import { removeFirewallIfUnused } from './engine/firewall-teardown.js';
import { createFirewall } from './firewall/index.js';
import { claimPlugin, type PluginClaim } from './instance/claim.js';
import type { PipelineTuning } from './scheduler/pipelines.js';
import { SqliteStateStore } from './state/sqlite-store.js';
import { toolEnv, type Switches } from './tools/env.js';
import type { ToolPaths } from './tools/paths.js';
import { writeSysctl } from './tools/sysctl.js';
import { PiscinaExecutor } from './workers/pool.js';

export interface ServeConfig {
  readonly name: string;
  readonly stateDir: string;
  readonly socketDir: string;
  readonly workers: number;
  readonly tuning: PipelineTuning;
  /** see Endpoints.deleteBehind (default false) */
  readonly writeBehindDeletes?: boolean;
  readonly maxQueue: number;
  readonly firewallCheckMs: number;
  /** reconciliation period (kernel vs books); 0 disables the timer (default 60 s) */
  readonly reconcileMs?: number;
  /** see EngineOptions.staleEndpointGraceMs */
  readonly staleEndpointGraceMs?: number;
  /** connection timeouts of the plugin socket (default DEFAULT_HTTP_TIMEOUTS) */
  readonly timeouts?: HttpTimeouts;
  readonly tools: ToolPaths;
  readonly switches: Switches;
  readonly directSpawn: boolean;
  /** the CNI socket served beside the Docker one, on the same engine; null: no CNI front end */
  readonly cniSocket?: string | null;
  /** where sysctls are written (default /proc/sys; `serve --sysctl-dir`) */
  readonly sysctlDir?: string;
}

export interface RunningServer {
  readonly socketPath: string;
  readonly cni: CniServer | null;
  readonly app: FastifyInstance;
  readonly engine: Engine;
  stop(): Promise<void>;
}

interface Opened {
  readonly engine: Engine;
  readonly exec: PiscinaExecutor;
  readonly store: SqliteStateStore;
}

/** The engine over its books, worker pool and firewall backend. */
function openEngine(cfg: ServeConfig, log: Logger): Opened {
  const store = new SqliteStateStore(cfg.stateDir);
  const exec = new PiscinaExecutor({ tools: cfg.tools, switches: cfg.switches, firewall: 'iptables', directSpawn: cfg.directSpawn, ...(cfg.sysctlDir === undefined ? {} : { sysctlDir: cfg.sysctlDir }) }, cfg.workers);
  // The engine's own tool runs (probes, firewall reads, reconciliation) go through the pool too,
  // so the thread that answers requests never waits on a tool.
  const tools = toolEnv(cfg.tools, cfg.switches, (file, args, input) => exec.exec(file, args, input), (s) => writeSysctl(s, cfg.sysctlDir));
  const opts: EngineOptions = {
    ...DEFAULT_ENGINE_OPTIONS,
    ...cfg.tuning,
    writeBehindDeletes: cfg.writeBehindDeletes === true,
    ...(cfg.staleEndpointGraceMs === undefined ? {} : { staleEndpointGraceMs: cfg.staleEndpointGraceMs }),
  };
  const engine = new Engine({ store, exec, tools, firewall: createFirewall('iptables', tools), log }, opts);
  return { engine, exec, store };
}

/** Reconciles every `ms` (0: never); returns the function that stops it. */
function reconcileEvery(engine: Engine, ms: number, log: Logger): () => void {
  if (ms <= 0) return () => undefined;
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    engine
      .reconcile()
      .catch((err: unknown) => log.error({ err }, 'periodic reconcile failed'))
      .finally(() => {
        running = false;
      });
  }, ms);
  timer.unref();
  return () => clearInterval(timer);
}

export async function startServer(cfg: ServeConfig, log: Logger): Promise<RunningServer> {
  // First of all, before the books or the kernel: one instance per state dir, per network
  // namespace and per socket (src/instance/claim.ts); a refusal here has changed nothing.
  const claim = await claimPlugin(cfg);
  if (cfg.cniSocket !== undefined && cfg.cniSocket !== null) {
    try {
      await checkCniSocketFree(cfg.cniSocket);
    } catch (err) {
      await claim.release();
      throw err;
    }
  }
  log.info({ pid: claim.info.pid, stateDir: claim.info.stateDir, netns: claim.info.netns }, 'state dir locked, network namespace claimed');
  try {
    return await startClaimed(cfg, log, claim);
  } catch (err) {
    await claim.release();
    throw err;
  }
}

async function startClaimed(cfg: ServeConfig, log: Logger, claim: PluginClaim): Promise<RunningServer> {
  const { engine, exec, store } = openEngine(cfg, log);
  // Containers need forwarding in the namespace the plugin runs in (as dockerd --ip-forward).
  const fwdErr = await writeSysctl({ path: 'net/ipv4/ip_forward', value: '1', optional: false }, cfg.sysctlDir);
  if (fwdErr !== null) throw new Error(`cannot enable IP forwarding: ${fwdErr}`);
  await engine.syncFirewall();
  log.info({ networks: engine.books.networks.size, endpoints: engine.books.endpoints.size }, 'books loaded, firewall in place');
  // Before the socket listens: finish or undo what a crash interrupted, remove orphans.
  const startReport = await engine.reconcile();
  log.info({ findings: startReport.findings.length, ms: Math.round(startReport.ms) }, 'reconciled at start');
  const stopReconciling = reconcileEvery(engine, cfg.reconcileMs ?? 60_000, log);
  const watchdog = engine.watchdog(cfg.firewallCheckMs);
  watchdog.start();

  const app = await buildApp({
    protocol: new DockerProtocol(engine),
    logger: log,
    maxQueue: cfg.maxQueue,
    maxEventLoopDelayMs: 1000,
    maxHeapUsedBytes: 1024 * 1024 * 1024,
    bodyLimit: 1024 * 1024,
    ...(cfg.timeouts ? { timeouts: cfg.timeouts } : {}),
    // dockerd (re)started: it killed containers it will never send Leave/DeleteEndpoint for
    // (without live-restore) and will start restart-policy containers next, which want their
    // ports and addresses back. Settle the endpoints whose veth vanished, and check our rules (a
    // dockerd restart flushes only its own DOCKER* chains).
    onActivate: async () => {
      void watchdog.check();
      await engine.settleVanished();
    },
  });
  const { socketPath } = claim;
  await claim.bindSocket((path) => app.listen({ path }), () => app.close());
  log.info({ socketPath }, 'listening');
  const cni = cfg.cniSocket === undefined || cfg.cniSocket === null ? null : await startCni(cfg.cniSocket, engine, log).catch(async (err: unknown) => {
    await app.close();
    throw err;
  });

  let stopping: Promise<void> | null = null;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      // A check in progress (Plugin.Activate starts one) must end before the pool closes.
      const watchdogDone = watchdog.stop();
      stopReconciling();
      // Stop accepting, let in-flight requests finish (they wait for their batches). A DEL that
      // finds the CNI socket gone is spooled by the forwarder and done at the next start.
      const closed = Promise.all([app.close(), cni?.close()]);
      await engine.drain();
      await closed;
      await watchdogDone;
      // No network left: leave no rule of ours behind (`docker plugin rm` runs nothing of ours).
      await removeFirewallIfUnused(engine).then(
        (outcome) => log.info({ outcome }, 'firewall at stop'),
        (err: unknown) => log.error({ err }, 'could not remove the firewall rules at stop'),
      );
      await engine.close();
      await exec.close();
      store.close();
      await claim.release();
      if (claim.socketRemoved === false) log.warn({ socketPath }, 'the socket path is no longer ours: left alone');
      log.info('stopped');
    })();
    return stopping;
  };
  return { socketPath, cni, app, engine, stop };
}

/** The CNI front end on the same engine: requests are served once the DEL spool is replayed. */
async function startCni(socketPath: string, engine: Engine, log: Logger): Promise<CniServer> {
  const cniLog = log.child({ front: 'cni' });
  const handler = createCniHandler({ engine, tools: engine.core.deps.tools, log: cniLog, socketPath });
  const server = await startCniServer({ socketPath, handler, log: cniLog });
  const replay = await server.ready.catch(() => null);
  if (replay !== null) cniLog.info(replay, 'CNI DEL spool replayed');
  return server;
}
