// One-call set-up for e2e tests: namespace + plugin + dockerd + busybox image, all owned by a
// Scope that the test's after hook closes (dockerd first, then plugins, then namespaces, then files).
import { makeTempDir, testScope, type Scope } from './cleanup.js';
import { buildBusyboxImage, startDockerd, type DockerResult, type Dockerd } from './dockerd.js';
import { createNetns, ipLinks, iptablesSave, type IpLink, type Netns } from './netns.js';
import { randomPluginName, startPlugin, type Plugin } from './plugin.js';
import { describeRun } from './proc.js';

export interface StackOptions {
  pluginName?: string;
  /** Default: a fresh temp dir owned by the stack (kept across restartPlugin()). */
  stateDir?: string;
  extraPluginArgs?: readonly string[];
  extraDockerdArgs?: readonly string[];
  /** Build bb:latest (default true). */
  image?: boolean;
  /** Plugin launcher override (helper self-tests). */
  pluginBin?: string;
  /** The plugin's --socket-dir (default /run/docker/plugins, where dockerd looks). */
  pluginSocketDir?: string;
}

export interface Stack {
  readonly scope: Scope;
  readonly ns: Netns;
  /** The current dockerd (changes after restartDockerd()). */
  readonly dockerd: Dockerd;
  /** The current plugin instance (changes after restartPlugin()). */
  readonly plugin: Plugin;
  readonly pluginName: string;
  readonly stateDir: string;
  docker(args: readonly string[]): Promise<DockerResult>;
  /** docker ...args; on failure throws with stderr, the plugin log tail and dockerd's relevant lines. */
  dockerOk(args: readonly string[]): Promise<string>;
  /**
   * Start a new plugin process with the same name and state dir (the old one should be dead).
   * Readiness is probed with GetCapabilities, not Plugin.Activate: dockerd does not re-activate a
   * restarted plugin, so the test sees the plugin exactly as dockerd would.
   */
  restartPlugin(extraArgs?: readonly string[]): Promise<Plugin>;
  /**
   * Start a new dockerd on the dirs of the current one, which must have exited (dockerd.crash()),
   * with the same arguments: it takes over the containerd and containers the old one left.
   */
  restartDockerd(): Promise<Dockerd>;
  /** Plugin log tail + dockerd log lines about the plugin, for assertion messages. */
  explain(): string;
}

export async function startStack(t: { after(fn: () => unknown): void }, opts: StackOptions = {}): Promise<Stack> {
  const scope = testScope(t);
  const pluginName = opts.pluginName ?? randomPluginName();
  const ns = scope.add(await createNetns());
  const stateDir = opts.stateDir ?? scope.add(await makeTempDir('bbt-state-')).path;
  const launch = (extraArgs: readonly string[] | undefined, readyProbe: 'activate' | 'capabilities') => startPlugin({
    ns,
    name: pluginName,
    stateDir,
    readyProbe,
    ...(extraArgs ? { extraArgs } : {}),
    ...(opts.pluginBin ? { bin: opts.pluginBin } : {}),
    ...(opts.pluginSocketDir ? { socketDir: opts.pluginSocketDir } : {}),
  });
  // The plugin is started first: dockerd only looks it up when a network needs it.
  let plugin = scope.add(await launch(opts.extraPluginArgs, 'activate'));
  // If the current plugin is dead at clean-up time, dockerd is torn down by force (see forceStopIf).
  const dockerdOpts = {
    forceStopIf: () => plugin.exited,
    ...(opts.extraDockerdArgs ? { extraArgs: opts.extraDockerdArgs } : {}),
  };
  let dockerd = scope.add(await startDockerd(ns, dockerdOpts));
  if (opts.image ?? true) await buildBusyboxImage(dockerd);

  const explain = (): string => {
    const relevant = dockerd.logTail(400).split('\n')
      .filter((l) => l.includes(pluginName) || /remote: |NetworkDriver\.|level=(error|fatal)/.test(l))
      .slice(-25);
    return `--- plugin log tail (${plugin.logPath}) ---\n${plugin.logTail(60)}\n`
      + `--- dockerd log, lines about the plugin/errors ---\n${relevant.join('\n')}`;
  };
  return {
    scope,
    ns,
    get dockerd() { return dockerd; },
    get plugin() { return plugin; },
    pluginName,
    stateDir,
    docker: (args) => dockerd.docker(args),
    dockerOk: async (args) => {
      const r = await dockerd.docker(args);
      if (r.code !== 0) {
        throw new Error(`${describeRun(['docker', ...args], { ...r, signal: null })}\n${explain()}`);
      }
      return r.stdout;
    },
    restartPlugin: async (extraArgs) => {
      plugin = scope.add(await launch(extraArgs ?? opts.extraPluginArgs, 'capabilities'));
      return plugin;
    },
    restartDockerd: async () => {
      dockerd = scope.add(await startDockerd(ns, { ...dockerdOpts, restartOf: dockerd }));
      return dockerd;
    },
    explain,
  };
}

// ---------------------------------------------------------------------------------------------
// Queries used by several tests

/** A container's address on a network (`docker inspect`), e.g. "198.18.20.2"; "" when not attached. */
export async function containerIp(s: Stack, container: string, network: string): Promise<string> {
  const out = await s.dockerOk(['inspect', '-f', '{{json .NetworkSettings.Networks}}', container]);
  const nets = JSON.parse(out) as Record<string, { IPAddress?: string } | undefined>;
  return nets[network]?.IPAddress ?? '';
}

export interface Leftovers {
  /** veth or bridge links in the namespace (names); links in `ignoreLinks` are not counted. */
  links: string[];
  /** iptables-save rule lines (-A ...) mentioning one of the needles. */
  rules: string[];
}

/**
 * What remains in `ns` that a driver should have removed: any veth/bridge link (except
 * `ignoreLinks`), and any iptables rule line mentioning one of `needles` (container addresses,
 * subnets, bridge names). Chain declarations (":CHAIN ...") are not counted.
 */
export async function kernelLeftovers(ns: Netns, needles: readonly string[], ignoreLinks: readonly string[] = []): Promise<Leftovers> {
  const links = (await ipLinks(ns)).filter((l: IpLink) =>
    !ignoreLinks.includes(l.ifname)
    && (l.ifname.startsWith('veth') || l.linkinfo?.info_kind === 'veth' || l.linkinfo?.info_kind === 'bridge'));
  const wanted = needles.filter((n) => n !== '');
  const rules = (await iptablesSave(ns)).filter((line) =>
    line.startsWith('-A ') && wanted.some((n) => mentions(line, n)));
  return { links: links.map((l) => `${l.ifname} (${l.linkinfo?.info_kind ?? '?'})`), rules };
}

/** Token-wise match so that 198.18.20.2 does not match 198.18.20.25. */
function mentions(line: string, needle: string): boolean {
  return line.split(/[\s,]+/).some((tok) => tok === needle || tok.startsWith(`${needle}/`) || tok.startsWith(`${needle}:`));
}

/** veth links currently in `ns` (host sides of endpoints), except those named in `ignore`. */
export async function vethLinks(ns: Netns, ignore: readonly string[] = []): Promise<IpLink[]> {
  return (await ipLinks(ns)).filter((l) => l.linkinfo?.info_kind === 'veth' && !ignore.includes(l.ifname));
}
