// The CNI exec harness (test/helpers/cni-exec.ts) against libcni's behaviour: the pure parts
// directly, the chain logic with small shell-script plugins that record what they were given.
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  CniError, CniExec, convertResult, decodeVersionInfo, findInPath, parseConflist, parseResult,
  pluginEnv, pluginFailure, pluginStdin, validateAddArgs, type JsonObject,
} from '../helpers/cni-exec.js';
import { noopPlugin, readRecordings, recorderPlugin } from '../helpers/cni-fixtures.js';

const LIST = JSON.stringify({
  cniVersion: '1.0.0',
  name: 'net1',
  plugins: [
    { type: 'a', bridge: 'br0', capabilities: { portMappings: true, ips: false } },
    { type: 'b', name: 'second', capabilities: { mac: true } },
  ],
});

test('parseConflist reads name, version, flags and the plugin entries', () => {
  const l = parseConflist(LIST);
  assert.equal(l.name, 'net1');
  assert.equal(l.cniVersion, '1.0.0');
  assert.equal(l.disableCheck, false);
  assert.deepEqual(l.plugins.map((p) => p.type), ['a', 'b']);
  assert.deepEqual(l.plugins[0]?.capabilities, { portMappings: true, ips: false });
  assert.equal(parseConflist(JSON.stringify({ name: 'x', disableCheck: 'True', plugins: [{ type: 'a' }] })).disableCheck, true);
  assert.throws(() => parseConflist('{"plugins":[{"type":"a"}]}'), /no name/);
  assert.throws(() => parseConflist('{"name":"x","plugins":[]}'), /no plugins/);
  assert.throws(() => parseConflist('{"name":"x","plugins":[{}]}'), /plugin config 0/);
  assert.throws(() => parseConflist('{"name":"x","disableCheck":3,"plugins":[{"type":"a"}]}'), /disableCheck/);
});

test('pluginStdin injects name and cniVersion, filters runtimeConfig by capabilities, keeps capabilities', () => {
  const l = parseConflist(LIST);
  const [a, b] = l.plugins;
  assert.ok(a && b);
  const caps = { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }], ips: ['198.18.0.9/24'], mac: 'aa:bb:cc:dd:ee:ff' };
  const sa = JSON.parse(pluginStdin(l, a, undefined, caps)) as JsonObject;
  assert.equal(sa['name'], 'net1');
  assert.equal(sa['cniVersion'], '1.0.0');
  assert.deepEqual(sa['capabilities'], { portMappings: true, ips: false });
  // ips is declared false: not passed
  assert.deepEqual(sa['runtimeConfig'], { portMappings: caps.portMappings });
  assert.equal('prevResult' in sa, false);
  const prev = { cniVersion: '1.0.0', ips: [] };
  const sb = JSON.parse(pluginStdin(l, b, prev, caps)) as JsonObject;
  assert.equal(sb['name'], 'net1', "the list's name replaces the entry's");
  assert.deepEqual(sb['runtimeConfig'], { mac: caps.mac });
  assert.deepEqual(sb['prevResult'], prev);
  // no capability args: no runtimeConfig key at all
  assert.equal('runtimeConfig' in (JSON.parse(pluginStdin(l, a, undefined, undefined)) as JsonObject), false);
  // Go marshals maps with sorted keys
  assert.deepEqual(Object.keys(sa), [...Object.keys(sa)].sort());
});

test('pluginEnv sets the six CNI variables over the inherited environment', () => {
  const e = pluginEnv('ADD', { containerId: 'c1', netns: '/run/netns/x', ifName: 'eth0', args: [['IgnoreUnknown', '1'], ['K8S_POD_NAME', 'p']], path: ['/a', '/b'] }, { PATH: '/bin', CNI_COMMAND: 'DEL' });
  assert.deepEqual(e, {
    PATH: '/bin', CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_NETNS: '/run/netns/x',
    CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAME=p', CNI_IFNAME: 'eth0', CNI_PATH: '/a:/b',
  });
});

test('pluginFailure parses the error JSON, or falls back to stderr as libcni does', () => {
  const e = pluginFailure(1, '{"code":7,"msg":"bad config","details":"no bridge"}', '');
  assert.equal(e.code, 7);
  assert.equal(e.message, 'bad config; no bridge');
  assert.equal(e.exitCode, 1);
  assert.equal(pluginFailure(2, '', 'boom\n').message, 'netplugin failed: "boom\\n": exit status 2');
  assert.equal(pluginFailure(2, '', '').message, 'netplugin failed with no error message: exit status 2');
  assert.match(pluginFailure(1, 'not json', '').message, /error parsing its diagnostic message "not json"/);
});

test('results: missing cniVersion taken from the config; VERSION answers decoded; 0.4/1.0 conversion', () => {
  assert.equal(parseResult('{"ips":[]}', '0.4.0')['cniVersion'], '0.4.0');
  assert.equal(parseResult('{"cniVersion":"1.0.0"}', '0.4.0')['cniVersion'], '1.0.0');
  assert.throws(() => parseResult('', '1.0.0'), /failed to unmarshal raw result/);
  assert.deepEqual(decodeVersionInfo('{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}').supportedVersions, ['0.4.0', '1.0.0']);
  assert.deepEqual(decodeVersionInfo('{"cniVersion":"0.2.0"}').supportedVersions, ['0.1.0', '0.2.0']);
  assert.throws(() => decodeVersionInfo('{"cniVersion":"1.0.0"}'), /missing field supportedVersions/);
  assert.throws(() => decodeVersionInfo('{}'), /missing field cniVersion/);
  const r1 = { cniVersion: '1.0.0', ips: [{ address: '198.18.0.2/24', interface: 2 }, { address: 'fd00::2/64' }] };
  const r04 = convertResult(r1, '0.4.0');
  assert.deepEqual(r04['ips'], [{ address: '198.18.0.2/24', interface: 2, version: '4' }, { address: 'fd00::2/64', version: '6' }]);
  assert.deepEqual(convertResult(r04, '1.0.0'), r1);
  assert.throws(() => convertResult({ cniVersion: '0.2.0' }, '1.0.0'), /unsupported result version/);
});

test("validateAddArgs refuses what libcni refuses before running a plugin", () => {
  assert.equal(validateAddArgs('net', 'abc-1.2_3', 'eth0'), undefined);
  assert.equal(validateAddArgs('net', '', 'eth0')?.code, 3);
  assert.equal(validateAddArgs('net', 'a b', 'eth0')?.code, 4);
  assert.equal(validateAddArgs('n/x', 'c', 'eth0')?.code, 7);
  assert.equal(validateAddArgs('net', 'c', 'a234567890123456')?.code, 4);
  assert.equal(validateAddArgs('net', 'c', 'et:0')?.code, 4);
  assert.equal(validateAddArgs('net', 'c', '')?.code, 4);
});

// ------------------------------------------------------------------------- with script plugins

/** A plugin that answers ADD with `result` (and fails every command in `failOn` with code 7). */
async function scriptPlugin(dir: string, name: string, result: object, failOn: string[] = []): Promise<void> {
  const p = join(dir, `${name}.real`);
  await writeFile(p, [
    '#!/bin/sh',
    'cat > /dev/null',
    'case "$CNI_COMMAND" in',
    ...failOn.map((c) => `  ${c}) echo '{"code":7,"msg":"${name} refuses ${c}","details":"as told"}'; exit 1 ;;`),
    `  ADD) echo '${JSON.stringify(result)}' ;;`,
    '  VERSION) echo \'{"cniVersion":"1.1.0","supportedVersions":["0.4.0","1.0.0","1.1.0"]}\' ;;',
    'esac',
    '',
  ].join('\n'));
  await chmod(p, 0o755);
}

async function rig(t: { after(fn: () => unknown): void }, failOn: Record<string, string[]> = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'bbt-cniexec-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const bin = join(dir, 'bin');
  const log = join(dir, 'log');
  await mkdir(bin);
  const resA = { cniVersion: '1.0.0', interfaces: [{ name: 'a0' }], ips: [{ address: '198.18.0.2/24', interface: 0 }] };
  const resB = { cniVersion: '1.0.0', interfaces: [{ name: 'a0' }, { name: 'b0' }], ips: [{ address: '198.18.0.2/24', interface: 0 }] };
  await scriptPlugin(bin, 'a', resA, failOn['a']);
  await scriptPlugin(bin, 'b', resB, failOn['b']);
  await recorderPlugin(bin, 'a', join(bin, 'a.real'), log);
  await recorderPlugin(bin, 'b', join(bin, 'b.real'), log);
  const cni = new CniExec({ path: [bin], cacheDir: join(dir, 'cache') });
  return { dir, bin, log, cni, resA, resB, calls: () => readRecordings(log).map((r) => ({ ...r, conf: JSON.parse(r.stdin) as JsonObject })) };
}

const RT = { containerId: 'ctr1', netns: '/run/netns/pod1', ifName: 'eth0', args: [['IgnoreUnknown', '1']] as Array<[string, string]>, capabilityArgs: { portMappings: [{ hostPort: 1, containerPort: 2, protocol: 'tcp' }] } };

test('ADD runs the chain in order with prevResult chained, caches; DEL runs it backwards with the cached result', async (t) => {
  const { cni, calls, resA, resB, dir } = await rig(t);
  const list = parseConflist(LIST);
  assert.deepEqual(await cni.addList(list, RT), resB);
  let c = calls();
  assert.deepEqual(c.map((x) => `${x.env['CNI_COMMAND']} ${x.conf['type'] as string}`), ['ADD a', 'ADD b']);
  assert.equal(c[0]?.env['CNI_ARGS'], 'IgnoreUnknown=1');
  assert.equal(c[0]?.env['CNI_NETNS'], '/run/netns/pod1');
  assert.equal('prevResult' in (c[0]?.conf ?? {}), false);
  assert.deepEqual(c[1]?.conf['prevResult'], resA);
  const cache = JSON.parse(await readFile(join(dir, 'cache', 'results', 'net1-ctr1-eth0'), 'utf8')) as JsonObject;
  assert.equal(cache['kind'], 'cniCacheV1');
  assert.deepEqual(cache['result'], resB);
  assert.equal(Buffer.from(cache['config'] as string, 'base64').toString(), LIST);

  await cni.checkList(list, RT);
  await cni.delList(list, RT);
  c = calls().slice(2);
  assert.deepEqual(c.map((x) => `${x.env['CNI_COMMAND']} ${x.conf['type'] as string}`), ['CHECK a', 'CHECK b', 'DEL b', 'DEL a']);
  for (const x of c) assert.deepEqual(x.conf['prevResult'], resB);
  // the cache entry is gone: a second DEL carries no prevResult and still succeeds
  await cni.delList(list, RT);
  for (const x of calls().slice(6)) assert.equal('prevResult' in x.conf, false);
});

test('a failing plugin stops the chain with its code, message and libcni prefix', async (t) => {
  const { cni, calls } = await rig(t, { b: ['ADD', 'DEL'] });
  const list = parseConflist(LIST);
  const e = await cni.addList(list, RT).then(() => undefined, (x: unknown) => x);
  assert.ok(e instanceof CniError);
  assert.equal(e.code, 7);
  assert.equal(e.exitCode, 1);
  assert.equal(e.message, 'plugin type="b" name="second" failed (add): b refuses ADD; as told');
  const d = await cni.delList(list, RT).then(() => undefined, (x: unknown) => x);
  assert.ok(d instanceof CniError);
  assert.match(d.message, /^plugin type="b" name="second" failed \(delete\)/);
  // DEL stopped at b: a was never asked
  assert.deepEqual(calls().map((x) => `${x.env['CNI_COMMAND']} ${x.conf['type'] as string}`), ['ADD a', 'ADD b', 'DEL b']);
  await assert.rejects(cni.addList(list, { ...RT, containerId: 'bad id' }), /invalid characters in containerID/);
  await assert.rejects(cni.addList(parseConflist('{"name":"n","cniVersion":"1.0.0","plugins":[{"type":"missing"}]}'), RT), /failed to find plugin "missing"/);
  assert.throws(() => findInPath('../a', ['/x']), /invalid plugin name/);
});

test('GC deletes stale cached attachments and passes cni.dev/valid-attachments; STATUS and VERSION', async (t) => {
  const { cni, calls } = await rig(t);
  const list = parseConflist(LIST.replace('"1.0.0"', '"1.1.0"'));
  await cni.addList(list, RT);
  await cni.addList(list, { ...RT, containerId: 'ctr2' });
  const before = calls().length;
  await cni.gcList(list, [{ containerID: 'ctr2', ifname: 'eth0' }]);
  const gc = calls().slice(before);
  assert.deepEqual(gc.map((x) => `${x.env['CNI_COMMAND']} ${x.env['CNI_CONTAINERID'] ?? ''} ${x.conf['type'] as string}`), ['DEL ctr1 b', 'DEL ctr1 a', 'GC  a', 'GC  b']);
  const g = gc[2];
  assert.deepEqual(g?.conf['cni.dev/valid-attachments'], [{ containerID: 'ctr2', ifname: 'eth0' }]);
  assert.equal(g?.env['CNI_NETNS'], '');
  assert.equal('runtimeConfig' in (g?.conf ?? {}), false);
  assert.deepEqual((await cni.cachedAttachments()).map((a) => a.containerId), ['ctr2']);

  await cni.statusList(list);
  assert.deepEqual(calls().slice(-2).map((x) => `${x.env['CNI_COMMAND']} ${x.conf['type'] as string}`), ['STATUS a', 'STATUS b']);
  // below 1.1.0 STATUS sends nothing
  const n = calls().length;
  await cni.statusList(parseConflist(LIST));
  assert.equal(calls().length, n);

  assert.deepEqual((await cni.versionInfo('a')).supportedVersions, ['0.4.0', '1.0.0', '1.1.0']);
  const v = calls().at(-1);
  assert.deepEqual(v?.env, { CNI_COMMAND: 'VERSION', CNI_CONTAINERID: '', CNI_NETNS: 'dummy', CNI_ARGS: '', CNI_IFNAME: 'dummy', CNI_PATH: 'dummy' });
  assert.equal(v?.stdin, '{"cniVersion":"1.1.0"}');
  assert.deepEqual((await cni.validateList(list)).sort(), ['mac', 'portMappings']);
  await assert.rejects(cni.validateList(parseConflist('{"name":"n","cniVersion":"0.3.1","plugins":[{"type":"a"}]}')), /does not support config version "0.3.1"/);
});

test('the do-nothing plugin answers a valid result in the version asked for', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'bbt-cniexec-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await noopPlugin(dir);
  const cni = new CniExec({ path: [dir], cacheDir: join(dir, 'cache') });
  const list = parseConflist('{"cniVersion":"0.4.0","name":"n","plugins":[{"type":"noop"}]}');
  assert.deepEqual(await cni.addList(list, RT), { cniVersion: '0.4.0', interfaces: [], ips: [] });
  await cni.delList(list, RT);
  assert.ok((await cni.versionInfo('noop')).supportedVersions.includes('1.1.0'));
});
