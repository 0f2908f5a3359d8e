// CNI spec versions: which ones batchbridge speaks and which commands each allows. The rules
// are libcni's (pkg/version, pkg/skel): a config's cniVersion must be one of the supported
// versions exactly; CHECK needs 0.4.0 or later, GC and STATUS 1.1.0 or later; a missing
// cniVersion means 0.1.0. 0.1.0 and 0.2.0 are not supported: their results have another shape
// (ip4/ip6) and every runtime of the last years sends 0.3.1 or later.
import { CniDecodeError, CniVersionError } from '../errors.js';

export const SUPPORTED_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;
export type CniVersion = (typeof SUPPORTED_VERSIONS)[number];
/** What VERSION reports as its own cniVersion (the forwarder's constant answer is the same). */
export const CURRENT_VERSION: CniVersion = '1.1.0';

export type CniCommand = 'ADD' | 'DEL' | 'CHECK' | 'GC' | 'STATUS' | 'VERSION';
export const CNI_COMMANDS: readonly CniCommand[] = ['ADD', 'DEL', 'CHECK', 'GC', 'STATUS', 'VERSION'];

type Triple = readonly [number, number, number];

/** libcni's ParseVersion: "" is 0.1.0; up to three dot-separated integers. */
export function parseVersion(text: string): Triple {
  if (text === '') return [0, 1, 0];
  const parts = text.split('.');
  if (parts.length > 3 || parts.some((p) => !/^\d{1,9}$/.test(p))) {
    throw new CniDecodeError(`invalid cniVersion ${JSON.stringify(text.slice(0, 40))}: expected a version like "1.0.0"`);
  }
  const [a = 0, b = 0, c = 0] = parts.map(Number);
  return [a, b, c];
}

export function versionAtLeast(version: string, other: string): boolean {
  const [a1, b1, c1] = parseVersion(version);
  const [a2, b2, c2] = parseVersion(other);
  if (a1 !== a2) return a1 > a2;
  if (b1 !== b2) return b1 > b2;
  return c1 >= c2;
}

const MIN_FOR: Partial<Record<CniCommand, CniVersion>> = { CHECK: '0.4.0', GC: '1.1.0', STATUS: '1.1.0' };

/** The config's cniVersion, checked for the command; the result is answered in this version. */
export function negotiateVersion(raw: unknown, command: CniCommand): CniVersion {
  if (raw !== undefined && raw !== null && typeof raw !== 'string') {
    throw new CniDecodeError(`cniVersion must be a string, got ${JSON.stringify(raw).slice(0, 40)}`);
  }
  const text = raw ?? '';
  parseVersion(text);
  const min = MIN_FOR[command];
  if (min !== undefined && !versionAtLeast(text, min)) {
    throw new CniVersionError(`config version ${JSON.stringify(text)} does not allow ${command} (it needs ${min} or later)`);
  }
  const found = SUPPORTED_VERSIONS.find((v) => v === text);
  if (found === undefined) {
    throw new CniVersionError(
      `incompatible CNI versions: config is ${JSON.stringify(text)}, batchbridge-cni supports ${SUPPORTED_VERSIONS.join(', ')}`,
    );
  }
  return found;
}

/** The VERSION answer (the forwarder answers VERSION itself; this is for a daemon-side caller). */
export function versionAnswer(): string {
  return `${JSON.stringify({ cniVersion: CURRENT_VERSION, supportedVersions: SUPPORTED_VERSIONS })}\n`;
}
