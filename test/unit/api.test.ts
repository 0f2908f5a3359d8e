// The plugin protocol over HTTP with app.inject(): content types, bodies, statuses.
import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../src/api/app.js';
import { OPT } from '../../src/api/network-options.js';
import { rig, silent, type Rig } from './driver-rig.js';

const PLUGIN_CT = 'application/vnd.docker.plugins.v1.2+json';

async function app(t: TestContext, onActivate?: () => void): Promise<{ app: FastifyInstance; r: Rig }> {
  const r = rig(t);
  const a = await buildApp({
    protocol: r.driver,
    logger: silent,
    maxQueue: 10_000,
    maxEventLoopDelayMs: 60_000,
    maxHeapUsedBytes: 64 * 1024 ** 3,
    bodyLimit: 1024 * 1024,
    ...(onActivate === undefined ? {} : { onActivate }),
  });
  t.after(() => a.close());
  return { app: a, r };
}

interface Answer {
  status: number;
  body: Record<string, unknown>;
  contentType: string | undefined;
}

/** POST like dockerd: a JSON body; `ct` null sends no Content-Type (dockerd 20.10). */
async function post(a: FastifyInstance, url: string, body: unknown, ct: string | null = PLUGIN_CT): Promise<Answer> {
  const headers: Record<string, string> = {};
  if (ct !== null) headers['content-type'] = ct;
  const payload = body === undefined ? '' : typeof body === 'string' ? body : JSON.stringify(body);
  const res = await a.inject({ method: 'POST', url, headers, payload });
  assert.notEqual(res.body, '', `${url}: every answer has a JSON body`);
  const parsed = JSON.parse(res.body) as Record<string, unknown>;
  // media type only ("; charset=utf-8" is fastify's addition)
  const contentType = (res.headers['content-type'] as string | undefined)?.split(';')[0];
  return { status: res.statusCode, body: parsed, contentType };
}

const NET = 'a0a0a0a0a0a0a0a0a0a0a0a0';
const createNet = (id = NET, pool = '198.18.20.0/24', extra: Record<string, unknown> = {}) => ({
  NetworkID: id,
  Options: { [OPT.generic]: {}, ...extra },
  IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: pool, Gateway: pool.replace(/0\/(\d+)$/, '1/$1') }],
  IPv6Data: [],
});

describe('handshake', () => {
  test('Plugin.Activate with an empty body and no content type', async (t) => {
    let activated = 0;
    const { app: a } = await app(t, () => activated++);
    const res = await post(a, '/Plugin.Activate', undefined, null);
    assert.equal(res.status, 200);
    assert.deepEqual(res.body, { Implements: ['NetworkDriver'] });
    assert.equal(res.contentType, PLUGIN_CT);
    assert.equal(activated, 1);
    // dockerd may also send "null" or "{}"
    assert.equal((await post(a, '/Plugin.Activate', 'null')).status, 200);
    assert.equal((await post(a, '/Plugin.Activate', {})).status, 200);
  });

  test('GetCapabilities: local scope', async (t) => {
    const { app: a } = await app(t);
    const res = await post(a, '/NetworkDriver.GetCapabilities', undefined, null);
    assert.equal(res.status, 200);
    assert.deepEqual(res.body, { Scope: 'local', ConnectivityScope: 'local' });
  });

  test('DiscoverNew / DiscoverDelete answer {}', async (t) => {
    const { app: a } = await app(t);
    assert.deepEqual(await post(a, '/NetworkDriver.DiscoverNew', { DiscoveryType: 1, DiscoveryData: {} }), { status: 200, body: {}, contentType: PLUGIN_CT });
    assert.deepEqual((await post(a, '/NetworkDriver.DiscoverDelete', {})).body, {});
  });
});

describe('content types', () => {
  for (const [label, ct] of [
    ['application/vnd.docker.plugins.v1.2+json', PLUGIN_CT],
    ['no content type', null],
    ['application/json', 'application/json'],
    ['text/plain', 'text/plain'],
  ] as const) {
    test(`a full lifecycle with ${label}`, async (t) => {
      const { app: a, r } = await app(t);
      assert.deepEqual(await post(a, '/NetworkDriver.CreateNetwork', createNet(), ct), { status: 200, body: {}, contentType: PLUGIN_CT });
      const ep = await post(a, '/NetworkDriver.CreateEndpoint', { NetworkID: NET, EndpointID: 'ep1', Interface: { Address: '198.18.20.2/24' }, Options: {} }, ct);
      assert.deepEqual(ep.body, { Interface: { MacAddress: '02:42:c6:12:14:02' } });
      const info = await post(a, '/NetworkDriver.EndpointOperInfo', { NetworkID: NET, EndpointID: 'ep1' }, ct);
      assert.equal(info.status, 200);
      assert.equal((info.body.Value as Record<string, unknown>)['com.docker.network.endpoint.macaddress'], '02:42:c6:12:14:02');
      const join = await post(a, '/NetworkDriver.Join', { NetworkID: NET, EndpointID: 'ep1', SandboxKey: '/var/run/docker/netns/x', Options: {} }, ct);
      assert.equal(join.status, 200);
      const ep1 = r.driver.books.endpoints.get('ep1');
      assert.deepEqual(join.body, { InterfaceName: { SrcName: ep1?.peer, DstPrefix: 'eth' }, Gateway: '198.18.20.1', StaticRoutes: [], DisableGatewayService: false });
      assert.deepEqual((await post(a, '/NetworkDriver.ProgramExternalConnectivity', { NetworkID: NET, EndpointID: 'ep1', Options: {} }, ct)).body, {});
      assert.deepEqual((await post(a, '/NetworkDriver.RevokeExternalConnectivity', { NetworkID: NET, EndpointID: 'ep1' }, ct)).body, {});
      assert.deepEqual((await post(a, '/NetworkDriver.Leave', { NetworkID: NET, EndpointID: 'ep1' }, ct)).body, {});
      assert.deepEqual((await post(a, '/NetworkDriver.DeleteEndpoint', { NetworkID: NET, EndpointID: 'ep1' }, ct)).body, {});
      assert.deepEqual((await post(a, '/NetworkDriver.DeleteNetwork', { NetworkID: NET }, ct)).body, {});
      r.kernel.assertClean();
    });
  }
});

describe('errors', () => {
  test('malformed JSON: 400 with Err', async (t) => {
    const { app: a } = await app(t);
    for (const [payload, ct] of [
      ['{"NetworkID": ', PLUGIN_CT],
      ['{"NetworkID": ', null],
      ['not json', 'application/json'],
    ] as const) {
      const res = await post(a, '/NetworkDriver.CreateNetwork', payload, ct);
      assert.equal(res.status, 400, payload);
      assert.equal(typeof res.body.Err, 'string');
      assert.match(res.body.Err as string, /malformed JSON|invalid request/);
    }
  });

  test('a body that is not an object, or missing where needed: 400', async (t) => {
    const { app: a } = await app(t);
    for (const payload of ['[]', '"x"', '42']) {
      const res = await post(a, '/NetworkDriver.DeleteNetwork', payload);
      assert.equal(res.status, 400, payload);
      assert.equal(res.body.Err, 'request body must be a JSON object');
    }
    const empty = await post(a, '/NetworkDriver.CreateEndpoint', undefined, null);
    assert.equal(empty.status, 400);
    assert.equal(empty.body.Err, 'request body is empty: this call needs a JSON object');
    const noId = await post(a, '/NetworkDriver.DeleteNetwork', {});
    assert.deepEqual(noId, { status: 400, body: { Err: 'NetworkID is required' }, contentType: noId.contentType });
    const badId = await post(a, '/NetworkDriver.DeleteNetwork', { NetworkID: 'x y' });
    assert.equal(badId.status, 400);
    const badIface = await post(a, '/NetworkDriver.CreateEndpoint', { NetworkID: NET, EndpointID: 'e', Interface: 'eth0' });
    assert.deepEqual([badIface.status, badIface.body.Err], [400, 'Interface must be an object']);
  });

  test('an unknown route: 404 with Err', async (t) => {
    const { app: a } = await app(t);
    const res = await post(a, '/NetworkDriver.Frobnicate', {});
    assert.equal(res.status, 404);
    assert.equal(res.body.Err, '/NetworkDriver.Frobnicate is not implemented by batchbridge');
    const get = await a.inject({ method: 'GET', url: '/Plugin.Activate' });
    assert.equal(get.statusCode, 404);
    assert.equal(typeof (JSON.parse(get.body) as { Err?: unknown }).Err, 'string');
  });

  test('AllocateNetwork / FreeNetwork: not supported (501), not 404', async (t) => {
    const { app: a } = await app(t);
    for (const url of ['/NetworkDriver.AllocateNetwork', '/NetworkDriver.FreeNetwork']) {
      const res = await post(a, url, { NetworkID: NET, Options: {} });
      assert.equal(res.status, 501, url);
      assert.match(res.body.Err as string, /not supported/);
    }
  });

  test('domain errors are never 404', async (t) => {
    const { app: a } = await app(t);
    const cases: Array<[string, unknown, number, RegExp]> = [
      ['/NetworkDriver.CreateEndpoint', { NetworkID: 'nonet', EndpointID: 'e1', Interface: { Address: '198.18.20.2/24' } }, 422, /network nonet not found/],
      ['/NetworkDriver.Join', { NetworkID: NET, EndpointID: 'nope' }, 422, /endpoint nope not found/],
      ['/NetworkDriver.EndpointOperInfo', { NetworkID: NET, EndpointID: 'nope' }, 422, /not found/],
      ['/NetworkDriver.ProgramExternalConnectivity', { NetworkID: NET, EndpointID: 'nope', Options: {} }, 422, /not found/],
      ['/NetworkDriver.CreateNetwork', createNet('bad', '198.18.20.0/24', { [OPT.generic]: { [OPT.mtu]: '-2' } }), 400, /^invalid MTU number: -2$/],
      ['/NetworkDriver.CreateNetwork', createNet('bad', '224.0.0.0/24'), 400, /multicast/],
    ];
    for (const [url, body, status, err] of cases) {
      const res = await post(a, url, body);
      assert.notEqual(res.status, 404, url);
      assert.equal(res.status, status, `${url}: ${JSON.stringify(res.body)}`);
      assert.match(res.body.Err as string, err);
    }
    // conflicts: 409
    assert.equal((await post(a, '/NetworkDriver.CreateNetwork', createNet())).status, 200);
    // The same request again is a retry (dockerd resends when it got no answer): done already.
    assert.equal((await post(a, '/NetworkDriver.CreateNetwork', createNet())).status, 200);
    const dup = await post(a, '/NetworkDriver.CreateNetwork', createNet(NET, '198.18.21.0/24'));
    assert.deepEqual([dup.status, dup.body.Err], [409, `network ${NET} exists with a different configuration (ipv4)`]);
    const overlap = await post(a, '/NetworkDriver.CreateNetwork', createNet('other0000000', '198.18.20.0/25'));
    assert.equal(overlap.status, 409);
    assert.match(overlap.body.Err as string, /networks have overlapping IPv4$/);
    assert.equal((await post(a, '/NetworkDriver.CreateEndpoint', { NetworkID: NET, EndpointID: 'e1', Interface: { Address: '198.18.20.2/24' } })).status, 200);
    const dupEp = await post(a, '/NetworkDriver.CreateEndpoint', { NetworkID: NET, EndpointID: 'e1', Interface: { Address: '198.18.20.3/24' } });
    assert.deepEqual([dupEp.status, dupEp.body.Err], [409, 'Endpoint (e1) already exists (Only one endpoint allowed): this request differs in its IPv4 address']);
    const again = await post(a, '/NetworkDriver.CreateEndpoint', { NetworkID: NET, EndpointID: 'e1', Interface: { Address: '198.18.20.2/24' } });
    assert.deepEqual([again.status, again.body], [200, { Interface: { MacAddress: '02:42:c6:12:14:02' } }], 'the same request again gets the same reply');
    // teardown of unknown things is success
    assert.deepEqual((await post(a, '/NetworkDriver.DeleteEndpoint', { NetworkID: NET, EndpointID: 'zzz' })).status, 200);
    assert.deepEqual((await post(a, '/NetworkDriver.RevokeExternalConnectivity', { NetworkID: NET, EndpointID: 'zzz' })).status, 200);
    assert.deepEqual((await post(a, '/NetworkDriver.DeleteNetwork', { NetworkID: 'zzz' })).status, 200);
  });

  test("dockerd's argument-less retry of a create is answered as the create it repeats", async (t) => {
    const { app: a } = await app(t);
    assert.equal((await post(a, '/NetworkDriver.CreateNetwork', '')).status, 400, 'nothing to repeat');
    assert.equal((await post(a, '/NetworkDriver.CreateNetwork', createNet())).status, 200);
    assert.deepEqual(await post(a, '/NetworkDriver.CreateNetwork', ''), { status: 200, body: {}, contentType: PLUGIN_CT });
    const ep = { NetworkID: NET, EndpointID: 'e1', Interface: { Address: '198.18.20.2/24' } };
    const first = await post(a, '/NetworkDriver.CreateEndpoint', ep);
    assert.equal(first.status, 200);
    const retry = await post(a, '/NetworkDriver.CreateEndpoint', '');
    assert.deepEqual([retry.status, retry.body], [200, first.body], 'the same reply as the create it repeats');
    assert.equal((await post(a, '/NetworkDriver.Join', { NetworkID: NET, EndpointID: 'e1' })).status, 200);
    const late = await post(a, '/NetworkDriver.CreateEndpoint', '');
    assert.equal(late.status, 400, 'once dockerd has used the endpoint, an empty create repeats nothing');
    assert.match(late.body.Err as string, /request body is empty/);
  });

  test('a kernel failure: 500 with Err', async (t) => {
    const { app: a, r } = await app(t);
    assert.equal((await post(a, '/NetworkDriver.CreateNetwork', createNet())).status, 200);
    r.kernel.faults.ipLine = (line) => (line.startsWith('link add name veth') ? 'RTNETLINK answers: Operation not permitted' : null);
    const res = await post(a, '/NetworkDriver.CreateEndpoint', { NetworkID: NET, EndpointID: 'e1', Interface: { Address: '198.18.20.2/24' } });
    assert.equal(res.status, 500);
    assert.match(res.body.Err as string, /Operation not permitted/);
  });

  test('shutting down: 503 with Err', async (t) => {
    const { app: a, r } = await app(t);
    await r.driver.drain();
    const res = await post(a, '/NetworkDriver.CreateNetwork', createNet());
    assert.deepEqual([res.status, res.body.Err], [503, 'batchbridge is shutting down']);
    const ep = await post(a, '/NetworkDriver.Join', { NetworkID: NET, EndpointID: 'e' });
    assert.equal(ep.status, 503);
  });

  test('a body over the limit: 413 with Err, not 404', async (t) => {
    const { app: a } = await app(t);
    const res = await post(a, '/NetworkDriver.CreateNetwork', JSON.stringify({ NetworkID: NET, pad: 'x'.repeat(2 * 1024 * 1024) }));
    assert.equal(res.status, 413);
    assert.match(res.body.Err as string, /^invalid request: /);
  });
});
