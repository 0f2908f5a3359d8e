// Assembles a managed plugin's rootfs from this checkout and the host's own binaries: node, ip,
// the nft iptables (xtables-nft-multi and its names), conntrack and busybox (a shell for
// debugging), with every shared library ldd names, the xtables extensions (dlopened, so ldd
// cannot see them) and their libraries, and the libraries of the native addons. Host paths are
// kept, and so are the host's symlinks (Debian's merged /usr: /lib -> usr/lib), so every
// binary finds its interpreter and libraries where it was built to look.
//
// Safety: nothing is ever written through a symlink inside the rootfs (an absolute link such as
// usr/sbin/iptables -> /etc/alternatives/iptables would otherwise point back at the host). Files
// are written at canonical paths, directories are created one component at a time, and a
// symlink met where a directory should be is an error.
import { constants as fsc } from 'node:fs';
import { access, chmod, copyFile, lstat, mkdir, readFile, readdir, readlink, realpath, symlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { runToolDirect } from '../tools/spawn.js';
import { PLUGIN_PATHS } from './plugin-config.js';
import { parseLdd, productionPackages } from './plugin-inputs.js';

/** Tools the plugin runs, found on the host. */
const HOST_TOOLS = ['ip', 'xtables-nft-multi', 'conntrack', 'busybox'] as const;
/** Names xtables-nft-multi answers to that the plugin uses (it dispatches on argv[0]). */
const XTABLES_NAMES = ['iptables', 'iptables-restore', 'iptables-save', 'ip6tables', 'ip6tables-restore', 'ip6tables-save'];
const BUSYBOX_APPLETS = ['sh', 'ls', 'cat', 'ps'];
/** Top-level directories that merged-/usr systems make symlinks. */
const TOP_LEVEL = ['bin', 'sbin', 'lib', 'lib32', 'lib64', 'libx32'];
const SEARCH_DIRS = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

export interface AssembleOptions {
  /** The batchbridge checkout (package.json, bin/, dist/src/, node_modules/). */
  readonly projectDir: string;
  /** An empty directory that becomes the rootfs. */
  readonly rootfs: string;
  /** The node binary to ship (the one running this command). */
  readonly nodePath: string;
  readonly progress?: (msg: string) => void;
}

export interface AssembleReport {
  readonly files: number;
  readonly bytes: number;
}

function isMissing(err: unknown): boolean {
  return (err as NodeJS.ErrnoException).code === 'ENOENT';
}

async function lstatOrNull(p: string): Promise<Awaited<ReturnType<typeof lstat>> | null> {
  try {
    return await lstat(p);
  } catch (err) {
    if (isMissing(err)) return null;
    throw err;
  }
}

export async function findTool(name: string): Promise<string> {
  const dirs = [...SEARCH_DIRS, ...(process.env.PATH ?? '').split(':').filter((d) => d.startsWith('/'))];
  for (const d of dirs) {
    const p = join(d, name);
    try {
      await access(p, fsc.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  throw new Error(`${name} not found on this host (looked in ${SEARCH_DIRS.join(', ')} and $PATH); run scripts/install-deps.sh`);
}

/** Shared libraries of a binary or .so (none for a static binary). */
export async function sharedLibs(file: string): Promise<string[]> {
  const r = await runToolDirect('ldd', [file]);
  if (r.spawnError !== null) throw new Error(`ldd ${file}: ${r.spawnError}`);
  const { libs, missing } = parseLdd(r.stdout);
  if (missing.length > 0) throw new Error(`ldd ${file}: libraries not found: ${missing.join(', ')}`);
  // Exit status 1 with "not a dynamic executable" is a static binary: nothing to copy.
  if (r.exitCode !== 0 && libs.length === 0 && !/not a dynamic executable|statically linked/.test(r.stdout + r.stderr)) {
    throw new Error(`ldd ${file} failed: ${r.stderr.trim()}`);
  }
  return libs;
}

class RootfsWriter {
  private readonly dirs = new Set<string>();
  private readonly copied = new Set<string>();
  files = 0;
  bytes = 0;

  constructor(private readonly root: string) {}

  private at(p: string): string {
    return join(this.root, p);
  }

  /** Creates `dir` (an absolute path inside the rootfs) component by component, never following a symlink. */
  async mkdirs(dir: string, mode = 0o755): Promise<void> {
    if (this.dirs.has(dir)) return;
    let cur = '/';
    for (const comp of dir.split('/').filter((c) => c !== '')) {
      cur = join(cur, comp);
      if (this.dirs.has(cur)) continue;
      const st = await lstatOrNull(this.at(cur));
      if (st === null) await mkdir(this.at(cur), { mode });
      else if (!st.isDirectory()) throw new Error(`rootfs: ${cur} is ${st.isSymbolicLink() ? 'a symlink' : 'not a directory'} where a directory is needed`);
      this.dirs.add(cur);
    }
  }

  async symlinkAt(path: string, target: string): Promise<void> {
    await this.mkdirs(dirname(path));
    const st = await lstatOrNull(this.at(path));
    if (st !== null) {
      if (st.isSymbolicLink() && (await readlink(this.at(path))) === target) return;
      throw new Error(`rootfs: ${path} already exists and is not a symlink to ${target}`);
    }
    await symlink(target, this.at(path));
  }

  async copyFileAt(src: string, dest: string, mode: number, size: number): Promise<void> {
    await this.mkdirs(dirname(dest));
    const st = await lstatOrNull(this.at(dest));
    if (st !== null) {
      if (st.isFile()) return;
      throw new Error(`rootfs: ${dest} already exists and is not a file`);
    }
    // COPYFILE_EXCL: O_CREAT|O_EXCL, which never follows a symlink at the destination.
    await copyFile(src, this.at(dest), fsc.COPYFILE_EXCL);
    await chmod(this.at(dest), mode & 0o7777);
    this.files++;
    this.bytes += size;
  }

  async writeFileAt(dest: string, content: string): Promise<void> {
    await this.mkdirs(dirname(dest));
    await writeFile(this.at(dest), content, { flag: 'wx', mode: 0o644 });
  }

  /** Copies a directory tree to `dest`, symlinks as symlinks; `skip(srcPath)` leaves entries out. */
  async copyTree(src: string, dest: string, skip: (p: string) => boolean = () => false, onFile?: (dest: string) => void): Promise<void> {
    await this.mkdirs(dest);
    for (const e of await readdir(src, { withFileTypes: true })) {
      const s = join(src, e.name);
      const d = join(dest, e.name);
      if (skip(s)) continue;
      if (e.isSymbolicLink()) await this.symlinkAt(d, await readlink(s));
      else if (e.isDirectory()) await this.copyTree(s, d, skip, onFile);
      else if (e.isFile()) {
        const st = await lstat(s);
        await this.copyFileAt(s, d, st.mode, st.size);
        onFile?.(d);
      }
    }
  }

  /** The real (symlink-free) host path of `dir`, with each symlink on the way recreated in the rootfs. */
  private async mirrorDir(dir: string): Promise<string> {
    let real = '/';
    for (const comp of dir.split('/').filter((c) => c !== '')) {
      const next = join(real, comp);
      const st = await lstat(next);
      if (st.isSymbolicLink()) {
        const target = await readlink(next);
        await this.symlinkAt(next, target);
        real = await this.mirrorDir(resolve(real, target));
      } else {
        real = next;
      }
    }
    await this.mkdirs(real);
    return real;
  }

  /** Copies a host file, directory or symlink chain to the same path in the rootfs. */
  async copyHostPath(p: string): Promise<void> {
    if (this.copied.has(p)) return;
    this.copied.add(p);
    const parent = await this.mirrorDir(dirname(p));
    const real = join(parent, basename(p));
    const st = await lstat(real);
    if (st.isSymbolicLink()) {
      const target = await readlink(real);
      await this.symlinkAt(real, target);
      await this.copyHostPath(resolve(parent, target));
    } else if (st.isDirectory()) {
      await this.copyTree(real, real);
    } else if (st.isFile()) {
      await this.copyFileAt(real, real, st.mode, st.size);
    } else {
      throw new Error(`rootfs: ${p} is not a file, directory or symlink`);
    }
  }

  async copyWithLibs(file: string): Promise<void> {
    await this.copyHostPath(file);
    for (const lib of await sharedLibs(file)) await this.copyHostPath(lib);
  }
}

/** The directory of the xtables extensions, next to the libxtables xtables-nft-multi links to. */
async function xtablesExtensionDir(xtables: string): Promise<string> {
  const lib = (await sharedLibs(xtables)).find((l) => /\/libxtables\.so(\.\d+)*$/.test(l));
  if (lib === undefined) throw new Error(`${xtables} does not link libxtables: cannot find the xtables extensions`);
  const dir = join(dirname(await realpath(lib)), 'xtables');
  const st = await lstatOrNull(dir);
  if (st === null || !st.isDirectory()) throw new Error(`the xtables extensions are not in ${dir}`);
  return dir;
}

async function hostBase(w: RootfsWriter, o: AssembleOptions): Promise<void> {
  for (const d of TOP_LEVEL) {
    const st = await lstatOrNull(`/${d}`);
    if (st?.isSymbolicLink()) await w.symlinkAt(`/${d}`, await readlink(`/${d}`));
  }
  for (const d of ['/proc', '/sys', '/dev', '/etc', '/run/docker/plugins', PLUGIN_PATHS.state, `${PLUGIN_PATHS.sysctlDir}/net`, PLUGIN_PATHS.project]) await w.mkdirs(d);
  await w.mkdirs('/tmp');
  await chmod(join(o.rootfs, 'tmp'), 0o1777);

  o.progress?.('host tools and their libraries');
  await w.copyWithLibs(o.nodePath);
  const tools = new Map<string, string>();
  for (const t of HOST_TOOLS) tools.set(t, await findTool(t));
  for (const p of tools.values()) await w.copyWithLibs(p);

  const xtables = await realpath(tools.get('xtables-nft-multi') as string);
  for (const n of XTABLES_NAMES) await w.symlinkAt(join(dirname(xtables), n), basename(xtables));
  const extDir = await xtablesExtensionDir(xtables);
  await w.copyHostPath(extDir);
  for (const e of await readdir(extDir)) {
    if (e.endsWith('.so')) for (const lib of await sharedLibs(join(extDir, e))) await w.copyHostPath(lib);
  }
  const busybox = await realpath(tools.get('busybox') as string);
  for (const a of BUSYBOX_APPLETS) {
    const p = join(dirname(busybox), a);
    if ((await lstatOrNull(join(o.rootfs, p))) === null) await w.symlinkAt(p, basename(busybox));
  }

  // ip reads its name tables, iptables protocol and service names.
  for (const p of ['/etc/iproute2', '/usr/share/iproute2', '/usr/lib/iproute2', '/etc/protocols', '/etc/services', '/etc/ethertypes']) {
    if ((await lstatOrNull(p)) !== null) await w.copyHostPath(p);
  }
  await w.writeFileAt('/etc/passwd', 'root:x:0:0:root:/root:/bin/sh\n');
  await w.writeFileAt('/etc/group', 'root:x:0:\n');
  // dockerd bind-mounts the host's hosts and resolv.conf over these.
  await w.writeFileAt('/etc/hosts', '');
  await w.writeFileAt('/etc/resolv.conf', '');
}

async function project(w: RootfsWriter, o: AssembleOptions): Promise<void> {
  const dest = PLUGIN_PATHS.project;
  const p = o.projectDir;
  const st = await lstatOrNull(join(p, 'dist', 'src', 'cli', 'plugin-entry.js'));
  if (st === null) throw new Error(`${join(p, 'dist')} is not built: run \`npm run build\` (or npm ci) first`);
  await w.copyTree(join(p, 'bin'), join(dest, 'bin'));
  await w.copyTree(join(p, 'dist', 'src'), join(dest, 'dist', 'src'));
  const pkg = await lstat(join(p, 'package.json'));
  await w.copyFileAt(join(p, 'package.json'), join(dest, 'package.json'), pkg.mode, pkg.size);

  const lock: unknown = JSON.parse(await readFile(join(p, 'package-lock.json'), 'utf8'));
  const addons: string[] = [];
  for (const pk of productionPackages(lock)) {
    const src = join(p, pk.path);
    if ((await lstatOrNull(src)) === null) {
      if (pk.optional) continue; // an optional dependency for another platform
      throw new Error(`${src} is missing: run \`npm ci\` first`);
    }
    const nested = join(src, 'node_modules');
    await w.copyTree(src, join(dest, pk.path), (s) => s === nested, (f) => {
      if (f.endsWith('.node')) addons.push(f);
    });
  }
  o.progress?.(`native addons: ${addons.length}`);
  for (const a of addons) for (const lib of await sharedLibs(join(o.rootfs, a))) await w.copyHostPath(lib);
}

export async function assembleRootfs(o: AssembleOptions): Promise<AssembleReport> {
  const w = new RootfsWriter(o.rootfs);
  await hostBase(w, o);
  o.progress?.('the project: package.json, bin, dist/src, production node_modules');
  await project(w, o);
  return { files: w.files, bytes: w.bytes };
}
