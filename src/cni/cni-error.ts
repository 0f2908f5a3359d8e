// The one place where an error becomes a CNI answer: the spec's error structure on stdout
// ({cniVersion, code, msg, details}) and a non-zero exit status. Codes 1-7 and 11 are the
// spec's; 50 answers STATUS when the daemon cannot serve ADDs; 100 and up are batchbridge's
// own (docs/cni.md lists them). containerd shows `<msg>; <details>`, Podman
// `<msg>: <details>`, so msg carries the whole sentence and details only what a plugin added.
import { BbError, CniDelegateError, type ErrorKind } from '../errors.js';
import { CURRENT_VERSION } from './version.js';

export const CNI_CODE = {
  incompatibleVersion: 1,
  unsupportedField: 2,
  unknownContainer: 3,
  invalidEnvironment: 4,
  ioFailure: 5,
  decodeFailure: 6,
  invalidConfig: 7,
  tryAgainLater: 11,
  notAvailable: 50,
  limitedConnectivity: 51,
  internal: 100,
  networkConflict: 101,
  attachmentExists: 102,
  portAllocated: 103,
  bridgeFull: 104,
  kernel: 105,
  checkFailed: 106,
  ipamFailed: 107,
  addressInUse: 108,
  addressesExhausted: 109,
} as const;

/** Every error code of src/errors.ts → its CNI code (test/unit/cni-error.test.ts keeps it whole). */
export const CNI_CODE_OF: Readonly<Record<string, number>> = {
  BB_ERR_INVALID_REQUEST: CNI_CODE.invalidConfig,
  BB_ERR_INVALID_OPTION: CNI_CODE.invalidConfig,
  BB_ERR_INVALID_ADDRESS: CNI_CODE.invalidConfig,
  BB_ERR_INVALID_PORT: CNI_CODE.invalidConfig,
  BB_ERR_NETWORK_EXISTS: CNI_CODE.networkConflict,
  BB_ERR_NETWORK_CONFLICT: CNI_CODE.networkConflict,
  BB_ERR_NETWORK_NOT_FOUND: CNI_CODE.unknownContainer,
  BB_ERR_ENDPOINT_EXISTS: CNI_CODE.attachmentExists,
  BB_ERR_ADDRESS_IN_USE: CNI_CODE.addressInUse,
  BB_ERR_ADDRESSES_EXHAUSTED: CNI_CODE.addressesExhausted,
  BB_ERR_ENDPOINT_NOT_FOUND: CNI_CODE.unknownContainer,
  BB_ERR_BRIDGE_FULL: CNI_CODE.bridgeFull,
  BB_ERR_PORT_ALLOCATED: CNI_CODE.portAllocated,
  BB_ERR_NOT_SUPPORTED: CNI_CODE.unsupportedField,
  BB_ERR_OVERLOADED: CNI_CODE.tryAgainLater,
  BB_ERR_SHUTTING_DOWN: CNI_CODE.tryAgainLater,
  BB_ERR_KERNEL: CNI_CODE.kernel,
  BB_ERR_STATE_DIR_UNSAFE: CNI_CODE.internal,
  BB_ERR_INSTANCE_CONFLICT: CNI_CODE.internal,
  BB_ERR_BOOKS_VERSION: CNI_CODE.internal,
  BB_ERR_CNI_VERSION: CNI_CODE.incompatibleVersion,
  BB_ERR_CNI_UNSUPPORTED_FIELD: CNI_CODE.unsupportedField,
  BB_ERR_CNI_UNKNOWN_CONTAINER: CNI_CODE.unknownContainer,
  BB_ERR_CNI_ENV: CNI_CODE.invalidEnvironment,
  BB_ERR_CNI_IO: CNI_CODE.ioFailure,
  BB_ERR_CNI_DECODE: CNI_CODE.decodeFailure,
  BB_ERR_CNI_CONFIG: CNI_CODE.invalidConfig,
  BB_ERR_CNI_CHECK_FAILED: CNI_CODE.checkFailed,
  BB_ERR_CNI_DELEGATE: CNI_CODE.ipamFailed,
};

/** For a BbError whose code is not in the table (added later): by its kind. */
const CNI_CODE_OF_KIND: Readonly<Record<ErrorKind, number>> = {
  'bad-request': CNI_CODE.invalidConfig,
  conflict: CNI_CODE.networkConflict,
  'not-found': CNI_CODE.unknownContainer,
  'not-supported': CNI_CODE.unsupportedField,
  unavailable: CNI_CODE.tryAgainLater,
  kernel: CNI_CODE.kernel,
  // raised before any socket listens; never reaches a runtime, but the table must be whole
  setup: CNI_CODE.internal,
};

export interface CniErrorBody {
  readonly cniVersion: string;
  readonly code: number;
  readonly msg: string;
  readonly details?: string;
}

export interface RenderOptions {
  /** the version of the request, when it got that far */
  readonly cniVersion?: string;
  /** STATUS reports "cannot serve ADDs" as 50 instead of 11 */
  readonly command?: string;
}

export function cniErrorBody(err: unknown, opts: RenderOptions = {}): CniErrorBody {
  const cniVersion = opts.cniVersion ?? CURRENT_VERSION;
  let code: number;
  let msg: string;
  let details = '';
  if (err instanceof CniDelegateError) {
    code = err.cniCode > 0 ? err.cniCode : CNI_CODE.ipamFailed;
    msg = err.message;
    details = err.details;
  } else if (err instanceof BbError) {
    code = CNI_CODE_OF[err.code] ?? CNI_CODE_OF_KIND[err.kind];
    msg = err.message;
  } else {
    code = CNI_CODE.internal;
    msg = `internal error: ${err instanceof Error ? err.message : String(err)}`;
  }
  if (opts.command === 'STATUS' && code === CNI_CODE.tryAgainLater) code = CNI_CODE.notAvailable;
  return { cniVersion, code, msg, ...(details !== '' ? { details } : {}) };
}

export interface CniErrorAnswer {
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** A failed call: exit status 1, the error structure on stdout. */
export function renderCniError(err: unknown, opts: RenderOptions = {}): CniErrorAnswer {
  return { exitCode: 1, stdout: `${JSON.stringify(cniErrorBody(err, opts))}\n`, stderr: '' };
}
