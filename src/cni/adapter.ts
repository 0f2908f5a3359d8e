// The daemon's CNI handler: one plugin call (environment and stdin, from the forwarder) →
// parsed and validated (invocation.ts) → the verb on the engine the Docker front end also uses
// → the plugin's answer. Every error becomes the spec's error JSON here (cni-error.ts), and
// nothing reaches the engine before the whole request is validated.
import type { Logger } from 'pino';
import type { Engine } from '../engine/engine.js';
import { NO_REQUEST_METRICS, type RequestMetrics } from '../metrics/requests.js';
import { BbError, CniDelegateError, ShuttingDownError } from '../errors.js';
import type { ToolEnv } from '../tools/env.js';
import { runTool } from '../tools/spawn.js';
import { cniAdd } from './add.js';
import { cniCheck } from './check.js';
import { renderCniError } from './cni-error.js';
import type { CniContext } from './context.js';
import { cniDel, cniGc } from './del.js';
import type { CniAnswer, CniHandler, CniInvocation } from './handler.js';
import { parseInvocation, type CniRequest, type StatusRequest } from './invocation.js';
import { delegate, delegateCallOf, type ToolRunner } from './ipam-delegate.js';
import { CNI_COMMANDS, versionAnswer } from './version.js';

export interface CniHandlerOptions {
  readonly engine: Engine;
  /** the engine's tool environment (CHECK's kernel reads) */
  readonly tools: ToolEnv;
  readonly log: Logger;
  /** the socket this daemon serves: a config naming another one is refused */
  readonly socketPath: string;
  /** runs delegated IPAM plugins (tests: a wrapper) */
  readonly runDelegate?: ToolRunner;
  /** request counts and durations (serve --metrics-listen) */
  readonly requests?: RequestMetrics;
}

/** STATUS: ready while the engine takes work; a delegated IPAM plugin's own "not ready" is passed on. */
async function cniStatus(ctx: CniContext, req: StatusRequest): Promise<CniAnswer> {
  ctx.engine.core.checkOpen();
  const delegated = delegateCallOf(req);
  if (delegated !== null) {
    try {
      await delegate('STATUS', delegated, ctx.runDelegate);
    } catch (err) {
      // Plugins older than CNI 1.1 do not know STATUS; only their explicit 50/51 means "not ready".
      if (err instanceof CniDelegateError && (err.cniCode === 50 || err.cniCode === 51)) throw err;
    }
  }
  return { exitCode: 0, stdout: '' };
}

function dispatch(ctx: CniContext, req: CniRequest): Promise<CniAnswer> {
  switch (req.command) {
    case 'ADD':
      return cniAdd(ctx, req);
    case 'DEL':
      return cniDel(ctx, req);
    case 'CHECK':
      return cniCheck(ctx, req);
    case 'GC':
      return cniGc(ctx, req);
    case 'STATUS':
      return cniStatus(ctx, req);
    case 'VERSION':
      return Promise.resolve({ exitCode: 0, stdout: versionAnswer() });
  }
}

function ids(req: CniRequest): Record<string, string> {
  if (req.command === 'VERSION') return { cni: req.command };
  const out: Record<string, string> = { cni: req.command, network: req.network.name };
  if ('containerId' in req) {
    out.containerId = req.containerId;
    out.endpointId = req.endpointId;
  }
  return out;
}

/** The metrics label of a call: its command, or "unknown" (the label's values stay a known set). */
function callLabel(inv: CniInvocation): string {
  const c = inv.env.CNI_COMMAND ?? '';
  return (CNI_COMMANDS as readonly string[]).includes(c) ? c : 'unknown';
}

function outcomeOf(answer: CniAnswer, err: unknown): string {
  if (err instanceof BbError) return err.code;
  if (err !== null) return 'BB_ERR_INTERNAL';
  return answer.exitCode === 0 ? 'ok' : 'BB_ERR_INTERNAL';
}

export function createCniHandler(o: CniHandlerOptions): CniHandler {
  const ctx: CniContext = { engine: o.engine, tools: o.tools, log: o.log, runDelegate: o.runDelegate ?? runTool };
  const requests = o.requests ?? NO_REQUEST_METRICS;
  return async (inv: CniInvocation): Promise<CniAnswer> => {
    const done = requests.start('cni', callLabel(inv));
    let req: CniRequest;
    try {
      req = parseInvocation(inv, { socketPath: o.socketPath });
    } catch (err) {
      o.log.info({ cni: inv.env.CNI_COMMAND, err: (err as Error).message }, 'CNI request refused');
      const answer = renderCniError(err, { command: inv.env.CNI_COMMAND ?? '' });
      done(outcomeOf(answer, err));
      return answer;
    }
    const log = o.log.child(ids(req));
    try {
      const answer = await dispatch({ ...ctx, log }, req);
      done(outcomeOf(answer, null));
      return answer;
    } catch (err) {
      // A DEL the daemon cannot take now is recorded by the forwarder and replayed at start.
      if (req.command === 'DEL' && err instanceof ShuttingDownError) {
        done(err.code);
        return { exitCode: 0, stdout: '', spool: true };
      }
      if (err instanceof BbError) log.info({ err: err.message, code: err.code }, 'CNI request failed');
      else log.error({ err }, 'CNI request failed unexpectedly');
      done(outcomeOf({ exitCode: 1, stdout: '' }, err));
      return renderCniError(err, { ...(req.command === 'VERSION' ? {} : { cniVersion: req.cniVersion }), command: req.command });
    }
  };
}
