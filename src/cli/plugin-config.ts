// The managed plugin's config.json (Docker's "plugin config version 1 of plugin v2"): what the
// plugin declares it needs. Pure, so the privileges it asks for are pinned by unit tests; the
// reasons for each entry are in docs/install.md ("What the managed plugin asks for").

/** Where things live inside the plugin's rootfs. */
export const PLUGIN_PATHS = {
  project: '/opt/batchbridge',
  /** Mount destination of the books (the host directory is the `state` mount's source). */
  state: '/var/lib/batchbridge',
  /** dockerd bind-mounts /run/docker/plugins/<plugin id> here and looks for the socket in it. */
  socketDir: '/run/docker/plugins',
  /**
   * The host's /proc/sys/net is bind-mounted at <sysctlDir>/net: inside a managed plugin /proc/sys
   * is read-only, and this writable view of the network sysctls spares the plugin CAP_SYS_ADMIN
   * (which a remount of /proc/sys would need).
   */
  sysctlDir: '/run/batchbridge-sysctl',
} as const;

/** The default source of the `state` mount: the same books a systemd or hand-started plugin uses. */
export const DEFAULT_STATE_SOURCE = '/var/lib/batchbridge';
/** The env var `docker plugin set NAME BB_LOG_LEVEL=debug` changes; plugin-entry.ts reads it. */
export const LOG_LEVEL_ENV = 'BB_LOG_LEVEL';

export interface PluginMount {
  readonly name: string;
  readonly description: string;
  readonly source: string;
  readonly destination: string;
  readonly type: 'bind';
  readonly options: readonly string[];
  readonly settable?: readonly ['source'];
}

export interface PluginConfig {
  readonly description: string;
  readonly documentation: string;
  readonly entrypoint: readonly string[];
  readonly workdir: string;
  readonly interface: { readonly types: readonly ['docker.networkdriver/1.0']; readonly socket: string };
  readonly network: { readonly type: 'host' };
  readonly linux: { readonly capabilities: readonly string[] };
  readonly mounts: readonly PluginMount[];
  readonly env: ReadonlyArray<{ readonly name: string; readonly description: string; readonly settable: readonly ['value']; readonly value: string }>;
  readonly args: { readonly name: 'args'; readonly description: string; readonly settable: readonly ['value']; readonly value: readonly string[] };
}

export interface PluginConfigOptions {
  /** Driver and socket name (serve --name). */
  readonly name: string;
  /** The node binary inside the rootfs (the host's path, copied as is). */
  readonly nodePath: string;
}

export function pluginConfig(o: PluginConfigOptions): PluginConfig {
  return {
    description: 'batchbridge: a bridge network driver that batches the kernel work of many endpoints',
    documentation: 'docs/install.md in the batchbridge sources',
    // Node runs the entrypoint directly (no shell): plugin-entry.js only turns BB_LOG_LEVEL into
    // --log-level, then runs `serve` with these flags and the settable `args` after them.
    entrypoint: [
      o.nodePath, `${PLUGIN_PATHS.project}/dist/src/cli/plugin-entry.js`, 'serve',
      '--name', o.name,
      '--state-dir', PLUGIN_PATHS.state,
      '--socket-dir', PLUGIN_PATHS.socketDir,
      '--sysctl-dir', PLUGIN_PATHS.sysctlDir,
    ],
    workdir: PLUGIN_PATHS.project,
    interface: { types: ['docker.networkdriver/1.0'], socket: `${o.name}.sock` },
    // The bridges, veths and rules must be in dockerd's network namespace.
    network: { type: 'host' },
    // On top of Docker's default set (which already holds CAP_NET_RAW and CAP_NET_BIND_SERVICE):
    // links, addresses, iptables and conntrack need CAP_NET_ADMIN, nothing else.
    linux: { capabilities: ['CAP_NET_ADMIN'] },
    mounts: [
      {
        name: 'state',
        description: 'host directory holding the books (SQLite); survives plugin restarts, re-creation and upgrades',
        source: DEFAULT_STATE_SOURCE,
        destination: PLUGIN_PATHS.state,
        type: 'bind',
        options: ['rbind', 'rw'],
        settable: ['source'],
      },
      {
        name: 'sysctl-net',
        description: "a writable view of the network sysctls (ip_forward, the bridges' route_localnet and IPv6 settings); /proc/sys is read-only in a plugin",
        source: '/proc/sys/net',
        destination: `${PLUGIN_PATHS.sysctlDir}/net`,
        type: 'bind',
        options: ['rbind', 'rw'],
      },
    ],
    env: [
      { name: LOG_LEVEL_ENV, description: 'log level: fatal, error, warn, info, debug, trace or silent', settable: ['value'], value: 'info' },
    ],
    args: { name: 'args', description: 'extra `batchbridge serve` flags, e.g. "--batch-max 128"', settable: ['value'], value: [] },
  };
}
