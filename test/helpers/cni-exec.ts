// Calls CNI plugins exactly as libcni does (see cni-spec.ts for the facts): conflist chains for
// ADD (in order, prevResult chained), DEL (reverse order, cached prevResult), CHECK, GC, STATUS,
// VERSION, with libcni's result cache in a directory of the caller's choosing. Used by the exec
// tests and by bench/cni-pods.ts, so it stays lean: one spawn per plugin call, nothing else.
import { spawn } from 'node:child_process';
import { statSync } from 'node:fs';
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  CACHE_KIND, CniError, LIBCNI_CURRENT_VERSION, VERSION_PROBE_ARGS, cacheFileName, convertResult,
  decodeVersionInfo, listLevelStdin, parseResult, pluginDescription, pluginEnv, pluginFailure,
  pluginStdin, validateAddArgs, versionGte,
  type CacheEntry, type CallArgs, type CniCommand, type Json, type JsonObject, type NetConfList,
  type PluginConf, type VersionInfo,
} from './cni-spec.js';

export * from './cni-spec.js';

/** What a runtime passes for one attachment (libcni's RuntimeConf). */
export interface RuntimeConf {
  containerId: string;
  netns: string;
  ifName: string;
  args?: ReadonlyArray<readonly [string, string]>;
  capabilityArgs?: Record<string, Json>;
}

export interface PluginCall {
  command: CniCommand;
  plugin: string;
  env: Record<string, string>;
  stdin: string;
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

export interface CniExecOptions {
  /** Plugin directories (CNI_PATH, and where plugins are looked up). */
  path: readonly string[];
  /** libcni's cache directory (results/ below it). */
  cacheDir: string;
  /** Environment the plugins inherit (default: this process's). */
  env?: NodeJS.ProcessEnv;
  /** Kill a plugin after this long (default 60 s). */
  timeoutMs?: number;
  /** The version libcni sends in the VERSION probe (containerd 1.6 vendors libcni 1.1: "1.0.0"). */
  libcniVersion?: string;
  /** Called after every plugin execution (for tests that record the traffic). */
  onCall?: (c: PluginCall) => void;
  /**
   * Run the plugins in this network namespace (through `nsenter --net=PATH`, which passes the
   * environment and stdin unchanged) instead of the caller's: the runtime's "host" namespace.
   */
  hostNetns?: string;
}

/** invoke.FindInPath: the first regular file named `type` in the plugin dirs. */
export function findInPath(type: string, dirs: readonly string[]): string {
  if (type === '') throw new Error('no plugin name provided');
  if (type.includes('/')) throw new Error(`invalid plugin name: ${type}`);
  if (dirs.length === 0) throw new Error('no paths provided');
  for (const d of dirs) {
    const p = join(d, type);
    try {
      if (statSync(p).isFile()) return p;
    } catch {
      /* next dir */
    }
  }
  throw new Error(`failed to find plugin "${type}" in path [${dirs.join(' ')}]`);
}

interface Raw {
  code: number;
  stdout: string;
  stderr: string;
}

function spawnOnce(argv: readonly string[], stdin: string, env: NodeJS.ProcessEnv, timeoutMs: number): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0] ?? '', argv.slice(1), { env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => { clearTimeout(timer); reject(e); });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal ? 128 : 1), stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
    });
    child.stdin.on('error', () => { /* a plugin that does not read stdin */ });
    child.stdin.end(stdin);
  });
}

export class CniExec {
  readonly path: readonly string[];
  readonly cacheDir: string;
  private readonly env: NodeJS.ProcessEnv;
  private readonly timeoutMs: number;
  private readonly libcniVersion: string;
  private readonly onCall: ((c: PluginCall) => void) | undefined;
  private readonly hostNetns: string | undefined;

  constructor(o: CniExecOptions) {
    this.path = o.path;
    this.cacheDir = o.cacheDir;
    this.env = o.env ?? process.env;
    this.timeoutMs = o.timeoutMs ?? 60_000;
    this.libcniVersion = o.libcniVersion ?? LIBCNI_CURRENT_VERSION;
    this.onCall = o.onCall;
    this.hostNetns = o.hostNetns;
  }

  /** RawExec.ExecPlugin: run, retrying "text file busy" up to 5 times a second apart; CniError on failure. */
  async exec(command: CniCommand, type: string, stdin: string, a: CallArgs): Promise<string> {
    const file = findInPath(type, this.path);
    const env = pluginEnv(command, a, this.env);
    const t0 = performance.now();
    let r: Raw | undefined;
    for (let i = 0; r === undefined; i++) {
      try {
        const argv = this.hostNetns === undefined ? [file] : ['nsenter', `--net=${this.hostNetns}`, file];
        r = await spawnOnce(argv, stdin, env, this.timeoutMs);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ETXTBSY' || i >= 5) throw e;
        await new Promise((res) => setTimeout(res, 1000));
      }
    }
    if (this.onCall) {
      const cni: Record<string, string> = {};
      for (const [k, v] of Object.entries(env)) if (k.startsWith('CNI_') && v !== undefined) cni[k] = v;
      this.onCall({ command, plugin: type, env: cni, stdin, ...r, ms: performance.now() - t0 });
    }
    if (r.code !== 0) throw pluginFailure(r.code, r.stdout, r.stderr);
    return r.stdout;
  }

  private callArgs(rt: RuntimeConf): CallArgs {
    const a: CallArgs = { containerId: rt.containerId, netns: rt.netns, ifName: rt.ifName, path: this.path };
    if (rt.args !== undefined) a.args = rt.args;
    return a;
  }

  /** AddNetworkList: each plugin in order, prevResult chained; the final result is cached. */
  async addList(list: NetConfList, rt: RuntimeConf): Promise<JsonObject> {
    let result: JsonObject | undefined;
    for (const p of list.plugins) {
      try {
        findInPath(p.type, this.path);
        const invalid = validateAddArgs(list.name, rt.containerId, rt.ifName);
        if (invalid) throw invalid;
        const out = await this.exec('ADD', p.type, pluginStdin(list, p, result, rt.capabilityArgs), this.callArgs(rt));
        result = parseResult(out, list.cniVersion);
      } catch (e) {
        throw chainError(e, p, 'add');
      }
    }
    await this.cacheAdd(list, rt, result ?? {});
    return result ?? {};
  }

  /** DelNetworkList: cached prevResult (≥ 0.4.0), plugins in reverse order, then the cache entry goes. */
  async delList(list: NetConfList, rt: RuntimeConf): Promise<void> {
    let prev: JsonObject | undefined;
    if (versionGte(list.cniVersion, '0.4.0')) {
      try {
        prev = await this.cachedResult(list, rt);
      } catch {
        await this.cacheDel(list.name, rt);
        prev = undefined;
      }
    }
    for (const p of [...list.plugins].reverse()) {
      try {
        await this.exec('DEL', p.type, pluginStdin(list, p, prev, rt.capabilityArgs), this.callArgs(rt));
      } catch (e) {
        throw chainError(e, p, 'delete');
      }
    }
    await this.cacheDel(list.name, rt);
  }

  /** CheckNetworkList: refused below 0.4.0, skipped with disableCheck; cached prevResult; in order. */
  async checkList(list: NetConfList, rt: RuntimeConf): Promise<void> {
    if (!versionGte(list.cniVersion, '0.4.0')) throw new Error(`configuration version "${list.cniVersion}" does not support the CHECK command`);
    if (list.disableCheck) return;
    const prev = await this.cachedResult(list, rt);
    for (const p of list.plugins) {
      await this.exec('CHECK', p.type, pluginStdin(list, p, prev, rt.capabilityArgs), this.callArgs(rt));
    }
  }

  /**
   * GCNetworkList: DEL every cached attachment of this network that is not valid, then (≥ 1.1.0) GC
   * each plugin with `cni.dev/valid-attachments` (and the misspelt `cni.dev/attachments` libcni adds).
   * Errors are collected, as libcni does.
   */
  async gcList(list: NetConfList, valid?: ReadonlyArray<{ containerID: string; ifname: string }>): Promise<void> {
    if (list.disableGC) return;
    const errors: Error[] = [];
    const keep = new Set((valid ?? []).map((v) => `${v.containerID}\0${v.ifname}`));
    for (const c of await this.cachedAttachments()) {
      if (c.networkName !== list.name || keep.has(`${c.containerId}\0${c.ifName}`)) continue;
      const rt: RuntimeConf = { containerId: c.containerId, netns: c.netns ?? '', ifName: c.ifName };
      if (c.cniArgs) rt.args = c.cniArgs;
      if (c.capabilityArgs) rt.capabilityArgs = c.capabilityArgs;
      await this.delList(list, rt).catch((e: unknown) => errors.push(new Error(`failed to delete stale attachment ${c.containerId} ${c.ifName}: ${String(e)}`)));
    }
    if (versionGte(list.cniVersion, '1.1.0')) {
      const extra: JsonObject = {};
      if (valid !== undefined) {
        const att = valid.map((v) => ({ containerID: v.containerID, ifname: v.ifname }));
        extra['cni.dev/valid-attachments'] = att;
        extra['cni.dev/attachments'] = att;
      }
      for (const p of list.plugins) {
        await this.exec('GC', p.type, listLevelStdin(list, p, extra), this.emptyArgs())
          .catch((e: unknown) => errors.push(e instanceof CniError ? e.withPrefix(`failed to GC plugin ${p.type}: `) : new Error(String(e))));
      }
    }
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) throw new AggregateError(errors, errors.map((e) => e.message).join('\n'));
  }

  /** GetStatusNetworkList: nothing below 1.1.0; the first failing plugin's error as is. */
  async statusList(list: NetConfList): Promise<void> {
    if (!versionGte(list.cniVersion, '1.1.0')) return;
    for (const p of list.plugins) await this.exec('STATUS', p.type, listLevelStdin(list, p), this.emptyArgs());
  }

  /** invoke.GetVersionInfo. */
  async versionInfo(type: string): Promise<VersionInfo> {
    try {
      const out = await this.exec('VERSION', type, JSON.stringify({ cniVersion: this.libcniVersion }), VERSION_PROBE_ARGS);
      return decodeVersionInfo(out);
    } catch (e) {
      if (e instanceof CniError && e.message === 'unknown CNI_COMMAND: VERSION') return { cniVersion: '0.1.0', supportedVersions: ['0.1.0'] };
      throw e;
    }
  }

  /** ValidateNetworkList: every plugin found and supporting the list's version; the enabled capabilities. */
  async validateList(list: NetConfList): Promise<string[]> {
    const errors: string[] = [];
    const caps = new Set<string>();
    for (const p of list.plugins) {
      try {
        const v = await this.versionInfo(p.type);
        const want = list.cniVersion === '' ? '0.1.0' : list.cniVersion;
        if (!v.supportedVersions.includes(want)) errors.push(`plugin ${p.type} does not support config version "${want}"`);
      } catch (e) {
        errors.push(e instanceof Error ? e.message : String(e));
      }
      for (const [c, on] of Object.entries(p.capabilities)) if (on) caps.add(c);
    }
    if (errors.length > 0) throw new Error(`[${errors.join(' ')}]`);
    return [...caps];
  }

  private emptyArgs(): CallArgs {
    return { containerId: '', netns: '', ifName: '', path: this.path };
  }

  // ---------------------------------------------------------------------------------- cache

  private cachePath(network: string, rt: Pick<RuntimeConf, 'containerId' | 'ifName'>): string {
    return join(this.cacheDir, 'results', cacheFileName(network, rt.containerId, rt.ifName));
  }

  private async cacheAdd(list: NetConfList, rt: RuntimeConf, result: JsonObject): Promise<void> {
    const e: CacheEntry = {
      kind: CACHE_KIND,
      containerId: rt.containerId,
      config: Buffer.from(list.bytes).toString('base64'),
      ifName: rt.ifName,
      networkName: list.name,
      result,
    };
    if (rt.netns !== '') e.netns = rt.netns;
    if (rt.args !== undefined && rt.args.length > 0) e.cniArgs = rt.args.map(([k, v]) => [k, v]);
    if (rt.capabilityArgs !== undefined && Object.keys(rt.capabilityArgs).length > 0) e.capabilityArgs = rt.capabilityArgs;
    await mkdir(join(this.cacheDir, 'results'), { recursive: true, mode: 0o700 });
    await writeFile(this.cachePath(list.name, rt), JSON.stringify(e), { mode: 0o600 });
  }

  private async cacheDel(network: string, rt: RuntimeConf): Promise<void> {
    let p: string;
    try {
      p = this.cachePath(network, rt);
    } catch {
      return;
    }
    await rm(p, { force: true });
  }

  /** The cached result converted to the list's version; undefined when nothing is cached. */
  async cachedResult(list: NetConfList, rt: Pick<RuntimeConf, 'containerId' | 'ifName'>): Promise<JsonObject | undefined> {
    let text: string;
    try {
      text = await readFile(this.cachePath(list.name, rt), 'utf8');
    } catch {
      return undefined;
    }
    const e = JSON.parse(text) as Partial<CacheEntry> & JsonObject;
    // A legacy cache file is the bare result.
    const result = e.kind === CACHE_KIND ? e.result : (e as JsonObject);
    if (result === undefined) return undefined;
    return convertResult(result, list.cniVersion);
  }

  /** GetCachedAttachments: every well-formed cniCacheV1 entry. */
  async cachedAttachments(): Promise<CacheEntry[]> {
    const dir = join(this.cacheDir, 'results');
    let names: string[];
    try {
      names = (await readdir(dir)).sort();
    } catch {
      return [];
    }
    const out: CacheEntry[] = [];
    for (const n of names) {
      try {
        const e = JSON.parse(await readFile(join(dir, n), 'utf8')) as Partial<CacheEntry>;
        if (e.kind === CACHE_KIND && e.ifName && e.networkName && e.containerId !== undefined) out.push(e as CacheEntry);
      } catch {
        /* unreadable entries are skipped, as libcni does */
      }
    }
    return out;
  }
}

function chainError(e: unknown, p: PluginConf, verb: 'add' | 'delete'): Error {
  const prefix = `plugin ${pluginDescription(p)} failed (${verb}): `;
  if (e instanceof CniError) return e.withPrefix(prefix);
  return new Error(`${prefix}${e instanceof Error ? e.message : String(e)}`);
}
