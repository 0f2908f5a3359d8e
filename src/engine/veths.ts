// Making an endpoint's veth pair, booked under fresh names: a Docker endpoint's (both ends here,
// the runtime moves one into the container at Join) or a CNI attachment's (the container end
// made in the container's namespace at once).
import { randomLocalMac } from '../domain/endpoint-spec.js';
import { randomVethName, type IfName } from '../domain/names.js';
import type { NetworkSpec } from '../domain/network-spec.js';
import { EndpointExistsError, KernelError } from '../errors.js';
import type { SandboxRoute } from '../ip/ops.js';
import type { EndpointRecord } from '../state/records.js';
import type { EngineCore } from './core.js';

/** A CNI attachment: the container end is made in the container's namespace and set up there. */
export interface SandboxRequest {
  readonly containerId: string;
  /** CNI_NETNS, checked to exist */
  readonly netns: string;
  readonly ifName: IfName;
  readonly hairpin: boolean;
}

/** The veth pair, on the bridge; booked with fresh names taken for it. */
export async function makeVeth(core: EngineCore, spec: NetworkSpec, base: Omit<EndpointRecord, 'host' | 'peer'>): Promise<void> {
  let lastError = '';
  // A name can be taken by something outside our books (another program's veth): the kernel
  // says "File exists", and we try fresh names, as Docker does (3 attempts).
  for (let attempt = 0; attempt < 3; attempt++) {
    const host = freshName(core);
    const peer = freshName(core);
    const record: EndpointRecord = { ...base, host, peer };
    const r = await core.submit(
      { ip: [{ kind: 'veth-create', host, peer, bridge: spec.bridge, mtu: spec.mtu, group: core.ownerGroup }] },
      { kind: 'endpoint-create', endpointId: base.id, networkId: base.networkId, host, peer },
      (res) => {
        core.books.releaseName(host);
        core.books.releaseName(peer);
        if (!res.ok) return null;
        core.books.putEndpoint(record);
        return { putEndpoints: [record] };
      },
    );
    if (r.ok) return;
    lastError = r.message ?? 'unknown error';
    if (!/File exists/i.test(lastError)) break;
  }
  throw new KernelError(`failed to add the host <=> sandbox pair interfaces: ${lastError}`);
}

/**
 * A CNI attachment's veth: its container end made directly in the container's namespace under
 * the runtime's name. Its addresses, link and routes are set up there afterwards (setUpSandbox).
 */
export async function makeSandboxVeth(core: EngineCore, spec: NetworkSpec, base: Omit<EndpointRecord, 'host' | 'peer'>, sb: SandboxRequest): Promise<void> {
  let lastError = '';
  for (let attempt = 0; attempt < 3; attempt++) {
    const host = freshName(core);
    const hostMac = randomLocalMac();
    const record: EndpointRecord = { ...base, host, peer: sb.ifName, hostMac, sandbox: { containerId: sb.containerId, netns: sb.netns } };
    const r = await core.submit(
      {
        ip: [
          {
            kind: 'veth-create',
            host,
            peer: sb.ifName,
            bridge: spec.bridge,
            mtu: spec.mtu,
            group: core.ownerGroup,
            hostMac,
            hairpin: sb.hairpin,
            sandbox: { netns: sb.netns, mac: base.mac },
          },
        ],
      },
      { kind: 'endpoint-create', endpointId: base.id, networkId: base.networkId, host, peer: sb.ifName },
      (res) => {
        core.books.releaseName(host);
        if (!res.ok) return null;
        core.books.putEndpoint(record);
        return { putEndpoints: [record] };
      },
    );
    if (r.ok) return;
    lastError = r.message ?? 'unknown error';
    if (!/File exists/i.test(lastError)) break;
    // The pair was made and the clash came while setting it up in the pod (ip/sandbox.ts: an
    // address or route the pod holds already, e.g. a second default route): no name clash.
    if (lastError.startsWith('failed to configure ')) break;
    // "File exists" names the host end (then fresh names help) or the container end.
    if (!core.deps.exec.linkPresent(host)) throw new EndpointExistsError(`interface ${sb.ifName} already exists in ${sb.netns}`);
  }
  throw new KernelError(`failed to add the host <=> container pair interfaces: ${lastError}`);
}

/**
 * Inside the attachment's namespace: its addresses, link up, its routes, in one process of its
 * own, batched with other pods' in the sandbox pipeline. Not in the endpoint's lane: it touches
 * only objects inside that namespace, which no other operation touches, so the ADD's port rules
 * (in the endpoint's lane, firewall pipeline) are programmed meanwhile.
 */
export async function setUpSandbox(core: EngineCore, ep: EndpointRecord, routes: readonly SandboxRoute[]): Promise<void> {
  if (ep.sandbox === undefined) throw new Error(`endpoint ${ep.id} is not a CNI attachment`);
  core.checkOpen();
  const r = await core.submit({ ip: [{ kind: 'sandbox-setup', netns: ep.sandbox.netns, dev: ep.peer, addrs: ep.ipv6 === null ? [ep.ipv4] : [ep.ipv4, ep.ipv6], routes }] }, null, () => null);
  // The same words as when this ran in the veth's own batch (error texts are the front ends' contract).
  if (!r.ok) throw new KernelError(`failed to add the host <=> container pair interfaces: ${r.message ?? `failed to configure ${ep.peer} in ${ep.sandbox.netns}`}`);
}

function freshName(core: EngineCore): string {
  for (;;) {
    const n = randomVethName();
    if (!core.books.isNameTaken(n)) {
      core.books.reserveName(n);
      return n;
    }
  }
}

