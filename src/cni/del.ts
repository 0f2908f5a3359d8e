// DEL and GC. DEL is idempotent, as the spec asks and runtimes rely on: containerd sends two per
// pod (on Stop and on Remove), the second often with an empty CNI_NETNS; a namespace already
// gone took the container end with it; a container never added has nothing to delete. Each is
// success. GC removes every attachment of the network the runtime no longer lists.
import type { EndpointId } from '../domain/names.js';
import { attachmentId, type DelRequest, type GcRequest } from './invocation.js';
import type { CniContext } from './context.js';
import type { CniAnswer } from './handler.js';
import { delegate, delegateCallOf, delegateDel } from './ipam-delegate.js';

const OK: CniAnswer = { exitCode: 0, stdout: '' };

export async function cniDel(ctx: CniContext, req: DelRequest): Promise<CniAnswer> {
  const { engine } = ctx;
  if (engine.books.endpoints.has(req.endpointId)) await engine.endpoints.delete(req.network.id, req.endpointId);
  const delegated = delegateCallOf(req);
  if (delegated !== null) {
    const r = await delegateDel(delegated, ctx.runDelegate);
    return { ...OK, stderr: r.stderr };
  }
  return OK;
}

export async function cniGc(ctx: CniContext, req: GcRequest): Promise<CniAnswer> {
  const { engine } = ctx;
  const valid = new Set<string>(req.validAttachments.map((a) => attachmentId(req.network, a.containerId, a.ifName)));
  const stale = engine.books.endpointsOf(req.network.id).filter((e) => e.sandbox !== undefined && !valid.has(e.id));
  if (stale.length > 0) ctx.log.info({ network: req.network.name, attachments: stale.map((e) => e.sandbox?.containerId) }, `GC: removing ${stale.length} attachment(s) the runtime no longer lists`);
  await Promise.all(stale.map((e) => engine.endpoints.delete(req.network.id, e.id as EndpointId)));
  const delegated = delegateCallOf(req);
  if (delegated !== null) {
    // IPAM plugins older than CNI 1.1 do not know GC: our own part is done, so only log it.
    await delegate('GC', delegated, ctx.runDelegate).catch((err: unknown) => ctx.log.warn({ err, network: req.network.name }, `IPAM plugin ${delegated.ipamType} failed GC`));
  }
  return OK;
}
