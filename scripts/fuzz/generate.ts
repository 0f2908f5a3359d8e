// What the route and hostile phases send: fast-check generators (the shared hostile values of
// test/helpers/hostile.ts), sampled lazily in chunks so that 100,000 requests never sit in memory.
import fc from 'fast-check';
import {
  anyContentType, badCidr4, badEndpointAddress, badGenericOption, badId, badMac, badPortBinding, garbageBody, nastyString,
} from '../../test/helpers/hostile.js';

/** Every route the plugin serves (dockerd's protocol and batchbridge's own two). */
export const KNOWN_ROUTES = [
  '/Plugin.Activate', '/NetworkDriver.GetCapabilities', '/NetworkDriver.CreateNetwork', '/NetworkDriver.DeleteNetwork',
  '/NetworkDriver.CreateEndpoint', '/NetworkDriver.EndpointOperInfo', '/NetworkDriver.DeleteEndpoint', '/NetworkDriver.Join',
  '/NetworkDriver.Leave', '/NetworkDriver.ProgramExternalConnectivity', '/NetworkDriver.RevokeExternalConnectivity',
  '/NetworkDriver.DiscoverNew', '/NetworkDriver.DiscoverDelete', '/NetworkDriver.AllocateNetwork', '/NetworkDriver.FreeNetwork',
  '/BatchBridge.Ports', '/BatchBridge.Reconcile',
] as const;

const UNKNOWN_ROUTES = ['/NetworkDriver.Foo', '/Plugin.Deactivate', '/', '/NetworkDriver.', '/networkdriver.createnetwork', '/IpamDriver.RequestPool', '/NetworkDriver.CreateNetwork/x'];

export interface Req {
  readonly path: string;
  readonly body: string | Buffer | undefined;
  readonly contentType?: string | undefined;
}

/** A live network and endpoint the hostile requests aim at (created before the phases). */
export interface Fixture {
  readonly net: string;
  readonly ep: string;
  /** "198.18.150": the fixture network is <subnet24>.0/24 */
  readonly subnet24: string;
}

/** Anything on any route, including routes that do not exist. */
export const anyRequest: fc.Arbitrary<Req> = fc.record({
  path: fc.oneof({ weight: 9, arbitrary: fc.constantFrom(...KNOWN_ROUTES) }, { weight: 1, arbitrary: fc.constantFrom(...UNKNOWN_ROUTES) }),
  body: fc.oneof({ weight: 9, arbitrary: garbageBody }, { weight: 1, arbitrary: fc.constant(undefined) }),
  contentType: anyContentType,
});

const J = (v: unknown): string => JSON.stringify(v);
const ID_ROUTES = ['CreateEndpoint', 'Join', 'DeleteEndpoint', 'Leave', 'EndpointOperInfo', 'ProgramExternalConnectivity', 'RevokeExternalConnectivity'];

/** Requests the plugin must refuse with a clear Err, changing nothing. */
export function hostileRequest(f: Fixture): fc.Arbitrary<Req> {
  const pool = (p: unknown): unknown[] => [{ Pool: p }];
  const newNet = (extra: Record<string, unknown>): Req => ({
    path: '/NetworkDriver.CreateNetwork',
    body: J({ NetworkID: 'fuzzhostilenet01', Options: {}, IPv4Data: pool('198.18.151.0/24'), IPv6Data: [], ...extra }),
  });
  const newEp = (iface: Record<string, unknown>, options: Record<string, unknown> = {}): Req => ({
    path: '/NetworkDriver.CreateEndpoint',
    body: J({ NetworkID: f.net, EndpointID: 'fuzzhostileep01', Interface: iface, Options: options }),
  });
  return fc.oneof(
    badId.map((id) => newNet({ NetworkID: id })),
    badId.map((id) => ({ path: '/NetworkDriver.DeleteNetwork', body: J({ NetworkID: id }) })),
    fc.tuple(fc.constantFrom(...ID_ROUTES), badId, fc.boolean()).map(([m, id, inNet]) => ({
      path: `/NetworkDriver.${m}`,
      body: J({ NetworkID: inNet ? id : f.net, EndpointID: inNet ? f.ep : id, Interface: { Address: `${f.subnet24}.9/24` }, Options: {} }),
    })),
    badGenericOption.map((g) => newNet({ Options: { 'com.docker.network.generic': g } })),
    badCidr4.map((p) => newNet({ IPv4Data: pool(p) })),
    fc.oneof(nastyString(fc.constant('198.18.151.1')), fc.constantFrom('198.18.152.1', '198.18.151.0', '198.18.151.1/33', 5)).map((gw) => newNet({ IPv4Data: [{ Pool: '198.18.151.0/24', Gateway: gw }] })),
    fc.constantFrom(
      newNet({ IPv4Data: [] }),
      newNet({ IPv4Data: [{ Pool: `${f.subnet24}.0/25` }] }), // overlaps the fixture network
      newNet({ NetworkID: f.net, IPv4Data: pool('198.18.152.0/24') }), // the fixture's id, another request
      newNet({ Options: { 'com.docker.network.enable_ipv6': 'true' }, IPv6Data: [{ Pool: 'fe80::/48' }] }),
      newNet({ IPv6Data: [{ Pool: 'fd00:99::/64' }] }), // IPv6 pool without enable_ipv6
      newNet({ Options: { 'com.docker.network.internal': 'nope' } }),
    ),
    badEndpointAddress(f.subnet24).map((a) => newEp({ Address: a })),
    badMac.map((m) => newEp({ Address: `${f.subnet24}.9/24`, MacAddress: m })),
    fc.array(badPortBinding, { minLength: 1, maxLength: 3 }).map((pm) => newEp({ Address: `${f.subnet24}.9/24` }, { 'com.docker.network.portmap': pm })),
    fc.array(badPortBinding, { minLength: 1, maxLength: 3 }).map((pm) => ({
      path: '/NetworkDriver.ProgramExternalConnectivity',
      body: J({ NetworkID: f.net, EndpointID: f.ep, Options: { 'com.docker.network.portmap': pm } }),
    })),
    fc.constantFrom<Req>(
      // the fixture endpoint's id with another request
      { path: '/NetworkDriver.CreateEndpoint', body: J({ NetworkID: f.net, EndpointID: f.ep, Interface: { Address: `${f.subnet24}.10/24` }, Options: {} }) },
      { path: '/NetworkDriver.Join', body: J({ NetworkID: f.net, EndpointID: f.ep, SandboxKey: 5, Options: {} }) },
    ),
    fc.constantFrom('notalist', 5, [1], [null], [{ Proto: 6 }]).map((x) => ({
      path: '/NetworkDriver.ProgramExternalConnectivity',
      body: J({ NetworkID: f.net, EndpointID: f.ep, Options: { 'com.docker.network.endpoint.exposedports': x } }),
    })),
  );
}

/**
 * Draw `n` values of `arb` lazily, `chunk` at a time, each chunk from its own seed, so a run is
 * reproducible from `seed` and never holds more than one chunk.
 */
export function* draw<T>(arb: fc.Arbitrary<T>, n: number, seed: number, chunk = 2000): Generator<T> {
  for (let done = 0, k = 0; done < n; k++) {
    const size = Math.min(chunk, n - done);
    for (const v of fc.sample(arb, { numRuns: size, seed: seed + k })) yield v;
    done += size;
  }
}
