// serve's settings (src/cli/settings.ts): one table makes the flags, the config file's lines,
// --help and docs/options.md; values come from the command line, the file, the environment,
// the default, in that order; bad values and unknown names are refused with where they came
// from. --batch-window-ms does what its help says, from the flag to the pipelines.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { BatchRequest, BatchResponse } from '../../src/batching/work.js';
import { parseConfigText } from '../../src/cli/config-file.js';
import { resolveServeArgs, resolveSettings } from '../../src/cli/resolve-settings.js';
import { serveConfig, serveHelp } from '../../src/cli/serve.js';
import { SERVE_SETTINGS, serveOptionsMarkdown } from '../../src/cli/settings.js';
import { Pipelines } from '../../src/scheduler/pipelines.js';

const DOC = new URL('../../../docs/options.md', import.meta.url);

test('docs/options.md holds the table made from the settings (regenerate it from serveOptionsMarkdown())', () => {
  const doc = readFileSync(DOC, 'utf8');
  const begin = doc.indexOf('-->\n', doc.indexOf('<!-- serve-settings:begin')) + 4;
  const end = doc.indexOf('<!-- serve-settings:end -->');
  assert.ok(begin > 4 && end > begin, 'the markers are in docs/options.md');
  assert.equal(doc.slice(begin, end), serveOptionsMarkdown());
});

test('--help lists every setting, with its default and environment variable', () => {
  const help = serveHelp();
  for (const s of SERVE_SETTINGS) {
    assert.match(help, new RegExp(`\\n  --${s.name}\\b`), `--${s.name} in --help`);
    if (s.env !== undefined) assert.ok(help.includes(s.env), `${s.env} in --help`);
  }
  assert.match(help, /--cni-socket PATH\s+serve CNI requests [^]*?\(default:\s+\/run\/batchbridge\/cni\.sock\)/);
});

test('command line over config file over environment over default', (t) => {
  const dir = mkdtempSync('/tmp/bbt-conf-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'bb.conf');
  writeFileSync(file, '# a comment\n\nbatch-max = 64\nworkers = 3\nwrite-behind-deletes = true\nip-sessions = on\nmetrics-listen = 127.0.0.1:9477\n');
  const { settings: s } = resolveServeArgs(['--config', file, '--workers', '5'], { BB_IP_SESSION: '0', BB_RESTORE_SESSION: '0' });
  const cfg = serveConfig(s);
  assert.equal(cfg.tuning.batchMax, 64, 'from the file');
  assert.equal(cfg.workers, 5, 'the command line wins over the file');
  assert.equal(cfg.writeBehindDeletes, true);
  assert.equal(cfg.switches.ipSessions, true, 'the file wins over the environment');
  assert.equal(cfg.switches.restoreSessions, false, 'the environment when neither says');
  assert.deepEqual(cfg.metricsListen, { host: '127.0.0.1', port: 9477 });
  assert.equal(cfg.cniSocket, '/run/batchbridge/cni.sock');
  assert.equal(s.source('batch-max'), 'config file');
  assert.equal(s.source('name'), 'default');
  assert.equal(cfg.settings?.['batch-max'], '64');
});

test('a config file refuses unknown names, repeats, lines without = and bad values, naming the line', () => {
  assert.throws(() => parseConfigText('batch-max = 8\nbatch-maks = 9\n', 'f.conf'), /^Error: f\.conf line 2: unknown setting "batch-maks" \(known: name, /);
  assert.throws(() => parseConfigText('workers = 2\nworkers = 3\n', 'f.conf'), /f\.conf line 2: workers is set twice \(first at f\.conf line 1\)/);
  assert.throws(() => parseConfigText('workers 2\n', 'f.conf'), /f\.conf line 1: expected "name = value"/);
  assert.throws(() => parseConfigText('config = other.conf\n', 'f.conf'), /f\.conf line 1: config can only be given on the command line/);
  const file = parseConfigText('\n\nbatch-max = 0\n', 'f.conf');
  assert.throws(() => resolveSettings({}, file, {}), /f\.conf line 3: batch-max must be between 1 and 4096, got 0/);
  assert.throws(() => resolveSettings({}, parseConfigText('write-behind-deletes = yes\n', 'f.conf'), {}), /f\.conf line 1: write-behind-deletes must be true or false/);
  assert.throws(() => resolveSettings({}, new Map(), { BB_IP_SESSION: 'no' }), /environment variable BB_IP_SESSION must be 0 or 1/);
  assert.throws(() => resolveServeArgs(['--metrics-listen', '9477']), /--metrics-listen must be HOST:PORT/);
  assert.throws(() => resolveServeArgs(['--log-format', 'xml']), /--log-format must be one of json, pretty/);
  assert.throws(() => resolveServeArgs(['--config', '/nonexistent/bb.conf']), /cannot read the config file \/nonexistent\/bb\.conf/);
});

/** The veth pipeline from a serve command line, with a runner that records its batches. */
function pipelinesFrom(args: string[]): { p: Pipelines; batches: string[][]; release: () => void } {
  const cfg = serveConfig(resolveServeArgs(args, {}).settings);
  const batches: string[][] = [];
  let release = (): void => undefined;
  const run = (req: BatchRequest): Promise<BatchResponse> => {
    batches.push(req.ops.map((o) => String(o.opId)));
    return new Promise((resolve) => {
      release = () => resolve({ batchId: req.batchId, results: req.ops.map((o) => ({ opId: o.opId, ok: true })), timings: { ipMs: 0, fwMs: 0, totalMs: 0, ipSpawns: 0, fwSpawns: 0 } });
    });
  };
  const hooks = { beforeRun: () => undefined, afterRun: () => undefined };
  return { p: new Pipelines(run, hooks, cfg.tuning, 1), batches, release: () => release() };
}

const op = { ip: [{ kind: 'veth-delete' as const, host: 'vethabcdef0' }] };
const entry = { work: op, intent: null, settle: () => null };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('--batch-window-ms: with 8 requests in flight an idle pipeline gathers that long; a lone request never waits', async () => {
  const busy = pipelinesFrom(['--batch-window-ms', '60']);
  busy.p.activeOps = 8;
  const first = busy.p.submit(entry);
  await sleep(25);
  assert.equal(busy.batches.length, 0, 'still gathering 25 ms into a 60 ms window');
  const second = busy.p.submit(entry);
  await sleep(60);
  assert.deepEqual(busy.batches, [['1', '2']], 'both went in one batch when the window closed');
  busy.release();
  await Promise.all([first, second]);

  const lone = pipelinesFrom(['--batch-window-ms', '60']);
  lone.p.activeOps = 7;
  const alone = lone.p.submit(entry);
  assert.equal(lone.batches.length, 1, 'fewer than 8 in flight: started at once');
  lone.release();
  await alone;

  const never = pipelinesFrom(['--batch-window-ms', '0']);
  never.p.activeOps = 100;
  const at0 = never.p.submit(entry);
  assert.equal(never.batches.length, 1, '0: never waits');
  never.release();
  await at0;
});
