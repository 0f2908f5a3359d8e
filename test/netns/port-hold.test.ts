// Which published ports hold a listening socket: a Docker endpoint's do (as Docker without its
// userland proxy: a port a host program uses fails the request, and no program can take a port we
// hold), a CNI attachment's do not (as the reference portmap plugin: Podman binds each published
// port for conmon right after the ADD and fails the container if it is held; the end-to-end case
// is test/e2e/podman-batchbridge.test.ts). Both are booked alike, so two bindings of one port
// still conflict. Real sockets in the runner's private namespace.
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import { test } from 'node:test';
import type { NetworkSpec } from '../../src/domain/network-spec.js';
import { PortAllocator } from '../../src/engine/port-allocator.js';
import { PortAllocatedError } from '../../src/errors.js';
import type { EndpointRecord } from '../../src/state/records.js';
import { assertPrivateNetns } from './bb-kernel.js';

const NET = { hostBindingIpv4: '0.0.0.0' } as NetworkSpec;
const DOCKER_EP = { ipv4: '198.18.74.2/24', ipv6: null } as EndpointRecord;
const CNI_EP = { ipv4: '198.18.74.3/24', ipv6: null, sandbox: { containerId: 'c1', netns: '/run/netns/c1' } } as EndpointRecord;
const tcp = (port: number) => [{ proto: 'tcp' as const, containerPort: 80, hostIp: '', hostPort: port, hostPortEnd: port }];

/** What Podman does for conmon with each published port. */
function listen(port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen({ host: '0.0.0.0', port, exclusive: true }, () => resolve(s));
  });
}

const close = (s: Server) => new Promise<void>((r) => s.close(() => r()));

test('a Docker endpoint holds its host port, a CNI attachment leaves it to the runtime; both are booked', async () => {
  assertPrivateNetns();
  const a = new PortAllocator();
  try {
    await a.allocate('ep-docker', NET, DOCKER_EP, tcp(18201));
    await assert.rejects(listen(18201), { code: 'EADDRINUSE' });
    await a.allocate('ep-cni', NET, CNI_EP, tcp(18202));
    await close(await listen(18202));
    await assert.rejects(a.allocate('ep-other', NET, CNI_EP, tcp(18202)), PortAllocatedError);
    await assert.rejects(a.allocate('ep-other', NET, DOCKER_EP, tcp(18201)), PortAllocatedError);

    // After a restart the books are restored the same way.
    const b = new PortAllocator();
    const mapping = (port: number, containerIp: string) => [{ proto: 'tcp' as const, family: 4 as const, hostIp: '0.0.0.0', hostPort: port, containerIp, containerPort: 80 }];
    a.release('ep-cni');
    b.restore('ep-cni', mapping(18202, '198.18.74.3'), false);
    await close(await listen(18202));
    await assert.rejects(b.allocate('ep-other', NET, CNI_EP, tcp(18202)), PortAllocatedError);
    a.release('ep-docker');
    b.restore('ep-docker', mapping(18201, '198.18.74.2'));
    await new Promise((r) => setTimeout(r, 50)); // restore takes its socket back asynchronously
    await assert.rejects(listen(18201), { code: 'EADDRINUSE' });
    await b.close();
  } finally {
    await a.close();
  }
});
