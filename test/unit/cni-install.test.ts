// The forwarder's settings slot and the conflist cni-install writes.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { cniInstall } from '../../src/cni/cli-install.js';
import { buildConflist, conflistFileName, patchSlot, readSlot, SLOT_MAGIC, type ConflistOptions } from '../../src/cni/install.js';
import { parseNetConfig } from '../../src/cni/net-config.js';
import { FORWARDER, forwarderBuilt } from '../helpers/cni-call.js';

test('the built forwarder has one slot holding the compiled defaults; patching rewrites only the slot', () => {
  forwarderBuilt();
  const bin = readFileSync(FORWARDER);
  assert.deepEqual(readSlot(bin), { socketPath: '/run/batchbridge/cni.sock', addWaitMs: 5000 });
  const patched = patchSlot(bin, { socketPath: '/run/bb2/cni.sock', addWaitMs: 250 });
  assert.deepEqual(readSlot(patched), { socketPath: '/run/bb2/cni.sock', addWaitMs: 250 });
  assert.equal(patched.length, bin.length);
  let differ = 0;
  for (let i = 0; i < bin.length; i++) if (bin[i] !== patched[i]) differ++;
  assert.ok(differ > 0 && differ <= 120, `${differ} bytes changed`);
  assert.deepEqual(readSlot(patchSlot(patched, { socketPath: '/run/batchbridge/cni.sock', addWaitMs: 5000 })), readSlot(bin), 'a long path leaves no tail behind');
  assert.throws(() => patchSlot(bin, { socketPath: `/${'x'.repeat(107)}`, addWaitMs: 1 }), /at most 107 bytes/);
  assert.throws(() => patchSlot(bin, { socketPath: 'rel.sock', addWaitMs: 1 }), /absolute path/);
  assert.throws(() => patchSlot(bin, { socketPath: '/a.sock', addWaitMs: 600_001 }), /0 to 600000/);
  assert.throws(() => patchSlot(Buffer.from('no slot here'), { socketPath: '/a.sock', addWaitMs: 1 }), /no settings slot/);
  assert.throws(() => patchSlot(Buffer.concat([SLOT_MAGIC, Buffer.alloc(120), SLOT_MAGIC, Buffer.alloc(120)]), { socketPath: '/a.sock', addWaitMs: 1 }), /more than one/);
});

const OPTS: ConflistOptions = { name: 'bbnet', cniVersion: '1.0.0', socketPath: '/run/batchbridge/cni.sock', subnet: '198.18.64.0/24', ipMasq: true, hairpinMode: false, ipam: 'batchbridge' };

test('the conflist: one batchbridge-cni entry the daemon accepts, with the capabilities runtimes pass', () => {
  const c = buildConflist({ ...OPTS, mtu: 1400, bridge: 'bbcni0', subnet6: 'fd00:64::/64' }) as { cniVersion: string; name: string; plugins: Record<string, unknown>[] };
  assert.equal(c.cniVersion, '1.0.0');
  assert.equal(c.name, 'bbnet');
  assert.equal(c.plugins.length, 1);
  const p = c.plugins[0] ?? {};
  assert.deepEqual(p, {
    type: 'batchbridge-cni', socket: '/run/batchbridge/cni.sock', bridge: 'bbcni0', isGateway: true, isDefaultGateway: true, ipMasq: true, mtu: 1400, hairpinMode: false,
    ipam: { type: 'batchbridge', ranges: [[{ subnet: '198.18.64.0/24' }], [{ subnet: 'fd00:64::/64' }]] },
    capabilities: { portMappings: true, ips: true, mac: true },
  });
  const net = parseNetConfig({ ...p, name: c.name, cniVersion: c.cniVersion });
  assert.deepEqual(net.routes.map((r) => r.dst), ['0.0.0.0/0', '::/0']);
  const hl = buildConflist({ ...OPTS, ipam: 'host-local', ipamDataDir: '/var/lib/cni/bbnet' }) as { plugins: { ipam: unknown }[] };
  assert.deepEqual(hl.plugins[0]?.ipam, { type: 'host-local', ranges: [[{ subnet: '198.18.64.0/24' }]], dataDir: '/var/lib/cni/bbnet' });
  assert.equal(conflistFileName('bbnet'), '10-bbnet.conflist');
});

test('the conflist is refused when the daemon would refuse it', () => {
  assert.throws(() => buildConflist({ ...OPTS, subnet: '198.18.64.0/31' }), /too small/);
  assert.throws(() => buildConflist({ ...OPTS, mtu: 20 }), /invalid MTU number: 20/);
  assert.throws(() => buildConflist({ ...OPTS, bridge: 'bad name' }), /invalid bridge name/);
  assert.throws(() => buildConflist({ ...OPTS, cniVersion: '0.2.0' }), /incompatible CNI versions/);
  assert.throws(() => buildConflist({ ...OPTS, name: 'x/y' }), /invalid network name/);
  assert.throws(() => buildConflist({ ...OPTS, ipamDataDir: '/x' }), /--ipam-data-dir is for a delegated/);
  assert.throws(() => buildConflist({ ...OPTS, socketPath: 'cni.sock' }), /absolute path/);
});

test('cni-install refuses bad usage with exit status 2 and says why, before writing anything', async () => {
  const root = mkdtempSync(join(tmpdir(), 'bbt-cniuse-'));
  const conf = join(root, 'net.d');
  const cases: [string[], RegExp][] = [
    [[], /--bin-dir is required/],
    [['--bin-dir', root, '--name', 'x'], /--name needs --conf-dir/],
    [['--bin-dir', root, '--conf-dir', conf], /--conf-dir needs --name and --subnet/],
    [['--bin-dir', root, '--conf-dir', conf, '--name', 'n3', '--subnet', '198.18.70.0/31'], /invalid network: invalid IPv4 subnet.*too small/],
    [['--bin-dir', root, '--conf-dir', conf, '--name', 'n3', '--subnet', '198.18.70.0/24', '--gateway6', 'fd00::1'], /--gateway6 needs --subnet6/],
    [['--bin-dir', root, '--conf-dir', conf, '--name', 'n3', '--subnet', '198.18.70.0/24', '--conf-file', '../x.conflist'], /--conf-file must be a plain file name/],
    [['--bin-dir', root, '--add-wait-ms', 'soon'], /--add-wait-ms must be a whole number/],
    [['--bin-dir', root, '--socket', 'relative.sock'], /--socket: the socket must be an absolute path/],
    [['--bin-dir', root, 'extra'], /Unexpected argument 'extra'/],
    [['--bin-dir', root, '--bogus'], /Unknown option '--bogus'/],
  ];
  const write = process.stderr.write.bind(process.stderr);
  const out = process.stdout.write.bind(process.stdout);
  let help = '';
  process.stdout.write = ((chunk: string | Uint8Array): boolean => {
    help += String(chunk);
    return true;
  }) as typeof process.stdout.write;
  const helpCode = await cniInstall(['--help']);
  process.stdout.write = out;
  assert.equal(helpCode, 0);
  assert.match(help, /--bin-dir DIR/);
  try {
    for (const [args, re] of cases) {
      let err = '';
      process.stderr.write = ((chunk: string | Uint8Array): boolean => {
        err += String(chunk);
        return true;
      }) as typeof process.stderr.write;
      const code = await cniInstall(args);
      process.stderr.write = write;
      assert.equal(code, 2, `${args.join(' ')}: ${err}`);
      assert.match(err, re, args.join(' '));
      assert.match(err, /^batchbridge cni-install: /);
    }
  } finally {
    process.stderr.write = write;
    rmSync(root, { recursive: true, force: true });
  }
});

/** cniInstall in-process, its output captured. */
async function installQuiet(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const w = { out: process.stdout.write.bind(process.stdout), err: process.stderr.write.bind(process.stderr) };
  let out = '';
  let err = '';
  process.stdout.write = ((c: string | Uint8Array): boolean => ((out += String(c)), true)) as typeof process.stdout.write;
  process.stderr.write = ((c: string | Uint8Array): boolean => ((err += String(c)), true)) as typeof process.stderr.write;
  try {
    return { code: await cniInstall(args), out, err };
  } finally {
    process.stdout.write = w.out;
    process.stderr.write = w.err;
  }
}

test('cni-install: the same conflist again is fine, a different one needs --force', async () => {
  const root = mkdtempSync(join(tmpdir(), 'bbt-cniforce-'));
  try {
    const conf = join(root, 'net.d');
    const base = ['--bin-dir', join(root, 'bin'), '--conf-dir', conf, '--name', 'n2', '--subnet'];
    assert.equal((await installQuiet([...base, '198.18.66.0/24'])).code, 0);
    assert.equal((await installQuiet([...base, '198.18.66.0/24'])).code, 0, 'idempotent');
    const changed = await installQuiet([...base, '198.18.67.0/24']);
    assert.equal(changed.code, 2);
    assert.match(changed.err, /10-n2\.conflist exists with other content; --force replaces it/);
    assert.match(readFileSync(join(conf, '10-n2.conflist'), 'utf8'), /198\.18\.66\.0\/24/, 'left as it was');
    const forced = await installQuiet([...base, '198.18.67.0/24', '--force']);
    assert.equal(forced.code, 0, forced.err);
    assert.match(forced.out, /wrote .*10-n2\.conflist/);
    assert.match(readFileSync(join(conf, '10-n2.conflist'), 'utf8'), /198\.18\.67\.0\/24/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
