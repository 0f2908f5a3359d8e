// `batchbridge install-service`: writes the systemd unit (service-unit.ts) for this install,
// node run directly with this checkout's bin/batchbridge.js, and says how to start it; runs
// systemctl only when asked (--enable).
import { accessSync, constants, existsSync, readFileSync, realpathSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { renderUnit, serveCommand, settingsProblem, UNIT_DEFAULTS, type UnitSettings } from './service-unit.js';
import { runToolDirect } from '../tools/spawn.js';

export const INSTALL_SERVICE_HELP = `Usage: batchbridge install-service [options]

Writes a systemd unit <unit-dir>/<name>.service that runs this install's plugin as a service:
node started directly (no npx), before docker.service, restarted on failure, state and socket
directories managed by systemd, sandboxed down to CAP_NET_ADMIN and CAP_NET_RAW. Then prints
the systemctl line that starts it (runs it with --enable).

Options:
  --unit-dir DIR     where the unit goes (default: ${UNIT_DEFAULTS.unitDir})
  --name NAME        driver name, also the unit's name (default: ${UNIT_DEFAULTS.name})
  --state-dir DIR    the plugin's books (default: ${UNIT_DEFAULTS.stateDir})
  --socket-dir DIR   where the plugin socket goes (default: ${UNIT_DEFAULTS.socketDir})
  --cni-socket PATH  the CNI socket serve listens on (default: serve's, /run/batchbridge/cni.sock;
                     give each service of another --name its own)
  --no-cni           the service serves no CNI requests
  --node PATH        the node binary to run (default: the one running this command)
  --bin PATH         bin/batchbridge.js to run (default: the one of this install)
  --force            replace a unit file of that name whose content differs
  --enable           also run: systemctl daemon-reload && systemctl enable --now <name>.service
  -h, --help         this text

Exit status: 0 when the unit is in place (and, with --enable, started), 1 when it could not be
written or systemctl failed, 2 on bad usage.
`;

const BUILTIN_DRIVERS = ['bridge', 'host', 'null', 'overlay', 'macvlan', 'ipvlan', 'none'];

/** bin/batchbridge.js of the install this module belongs to (dist/src/ → ../../bin/). */
function ownBin(): string {
  return realpathSync(join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'bin', 'batchbridge.js'));
}

function usage(message: string): number {
  process.stderr.write(`batchbridge install-service: ${message}\nRun 'batchbridge install-service --help' for usage.\n`);
  return 2;
}

function fail(message: string): number {
  process.stderr.write(`batchbridge install-service: ${message}\n`);
  return 1;
}

/** Where the unit would not start: a missing node, an unbuilt checkout. */
function runtimeProblem(s: UnitSettings): string | null {
  try {
    accessSync(s.node, constants.X_OK);
  } catch {
    return `--node ${s.node} is not an executable file`;
  }
  if (!existsSync(s.bin)) return `--bin ${s.bin} does not exist`;
  const cli = join(dirname(s.bin), '..', 'dist', 'src', 'cli', 'main.js');
  if (!existsSync(cli)) return `${cli} is missing: build the checkout first (npm ci)`;
  return null;
}

async function systemctl(args: readonly string[]): Promise<boolean> {
  process.stdout.write(`running: systemctl ${args.join(' ')}\n`);
  const r = await runToolDirect('systemctl', args, undefined, 120_000);
  process.stdout.write(r.stdout);
  process.stderr.write(r.stderr);
  if (r.spawnError !== null) process.stderr.write(`batchbridge install-service: ${r.spawnError}\n`);
  return r.exitCode === 0 && r.spawnError === null;
}

export async function installService(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    strict: true,
    allowPositionals: false,
    options: {
      'unit-dir': { type: 'string' },
      name: { type: 'string' },
      'state-dir': { type: 'string' },
      'socket-dir': { type: 'string' },
      'cni-socket': { type: 'string' },
      'no-cni': { type: 'boolean' },
      node: { type: 'string' },
      bin: { type: 'string' },
      force: { type: 'boolean' },
      enable: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(INSTALL_SERVICE_HELP);
    return 0;
  }
  const name = values.name ?? UNIT_DEFAULTS.name;
  if (!/^[a-z0-9][a-z0-9_.-]{0,63}$/.test(name)) return usage(`--name must be 1-64 characters of [a-z0-9_.-], got ${JSON.stringify(name)}`);
  if (BUILTIN_DRIVERS.includes(name)) return usage(`--name ${name} is a built-in Docker driver name: dockerd would never call the plugin`);
  if (values['no-cni'] === true && values['cni-socket'] !== undefined) return usage('--cni-socket and --no-cni exclude each other');
  const settings: UnitSettings = {
    name,
    node: values.node ?? process.execPath,
    bin: values.bin ?? ownBin(),
    stateDir: values['state-dir'] ?? UNIT_DEFAULTS.stateDir,
    socketDir: values['socket-dir'] ?? UNIT_DEFAULTS.socketDir,
    ...(values['no-cni'] === true ? { cniSocket: null } : values['cni-socket'] !== undefined ? { cniSocket: values['cni-socket'] } : {}),
  };
  const unitDir = values['unit-dir'] ?? UNIT_DEFAULTS.unitDir;
  const bad = settingsProblem(settings);
  if (bad !== null) return usage(bad);
  const missing = runtimeProblem(settings);
  if (missing !== null) return fail(missing);
  if (!existsSync(unitDir)) return fail(`--unit-dir ${unitDir} does not exist`);

  const unitName = `${name}.service`;
  const path = join(unitDir, unitName);
  const text = renderUnit(settings);
  const old = existsSync(path) ? readFileSync(path, 'utf8') : null;
  if (old === text) {
    process.stdout.write(`${path} is already up to date\n`);
  } else {
    // Someone's edited unit is theirs: replaced only when asked.
    if (old !== null && values.force !== true) return fail(`${path} exists with other content; --force replaces it`);
    const tmp = `${path}.tmp-${process.pid}`;
    try {
      writeFileSync(tmp, text, { mode: 0o644 });
      renameSync(tmp, path);
    } catch (err) {
      rmSync(tmp, { force: true });
      return fail(`cannot write ${path}: ${err instanceof Error ? err.message : String(err)}`);
    }
    process.stdout.write(`${old === null ? 'wrote' : 'replaced'} ${path}\n`);
  }
  process.stdout.write(`  runs: ${serveCommand(settings).join(' ')}\n`);
  if (values.enable !== true) {
    process.stdout.write(`start it now and at boot with:\n  systemctl daemon-reload && systemctl enable --now ${unitName}\n`);
    return 0;
  }
  if (!(await systemctl(['daemon-reload'])) || !(await systemctl(['enable', '--now', unitName]))) return fail('systemctl failed (see above)');
  return 0;
}
