// The systemd unit that runs the plugin as a service: a pure renderer and the checks on the paths
// that go into it. `batchbridge install-service` writes its output; packaging/systemd/
// batchbridge.service is its output for the defaults (a unit test keeps the two equal).
import { isAbsolute, normalize, relative } from 'node:path';

export interface UnitSettings {
  /** driver name: unit <name>.service, socket <socketDir>/<name>.sock */
  readonly name: string;
  /** absolute path of the node binary (run directly, not through npx or a shell) */
  readonly node: string;
  /** absolute path of bin/batchbridge.js */
  readonly bin: string;
  readonly stateDir: string;
  readonly socketDir: string;
  /** the CNI socket: absent for serve's default, a path for --cni-socket, null for --no-cni */
  readonly cniSocket?: string | null;
}

/** The node and bin/ paths of the unit shipped in packaging/systemd/ (install-service uses the real ones). */
export const PACKAGED_PATHS = { node: '/usr/bin/node', bin: '/opt/batchbridge/bin/batchbridge.js' } as const;

export const UNIT_DEFAULTS = {
  name: 'batchbridge',
  stateDir: '/var/lib/batchbridge',
  socketDir: '/run/docker/plugins',
  unitDir: '/etc/systemd/system',
} as const;

// Paths the sandbox makes unusable: read-only (ProtectSystem=full), hidden or read-only
// (ProtectHome=), private to the service (PrivateTmp=), or kernel API file systems.
const READ_ONLY = ['/usr', '/etc', '/boot', '/efi'];
const HOMES = ['/home', '/root', '/run/user'];
const PRIVATE = ['/tmp', '/var/tmp'];
const API = ['/proc', '/sys', '/dev'];

function under(path: string, dirs: readonly string[]): string | undefined {
  return dirs.find((d) => path === d || path.startsWith(`${d}/`));
}

/**
 * Why `path` cannot be used as the unit's `what` (an error message), or null. ExecStart= and the
 * directory settings are written without quoting: only characters that systemd reads literally
 * (no whitespace, quotes, backslashes, `%` specifiers or `$` variables) are accepted.
 */
export function pathProblem(what: string, path: string, writable: boolean): string | null {
  if (!isAbsolute(path)) return `${what} must be an absolute path, got ${JSON.stringify(path)}`;
  if (!/^[A-Za-z0-9_./+@:-]+$/.test(path)) {
    return `${what} may contain only letters, digits and _ . / + @ : - (systemd would read the others as quoting, specifiers or variables), got ${JSON.stringify(path)}`;
  }
  if (normalize(path) !== path || (path.endsWith('/') && path !== '/')) return `${what} must be a normalized path without a trailing slash, got ${JSON.stringify(path)}`;
  if (!writable) return null;
  const bad = under(path, [...READ_ONLY, ...HOMES, ...PRIVATE, ...API]);
  if (bad === undefined) return path === '/' ? `${what} cannot be /` : null;
  const why = HOMES.includes(bad)
    ? 'hides (ProtectHome=)'
    : PRIVATE.includes(bad)
      ? 'makes private to the service (PrivateTmp=)'
      : READ_ONLY.includes(bad)
        ? 'makes read-only (ProtectSystem=full)'
        : 'cannot write (a kernel API file system)';
  return `${what} ${path} is under ${bad}, which the service's sandbox ${why}`;
}

/** The first problem with the settings, or null when they can go into a unit. */
export function settingsProblem(s: UnitSettings): string | null {
  return (
    pathProblem('--node', s.node, false) ??
    pathProblem('--bin', s.bin, false) ??
    pathProblem('--state-dir', s.stateDir, true) ??
    pathProblem('--socket-dir', s.socketDir, true) ??
    (typeof s.cniSocket === 'string' ? pathProblem('--cni-socket', s.cniSocket, true) : null)
  );
}

/** `dir` relative to `base` when it lies strictly below it (for StateDirectory=/RuntimeDirectory=). */
function below(base: string, dir: string): string | null {
  const rel = relative(base, dir);
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel) ? rel : null;
}

/** The command line the unit runs. */
export function serveCommand(s: UnitSettings): string[] {
  const cni = s.cniSocket === undefined ? [] : s.cniSocket === null ? ['--no-cni'] : ['--cni-socket', s.cniSocket];
  return [s.node, s.bin, 'serve', '--name', s.name, '--state-dir', s.stateDir, '--socket-dir', s.socketDir, ...cni];
}

export function renderUnit(s: UnitSettings): string {
  const state = below('/var/lib', s.stateDir);
  const runtime = below('/run', s.socketDir);
  // Node or the code under a home directory must stay readable; nothing is written there.
  const homeCode = under(s.node, HOMES) !== undefined || under(s.bin, HOMES) !== undefined;
  const exec = serveCommand(s).join(' ');
  const lines = [
    `# batchbridge Docker network driver plugin "${s.name}", as \`batchbridge install-service\` writes it.`,
    '# Other serve flags: `systemctl edit` a drop-in with an empty ExecStart= and a new one.',
    '[Unit]',
    `Description=batchbridge Docker network driver plugin (${s.name})`,
    '# Up before dockerd, which asks remote drivers about its networks as it starts; pulled in',
    '# by docker.service too (WantedBy=), so restarting docker brings the plugin back.',
    'Before=docker.service',
    '',
    '[Service]',
    'Type=simple',
    `ExecStart=${exec}`,
    'Restart=on-failure',
    'RestartSec=1',
    '# SIGTERM to node alone: it drains in-flight batches through its ip and iptables-restore',
    '# sessions, which must not be signalled meanwhile; whatever is left is SIGKILLed after it.',
    'KillMode=mixed',
    'TimeoutStopSec=30',
    ...(state !== null ? [`StateDirectory=${state}`, 'StateDirectoryMode=0700'] : []),
    ...(runtime !== null ? ['# The socket directory is shared with dockerd and other plugins: never removed.'] : []),
    ...(runtime !== null ? [`RuntimeDirectory=${runtime}`, 'RuntimeDirectoryMode=0755', 'RuntimeDirectoryPreserve=yes'] : []),
    'UMask=0077',
    '# Links, addresses, iptables (nf_tables through netlink, legacy through raw sockets) and',
    '# conntrack; root owns the files it writes (the books, /proc/sys/net), so no other capability.',
    'CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW',
    'NoNewPrivileges=yes',
    'ProtectSystem=full',
    `ProtectHome=${homeCode ? 'read-only' : 'yes'}`,
    'PrivateTmp=yes',
    'PrivateDevices=yes',
    '# No ProtectKernelTunables=: the plugin writes net.ipv4.ip_forward and per-bridge sysctls.',
    'ProtectKernelModules=yes',
    'ProtectKernelLogs=yes',
    'ProtectControlGroups=yes',
    'ProtectClock=yes',
    'ProtectHostname=yes',
    'RestrictAddressFamilies=AF_UNIX AF_NETLINK AF_INET AF_INET6',
    'RestrictNamespaces=yes',
    'RestrictRealtime=yes',
    'RestrictSUIDSGID=yes',
    'LockPersonality=yes',
    'SystemCallArchitectures=native',
    '# No MemoryDenyWriteExecute=: V8 compiles code at run time.',
    '',
    '[Install]',
    'WantedBy=multi-user.target docker.service',
  ];
  return `${lines.join('\n')}\n`;
}
