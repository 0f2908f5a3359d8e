// Wires the parts together, binds the plugin socket, and handles signals. Everything with logic
// lives elsewhere; this file only decides the order of start and stop.
import { chmodSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { buildApp } from './api/app.js';
import { Driver } from './scheduler/driver.js';
import { syncFirewall } from './scheduler/firewall-sync.js';
import { removeFirewallIfUnused } from './scheduler/firewall-teardown.js';
import { FirewallWatchdog } from './scheduler/firewall-watchdog.js';
import { reconcileDriver } from './scheduler/reconcile.js';
import { SqliteStateStore } from './state/sqlite-store.js';
import { PiscinaExecutor } from './workers/pool.js';
import type { ToolPaths } from './workers/spawn.js';
import { writeSysctl } from './workers/sysctl.js';

export interface ServeConfig {
  readonly name: string;
  readonly stateDir: string;
  readonly socketDir: string;
  readonly batchMax: number;
  readonly batchWindowMs: number;
  readonly workers: number;
  /** see Driver.deleteBehind (default false) */
  readonly writeBehindDeletes?: boolean;
  readonly maxQueue: number;
  readonly firewallCheckMs: number;
  /** reconciliation period (kernel vs books); 0 disables the timer (default 60 s) */
  readonly reconcileMs?: number;
  /** see DriverOptions.staleEndpointGraceMs */
  readonly staleEndpointGraceMs?: number;
  readonly tools: ToolPaths;
}

export interface RunningServer {
  readonly socketPath: string;
  readonly app: FastifyInstance;
  readonly driver: Driver;
  stop(): Promise<void>;
}

export async function startServer(cfg: ServeConfig, log: Logger): Promise<RunningServer> {
  const store = new SqliteStateStore(cfg.stateDir);
  const exec = new PiscinaExecutor(cfg.tools, cfg.workers);
  // One veth batch at a time: they all queue on the kernel's rtnl lock anyway, and while one runs
  // the next fills (measured: 1 in flight 486-500/s, 2 in flight 442-470/s; docs/performance.md).
  const driver = new Driver(store, exec, { batchMax: cfg.batchMax, windowMs: cfg.batchWindowMs, maxInFlight: 1, writeBehindDeletes: cfg.writeBehindDeletes === true, ...(cfg.staleEndpointGraceMs === undefined ? {} : { staleEndpointGraceMs: cfg.staleEndpointGraceMs }), tools: cfg.tools }, log);

  // Containers need forwarding in the namespace the plugin runs in (as dockerd --ip-forward).
  const fwdErr = await writeSysctl({ path: 'net/ipv4/ip_forward', value: '1', optional: false }, cfg.tools.sysctlDir);
  if (fwdErr !== null) throw new Error(`cannot enable IP forwarding: ${fwdErr}`);
  await syncFirewall(exec, cfg.tools, driver.books);
  log.info({ networks: driver.books.networks.size, endpoints: driver.books.endpoints.size }, 'books loaded, firewall in place');
  // Before the socket listens: finish or undo what a crash interrupted, remove orphans.
  const startReport = await reconcileDriver(driver);
  log.info({ findings: startReport.findings.length, ms: Math.round(startReport.ms) }, 'reconciled at start');

  const reconcileMs = cfg.reconcileMs ?? 60_000;
  let reconciling = false;
  const reconcileTimer =
    reconcileMs > 0
      ? setInterval(() => {
          if (reconciling) return;
          reconciling = true;
          reconcileDriver(driver)
            .catch((err: unknown) => log.error({ err }, 'periodic reconcile failed'))
            .finally(() => {
              reconciling = false;
            });
        }, reconcileMs)
      : null;
  reconcileTimer?.unref();

  const watchdog = new FirewallWatchdog(driver, exec, cfg.tools, log, cfg.firewallCheckMs);
  watchdog.start();

  const app = await buildApp({
    driver,
    logger: log,
    maxQueue: cfg.maxQueue,
    maxEventLoopDelayMs: 1000,
    maxHeapUsedBytes: 1024 * 1024 * 1024,
    bodyLimit: 1024 * 1024,
    // dockerd (re)started: it killed containers it will never send Leave/DeleteEndpoint for
    // (without live-restore) and will start restart-policy containers next, which want their
    // ports and addresses back. Settle the endpoints whose veth vanished, and check our rules (a
    // dockerd restart flushes only its own DOCKER* chains).
    onActivate: async () => {
      void watchdog.check();
      await driver.settleVanished();
    },
  });

  mkdirSync(cfg.socketDir, { recursive: true, mode: 0o755 });
  const socketPath = join(cfg.socketDir, `${cfg.name}.sock`);
  try {
    if (statSync(socketPath).isSocket()) rmSync(socketPath); // stale socket of a previous run
  } catch {
    // no previous socket
  }
  await app.listen({ path: socketPath });
  // Anyone who can talk to this socket can change the host's network: root only.
  chmodSync(socketPath, 0o600);
  log.info({ socketPath }, 'listening');

  let stopping: Promise<void> | null = null;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      watchdog.stop();
      if (reconcileTimer !== null) clearInterval(reconcileTimer);
      // Stop accepting, let in-flight requests finish (they wait for their batches).
      const closed = app.close();
      await driver.drain();
      await closed;
      await driver.close();
      // No network left: leave no rule of ours behind (`docker plugin rm` runs nothing of ours).
      await removeFirewallIfUnused({ exec, tools: cfg.tools, books: driver.books, gate: driver.gate }).then(
        (outcome) => log.info({ outcome }, 'firewall at stop'),
        (err: unknown) => log.error({ err }, 'could not remove the firewall rules at stop'),
      );
      await exec.close();
      store.close();
      try {
        rmSync(socketPath);
      } catch {
        // already gone
      }
      log.info('stopped');
    })();
    return stopping;
  };
  return { socketPath, app, driver, stop };
}
