// One invocation (environment + stdin, as libcni sends them) → the typed request: the
// environment rules per command, decoding, prevResult, GC attachments, and the runtime's
// per-attachment options (portMappings as Podman and containerd send them, ips, mac).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cniErrorBody } from '../../src/cni/cni-error.js';
import { parseInvocation, type CniRequest, type ParseOptions } from '../../src/cni/invocation.js';

const CONF = {
  cniVersion: '1.0.0', name: 'bbnet', type: 'batchbridge-cni', isGateway: true,
  ipam: { ranges: [[{ subnet: '198.18.64.0/24' }], [{ subnet: 'fd00:64::/64' }]] },
  capabilities: { portMappings: true, ips: true, mac: true },
};
const ENV = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c0ffee', CNI_NETNS: '/var/run/netns/cni-1234', CNI_IFNAME: 'eth0', CNI_ARGS: '', CNI_PATH: '/opt/cni/bin:/usr/lib/cni', PATH: '/usr/bin' };

function parse(env: Record<string, string>, conf: unknown, opts?: ParseOptions): CniRequest {
  return parseInvocation({ env, stdin: Buffer.from(typeof conf === 'string' ? conf : JSON.stringify(conf)) }, opts);
}

function fails(env: Record<string, string>, conf: unknown, code: number, re: RegExp, opts?: ParseOptions): void {
  assert.throws(() => parse(env, conf, opts), (e: unknown) => {
    const b = cniErrorBody(e);
    assert.equal(b.code, code, b.msg);
    assert.match(b.msg, re);
    return true;
  });
}

function add(env: Record<string, string>, conf: unknown = CONF) {
  const r = parse({ ...ENV, ...env }, conf);
  assert.equal(r.command, 'ADD');
  return r as Extract<CniRequest, { command: 'ADD' }>;
}

test('an ADD as containerd sends it', () => {
  const r = add({ CNI_ARGS: 'K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u;IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web' });
  assert.equal(r.cniVersion, '1.0.0');
  assert.equal(r.containerId, 'c0ffee');
  assert.equal(r.ifName, 'eth0');
  assert.equal(r.netns, '/var/run/netns/cni-1234');
  assert.deepEqual(r.cniPath, ['/opt/cni/bin', '/usr/lib/cni']);
  assert.equal(r.args.k8s.K8S_POD_NAME, 'web');
  assert.equal(r.network.name, 'bbnet');
  assert.match(r.endpointId, /^[0-9a-f]{64}$/);
  assert.equal(add({}).endpointId, r.endpointId, 'stable per attachment');
  assert.notEqual(add({ CNI_IFNAME: 'net1' }).endpointId, r.endpointId);
  assert.equal(r.env.PATH, '/usr/bin', 'the environment is kept for delegation');
  for (const netns of ['/run/netns/pod1', '/proc/4242/ns/net', '/var/run/netns/cni-9f0e-11ee']) assert.equal(add({ CNI_NETNS: netns }).netns, netns);
});

test('required variables per command are code 4 and named', () => {
  fails({}, CONF, 4, /^required env variables \[CNI_COMMAND\] missing$/);
  fails({ ...ENV, CNI_COMMAND: 'ATTACH' }, CONF, 4, /unknown CNI_COMMAND "ATTACH"/);
  fails({ ...ENV, CNI_NETNS: '', CNI_IFNAME: '' }, CONF, 4, /^required env variables \[CNI_NETNS,CNI_IFNAME\] missing$/);
  fails({ ...ENV, CNI_COMMAND: 'CHECK', CNI_CONTAINERID: '' }, CONF, 4, /\[CNI_CONTAINERID\]/);
  fails({ ...ENV, CNI_COMMAND: 'DEL', CNI_IFNAME: '' }, CONF, 4, /\[CNI_IFNAME\]/);
  fails({ CNI_COMMAND: 'GC' }, { ...CONF, cniVersion: '1.1.0' }, 4, /\[CNI_PATH\]/);
  assert.equal(parse({ CNI_COMMAND: 'STATUS' }, { ...CONF, cniVersion: '1.1.0' }).command, 'STATUS', 'STATUS needs none');
  assert.deepEqual(parse({ CNI_COMMAND: 'VERSION' }, 'not even json'), { command: 'VERSION' });
});

test('invalid variables are code 4 and name the variable', () => {
  fails({ ...ENV, CNI_IFNAME: 'eth0/1' }, CONF, 4, /invalid CNI_IFNAME "eth0\/1"/);
  fails({ ...ENV, CNI_IFNAME: 'a-very-long-ifname' }, CONF, 4, /CNI_IFNAME/);
  fails({ ...ENV, CNI_NETNS: 'relative/ns' }, CONF, 4, /invalid CNI_NETNS "relative\/ns"/);
  fails({ ...ENV, CNI_NETNS: '/run/netns/a b' }, CONF, 4, /invalid CNI_NETNS/);
  fails({ ...ENV, CNI_CONTAINERID: '-x' }, CONF, 4, /invalid CNI_CONTAINERID "-x"/);
  fails({ ...ENV, CNI_CONTAINERID: 'a'.repeat(513) }, CONF, 4, /CNI_CONTAINERID/);
  fails({ ...ENV, CNI_PATH: 'bin:/opt/cni/bin' }, CONF, 4, /invalid CNI_PATH entry "bin"/);
  fails({ ...ENV, CNI_ARGS: 'FOO=1' }, CONF, 4, /unknown CNI_ARGS "FOO=1"/);
});

test('stdin that is not a JSON object is code 6; the version is checked (1)', () => {
  fails(ENV, '{"name": ', 6, /error unmarshalling the network config from stdin/);
  fails(ENV, '[1]', 6, /must be a JSON object/);
  fails(ENV, '', 6, /error unmarshalling/);
  fails(ENV, { ...CONF, cniVersion: '0.2.0' }, 1, /incompatible CNI versions/);
  fails({ ...ENV, CNI_COMMAND: 'CHECK' }, { ...CONF, cniVersion: '0.3.1', prevResult: {} }, 1, /does not allow CHECK/);
  fails({ ...ENV, CNI_COMMAND: 'GC' }, CONF, 1, /does not allow GC/);
});

test('the socket in the config must be this daemon\'s', () => {
  const conf = { ...CONF, socket: '/run/other/cni.sock' };
  fails(ENV, conf, 7, /names socket \/run\/other\/cni\.sock but this batchbridge daemon serves \/run\/batchbridge\/cni\.sock/, { socketPath: '/run/batchbridge/cni.sock' });
  assert.equal(parse(ENV, conf, { socketPath: '/run/batchbridge/cni.sock', acceptsSocket: (p) => p === '/run/other/cni.sock' }).command, 'ADD');
  assert.equal(parse(ENV, { ...CONF, socket: '/run/batchbridge/cni.sock' }, { socketPath: '/run/batchbridge/cni.sock' }).command, 'ADD');
});

test('prevResult: refused on ADD (2), required by CHECK (7), optional for DEL, decoded when given', () => {
  const prev = { cniVersion: '1.0.0', interfaces: [{ name: 'bb0' }, { name: 'veth1' }, { name: 'eth0', sandbox: '/var/run/netns/cni-1234' }], ips: [{ address: '198.18.64.5/24', gateway: '198.18.64.1', interface: 2 }] };
  fails(ENV, { ...CONF, prevResult: prev }, 2, /prevResult on ADD.*first plugin/);
  fails({ ...ENV, CNI_COMMAND: 'CHECK' }, CONF, 7, /CHECK needs prevResult/);
  const check = parse({ ...ENV, CNI_COMMAND: 'CHECK' }, { ...CONF, prevResult: prev });
  assert.equal(check.command === 'CHECK' ? check.prevResult.ips[0]?.address : '', '198.18.64.5/24');
  const del = parse({ ...ENV, CNI_COMMAND: 'DEL', CNI_NETNS: '' }, CONF);
  assert.ok(del.command === 'DEL');
  assert.equal(del.netns, null, "containerd's second DEL has no netns");
  assert.equal(del.prevResult, null);
  fails({ ...ENV, CNI_COMMAND: 'DEL' }, { ...CONF, prevResult: { ips: [{ address: 'nope' }] } }, 6, /prevResult\.ips\[0\]/);
});

test('GC: the valid attachments, under either key', () => {
  const conf = { ...CONF, cniVersion: '1.1.0', 'cni.dev/valid-attachments': [{ containerID: 'a1', ifname: 'eth0' }, { containerID: 'b2', ifname: 'net1' }] };
  const gc = parse({ CNI_COMMAND: 'GC', CNI_PATH: '/opt/cni/bin' }, conf);
  assert.ok(gc.command === 'GC');
  assert.deepEqual(gc.validAttachments, [{ containerId: 'a1', ifName: 'eth0' }, { containerId: 'b2', ifName: 'net1' }]);
  const old = parse({ CNI_COMMAND: 'GC', CNI_PATH: '/x' }, { ...CONF, cniVersion: '1.1.0', 'cni.dev/attachments': [{ containerID: 'a1', ifname: 'eth0' }] });
  assert.equal(old.command === 'GC' ? old.validAttachments.length : 0, 1);
  fails({ CNI_COMMAND: 'GC', CNI_PATH: '/x' }, { ...CONF, cniVersion: '1.1.0', 'cni.dev/valid-attachments': [{ containerID: 'a1' }] }, 7, /valid-attachments\[0\]: invalid ifname/);
  fails({ CNI_COMMAND: 'GC', CNI_PATH: '/x' }, { ...CONF, cniVersion: '1.1.0', 'cni.dev/valid-attachments': {} }, 7, /must be a list/);
});

test('portMappings: Podman\'s and containerd\'s keys give the same mappings', () => {
  const podman = add({}, { ...CONF, runtimeConfig: { portMappings: [{ hostPort: 18085, containerPort: 80, protocol: 'tcp', hostIP: '' }, { hostPort: 5353, containerPort: 53, protocol: 'udp' }] } });
  const containerd = add({}, { ...CONF, runtimeConfig: { portMappings: [{ HostPort: 18085, ContainerPort: 80, Protocol: 'tcp', HostIP: '' }, { HostPort: 5353, ContainerPort: 53, Protocol: 'UDP' }] } });
  assert.deepEqual(podman.options.ports, containerd.options.ports);
  assert.deepEqual(podman.options.ports, [{ proto: 'tcp', hostPort: 18085, containerPort: 80, hostIp: '' }, { proto: 'udp', hostPort: 5353, containerPort: 53, hostIp: '' }]);
  const more = add({}, { ...CONF, runtimeConfig: { portMappings: [{ hostPort: 9000, containerPort: 9000, protocol: 'sctp', hostIP: '198.18.0.1' }, { hostPort: 9001, containerPort: 1 }] } });
  assert.deepEqual(more.options.ports.map((p) => `${p.proto} ${p.hostIp}:${p.hostPort}`), ['sctp 198.18.0.1:9000', 'tcp :9001'], 'protocol defaults to tcp');
});

test('portMappings errors (7; 2 for an unknown key)', () => {
  const pm = (m: unknown): unknown => ({ ...CONF, runtimeConfig: { portMappings: m } });
  fails(ENV, pm([{ hostPort: 0, containerPort: 80 }]), 7, /portMappings\[0\]\.hostPort: invalid port 0 \(1-65535\)/);
  fails(ENV, pm([{ hostPort: 80, containerPort: 70000 }]), 7, /containerPort: invalid port 70000/);
  fails(ENV, pm([{ hostPort: '80', containerPort: 80 }]), 7, /hostPort: invalid port "80"/);
  fails(ENV, pm([{ hostPort: 80, containerPort: 80, protocol: 'icmp' }]), 7, /unknown protocol "icmp" \(tcp, udp, sctp\)/);
  fails(ENV, pm([{ hostPort: 80, containerPort: 80, hostIP: '999.1.1.1' }]), 7, /hostIP/);
  fails(ENV, pm([{ hostPort: 80, containerPort: 80, range: 2 }]), 2, /unsupported field runtimeConfig\.portMappings\[0\]\.range: 2/);
  fails(ENV, pm([{ hostPort: 80, containerPort: 80 }, { HostPort: 80, ContainerPort: 81 }]), 7, /host port tcp \*:80 is mapped twice/);
  fails(ENV, pm({}), 7, /must be a list/);
  fails(ENV, pm(['x']), 7, /portMappings\[0\] must be an object/);
  fails(ENV, { ...CONF, runtimeConfig: { bandwidth: { ingressRate: 1 } } }, 2, /unsupported field runtimeConfig\.bandwidth/);
});

test('ips and mac: runtimeConfig over args.cni over CNI_ARGS; checked against the network', () => {
  const conf = (rc: unknown, args?: unknown): unknown => ({ ...CONF, runtimeConfig: rc, ...(args !== undefined ? { args } : {}) });
  const r = add({ CNI_ARGS: 'IP=198.18.64.7;MAC=02:00:00:00:00:07' }, conf({ ips: ['198.18.64.9/24', 'fd00:64::9'], mac: '02:00:00:00:00:09' }, { cni: { ips: ['198.18.64.8'], mac: '02:00:00:00:00:08' } }));
  assert.deepEqual([r.options.ipv4, r.options.ipv6, r.options.mac], ['198.18.64.9', 'fd00:64::9', '02:00:00:00:00:09']);
  const a = add({ CNI_ARGS: 'IP=198.18.64.7;MAC=02:00:00:00:00:07' }, conf({}, { cni: { ips: ['198.18.64.8'], mac: '02:00:00:00:00:08' }, labels: 'ignored' }));
  assert.deepEqual([a.options.ipv4, a.options.ipv6, a.options.mac], ['198.18.64.8', null, '02:00:00:00:00:08']);
  const e = add({ CNI_ARGS: 'IP=198.18.64.7;MAC=02:00:00:00:00:07' }, conf({}));
  assert.deepEqual([e.options.ipv4, e.options.mac], ['198.18.64.7', '02:00:00:00:00:07']);
  fails(ENV, conf({ ips: ['198.18.65.9'] }), 7, /invalid runtimeConfig\.ips 198\.18\.65\.9: not in subnet 198\.18\.64\.0\/24/);
  fails(ENV, conf({ ips: ['198.18.64.1'] }), 7, /it is the network's gateway/);
  fails(ENV, conf({ ips: ['198.18.64.0'] }), 7, /network address/);
  fails(ENV, conf({ ips: ['198.18.64.255'] }), 7, /broadcast address/);
  fails(ENV, conf({ ips: ['198.18.64.3', '198.18.64.4'] }), 7, /more than one IPv4 address/);
  fails({ ...ENV, CNI_ARGS: 'IP=198.18.99.1' }, conf({}), 7, /invalid CNI_ARGS IP 198\.18\.99\.1: not in subnet/);
  fails(ENV, conf({ mac: '01:00:00:00:00:01' }), 7, /runtimeConfig\.mac: invalid MAC address 01:00:00:00:00:01: multicast/);
  fails(ENV, conf({ ips: 'x' }), 7, /runtimeConfig\.ips must be a list/);
  // With delegated IPAM the plugin decides which addresses are possible.
  const delegated = { ...CONF, ipam: { type: 'host-local', ranges: [[{ subnet: '198.18.64.0/24' }]] }, runtimeConfig: { ips: ['198.18.99.1'] } };
  assert.equal(add({}, delegated).options.ipv4, '198.18.99.1');
});
