// What `batchbridge cni-install` writes: the forwarder with its settings patched in, and a
// conflist. Pure functions; cli-install.ts does the files.
//
// The forwarder cannot read its config (it parses no JSON, and the runtime passes it nothing
// else), so the socket path and the ADD wait live in a fixed-size slot compiled into the binary
// (struct bb_slot in batchbridge-cni.c): a 32-byte magic, 108 bytes of socket path, 12 bytes of
// decimal milliseconds, NUL-padded. cni-install rewrites the slot in the installed copy. An
// environment variable (BATCHBRIDGE_CNI_SOCKET, BATCHBRIDGE_CNI_ADD_WAIT_MS) overrides the slot,
// which tests use; runtimes pass their own environment on to plugins, so it works there too.
import { negotiateVersion } from './version.js';
import { parseNetConfig, DAEMON_IPAM_TYPE } from './net-config.js';

export const SLOT_MAGIC = Buffer.from('batchbridge-cni:slot:v1:7d3e91a\0', 'latin1');
const SOCKET_BYTES = 108;
const WAIT_BYTES = 12;
export const MAX_ADD_WAIT_MS = 600_000;
export const DEFAULT_ADD_WAIT_MS = 5_000;

export interface ForwarderSettings {
  readonly socketPath: string;
  readonly addWaitMs: number;
}

function slotOffset(binary: Buffer): number {
  const at = binary.indexOf(SLOT_MAGIC);
  if (at < 0) throw new Error('the forwarder binary has no settings slot (not a batchbridge-cni build?)');
  if (binary.indexOf(SLOT_MAGIC, at + 1) >= 0) throw new Error('the forwarder binary has more than one settings slot');
  if (at + SLOT_MAGIC.length + SOCKET_BYTES + WAIT_BYTES > binary.length) throw new Error('the forwarder binary is truncated');
  return at + SLOT_MAGIC.length;
}

export function checkSocketPath(p: string): string {
  if (!p.startsWith('/') || Buffer.byteLength(p) >= SOCKET_BYTES || p.includes('\0')) {
    throw new Error(`the socket must be an absolute path of at most ${SOCKET_BYTES - 1} bytes, got ${JSON.stringify(p)}`);
  }
  return p;
}

/** A copy of the binary with the settings written into its slot. */
export function patchSlot(binary: Buffer, s: ForwarderSettings): Buffer {
  checkSocketPath(s.socketPath);
  if (!Number.isInteger(s.addWaitMs) || s.addWaitMs < 0 || s.addWaitMs > MAX_ADD_WAIT_MS) throw new Error(`the ADD wait must be 0 to ${MAX_ADD_WAIT_MS} ms, got ${s.addWaitMs}`);
  const out = Buffer.from(binary);
  const at = slotOffset(out);
  out.fill(0, at, at + SOCKET_BYTES + WAIT_BYTES);
  out.write(s.socketPath, at, 'utf8');
  out.write(String(s.addWaitMs), at + SOCKET_BYTES, 'latin1');
  return out;
}

export function readSlot(binary: Buffer): ForwarderSettings {
  const at = slotOffset(binary);
  const field = (from: number, len: number): string => {
    const b = binary.subarray(from, from + len);
    const nul = b.indexOf(0);
    return b.toString('utf8', 0, nul < 0 ? len : nul);
  };
  return { socketPath: field(at, SOCKET_BYTES), addWaitMs: Number(field(at + SOCKET_BYTES, WAIT_BYTES)) };
}

export interface ConflistOptions {
  readonly name: string;
  readonly cniVersion: string;
  readonly socketPath: string;
  readonly subnet: string;
  readonly gateway?: string;
  readonly subnet6?: string;
  readonly gateway6?: string;
  readonly bridge?: string;
  readonly mtu?: number;
  readonly ipMasq: boolean;
  readonly hairpinMode: boolean;
  /** "batchbridge" (the daemon allocates) or an IPAM plugin to delegate to */
  readonly ipam: string;
  /** host-local's dataDir, for a delegated host-local */
  readonly ipamDataDir?: string;
}

/**
 * The conflist for one network: the batchbridge-cni entry, with the capabilities runtimes pass
 * (portMappings, ips, mac). Checked by the same parser the daemon runs on every call.
 */
export function buildConflist(o: ConflistOptions): Record<string, unknown> {
  const range = (subnet: string, gateway: string | undefined): Record<string, string> => ({ subnet, ...(gateway !== undefined ? { gateway } : {}) });
  const ranges = [[range(o.subnet, o.gateway)], ...(o.subnet6 !== undefined ? [[range(o.subnet6, o.gateway6)]] : [])];
  const ipam: Record<string, unknown> = { type: o.ipam, ranges };
  if (o.ipamDataDir !== undefined) {
    if (o.ipam === DAEMON_IPAM_TYPE) throw new Error('--ipam-data-dir is for a delegated IPAM plugin (host-local); the daemon keeps its own books');
    ipam.dataDir = o.ipamDataDir;
  }
  const plugin: Record<string, unknown> = {
    type: 'batchbridge-cni',
    socket: checkSocketPath(o.socketPath),
    ...(o.bridge !== undefined ? { bridge: o.bridge } : {}),
    isGateway: true,
    isDefaultGateway: true,
    ipMasq: o.ipMasq,
    ...(o.mtu !== undefined ? { mtu: o.mtu } : {}),
    hairpinMode: o.hairpinMode,
    ipam,
    capabilities: { portMappings: true, ips: true, mac: true },
  };
  negotiateVersion(o.cniVersion, 'ADD');
  // libcni hands each plugin its entry with the list's name and cniVersion put in.
  parseNetConfig({ ...plugin, name: o.name, cniVersion: o.cniVersion });
  return { cniVersion: o.cniVersion, name: o.name, plugins: [plugin] };
}

/**
 * containerd's CRI uses the first file of its conf_dir in name order; Podman finds networks by
 * the name inside. "10-" sorts before most distribution defaults (Podman's 87-podman*.conflist).
 */
export function conflistFileName(name: string): string {
  return `10-${name}.conflist`;
}
