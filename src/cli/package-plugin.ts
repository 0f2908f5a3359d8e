// `batchbridge package-plugin --out DIR [--name NAME]`: builds a Docker managed-plugin folder
// (DIR/config.json + DIR/rootfs/) from this checkout and the host's tools, ready for
// `docker plugin create NAME DIR`. No registry and no image build are involved.
import { existsSync, readdirSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { pluginConfig } from './plugin-config.js';
import { assembleRootfs } from './plugin-rootfs.js';

export const PACKAGE_HELP = `Usage: batchbridge package-plugin --out DIR [--name NAME]

Builds a Docker managed-plugin folder: DIR/config.json and DIR/rootfs/ (about 190 MB), made of
this checkout (package.json, bin/, dist/src/, the production node_modules) and the host's node,
ip, iptables (nft: xtables-nft-multi and its extensions), conntrack and busybox, with their
shared libraries. Run it as root on the kind of host the plugin will run on (the binaries and
libraries are copied from here), after \`npm ci\`.

  --out DIR     the folder to create (it must not exist, or be empty)
  --name NAME   driver and socket name the plugin serves under (default: batchbridge); create
                the plugin under the same name so \`docker network create -d NAME\` and
                \`batchbridge ports --name NAME\` find it

Then:
  mkdir -p /var/lib/batchbridge            # the books; another host dir: docker plugin set NAME state.source=DIR
  docker plugin create NAME DIR
  docker plugin enable NAME
  docker network create -d NAME --subnet 198.18.20.0/24 n1

Settings (\`docker plugin set NAME KEY=VALUE\`, while disabled): state.source=DIR (the books),
BB_LOG_LEVEL=debug, args="--batch-max 128" (extra serve flags). See docs/install.md.
`;

/** Same rule as `serve --name`: the name becomes a socket file name and a driver name. */
const NAME_RE = /^[a-z0-9][a-z0-9_.-]{0,63}$/;
const BUILTIN = new Set(['bridge', 'host', 'null', 'overlay', 'macvlan', 'ipvlan', 'none']);

class PackageUsageError extends Error {}

/** The checkout this module was compiled in: dist/src/cli/package-plugin.js -> ../../../ */
function projectDir(): string {
  return fileURLToPath(new URL('../../../', import.meta.url));
}

async function checkProject(dir: string): Promise<void> {
  const pkg = JSON.parse(await readFile(join(dir, 'package.json'), 'utf8')) as { name?: string };
  if (pkg.name !== 'batchbridge') throw new Error(`${dir} is not a batchbridge checkout`);
  if (!existsSync(join(dir, 'node_modules'))) throw new Error(`${join(dir, 'node_modules')} is missing: run \`npm ci\` first`);
}

function parse(args: string[]): { out: string; name: string } | 'help' {
  const { values } = parseArgs({
    args,
    strict: true,
    allowPositionals: false,
    options: { out: { type: 'string' }, name: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) return 'help';
  if (values.out === undefined || values.out === '') throw new PackageUsageError('--out DIR is required');
  const name = values.name ?? 'batchbridge';
  if (!NAME_RE.test(name)) throw new PackageUsageError(`--name must be 1-64 characters of [a-z0-9_.-], got ${JSON.stringify(name)}`);
  if (BUILTIN.has(name)) throw new PackageUsageError(`--name ${name} is a built-in Docker driver name: dockerd would never call the plugin`);
  return { out: isAbsolute(values.out) ? values.out : resolve(values.out), name };
}

export async function packagePlugin(args: string[]): Promise<number> {
  let opts: { out: string; name: string } | 'help';
  try {
    opts = parse(args);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (err instanceof PackageUsageError || (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_'))) {
      process.stderr.write(`batchbridge package-plugin: ${(err as Error).message}\nRun 'batchbridge package-plugin --help' for usage.\n`);
      return 2;
    }
    throw err;
  }
  if (opts === 'help') {
    process.stdout.write(PACKAGE_HELP);
    return 0;
  }
  const { out, name } = opts;
  const existed = existsSync(out);
  if (existed && readdirSync(out).length > 0) {
    process.stderr.write(`batchbridge package-plugin: ${out} exists and is not empty; nothing was changed\n`);
    return 2;
  }
  const started = Date.now();
  try {
    const dir = projectDir();
    await checkProject(dir);
    const rootfs = join(out, 'rootfs');
    await mkdir(rootfs, { recursive: true, mode: 0o755 });
    const report = await assembleRootfs({
      projectDir: dir,
      rootfs,
      nodePath: process.execPath,
      progress: (m) => process.stderr.write(`package-plugin: ${m}\n`),
    });
    const config = pluginConfig({ name, nodePath: process.execPath });
    await writeFile(join(out, 'config.json'), `${JSON.stringify(config, null, 2)}\n`, { mode: 0o644 });
    const mb = Math.round(report.bytes / 1e6);
    process.stdout.write(`plugin folder ${out}: config.json and rootfs/ (${report.files} files, ${mb} MB) in ${((Date.now() - started) / 1000).toFixed(1)} s
next: docker plugin create ${name} ${out} && docker plugin enable ${name}
`);
    return 0;
  } catch (err) {
    // Leave nothing half-built behind: the folder was ours (absent or empty before).
    if (existed) {
      for (const e of readdirSync(out)) await rm(join(out, e), { recursive: true, force: true });
    } else {
      await rm(out, { recursive: true, force: true });
    }
    process.stderr.write(`batchbridge package-plugin: ${(err as Error).message}\n`);
    return 1;
  }
}
