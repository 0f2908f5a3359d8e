// Every error the plugin can answer with. Each has a stable code (docs/errors.md lists them; a
// unit test keeps the two in step) and a kind that decides the HTTP status in render-error.ts.
// Over the remote protocol dockerd only ever shows the message, so messages follow the built-in
// driver's wording where one exists.

export type ErrorKind =
  | 'bad-request' // the request itself is wrong: malformed, impossible values
  | 'conflict' // clashes with something that exists (network, endpoint, port)
  | 'not-found' // refers to something we do not know
  | 'not-supported' // a call this driver does not implement
  | 'unavailable' // we are shedding load or shutting down
  | 'kernel' // the kernel refused the work
  | 'setup'; // batchbridge refuses to start or to open its books (unsafe state dir, another instance)

export abstract class BbError extends Error {
  abstract readonly code: string;
  abstract readonly kind: ErrorKind;
  override name = 'BbError';
}

function defineError(code: string, kind: ErrorKind) {
  return class extends BbError {
    readonly code = code;
    readonly kind = kind;
  };
}

export class InvalidRequestError extends defineError('BB_ERR_INVALID_REQUEST', 'bad-request') {}
export class InvalidOptionError extends defineError('BB_ERR_INVALID_OPTION', 'bad-request') {}
export class InvalidAddressError extends defineError('BB_ERR_INVALID_ADDRESS', 'bad-request') {}
export class InvalidPortError extends defineError('BB_ERR_INVALID_PORT', 'bad-request') {}
export class NetworkExistsError extends defineError('BB_ERR_NETWORK_EXISTS', 'conflict') {}
export class NetworkConflictError extends defineError('BB_ERR_NETWORK_CONFLICT', 'conflict') {}
export class NetworkNotFoundError extends defineError('BB_ERR_NETWORK_NOT_FOUND', 'not-found') {}
export class EndpointExistsError extends defineError('BB_ERR_ENDPOINT_EXISTS', 'conflict') {}
export class AddressInUseError extends defineError('BB_ERR_ADDRESS_IN_USE', 'conflict') {}
export class AddressesExhaustedError extends defineError('BB_ERR_ADDRESSES_EXHAUSTED', 'conflict') {}
export class EndpointNotFoundError extends defineError('BB_ERR_ENDPOINT_NOT_FOUND', 'not-found') {}
export class BridgeFullError extends defineError('BB_ERR_BRIDGE_FULL', 'conflict') {}
export class PortAllocatedError extends defineError('BB_ERR_PORT_ALLOCATED', 'conflict') {}
export class NotSupportedError extends defineError('BB_ERR_NOT_SUPPORTED', 'not-supported') {}
export class OverloadedError extends defineError('BB_ERR_OVERLOADED', 'unavailable') {}
export class ShuttingDownError extends defineError('BB_ERR_SHUTTING_DOWN', 'unavailable') {}
export class KernelError extends defineError('BB_ERR_KERNEL', 'kernel') {}
export class StateDirUnsafeError extends defineError('BB_ERR_STATE_DIR_UNSAFE', 'setup') {}
export class InstanceConflictError extends defineError('BB_ERR_INSTANCE_CONFLICT', 'setup') {}
export class BooksVersionError extends defineError('BB_ERR_BOOKS_VERSION', 'setup') {}

// CNI front end only (src/cni/cni-error.ts maps them to the spec's codes; docs/cni.md).
export class CniVersionError extends defineError('BB_ERR_CNI_VERSION', 'bad-request') {}
export class CniUnsupportedFieldError extends defineError('BB_ERR_CNI_UNSUPPORTED_FIELD', 'not-supported') {}
export class CniUnknownContainerError extends defineError('BB_ERR_CNI_UNKNOWN_CONTAINER', 'not-found') {}
export class CniEnvironmentError extends defineError('BB_ERR_CNI_ENV', 'bad-request') {}
export class CniIoError extends defineError('BB_ERR_CNI_IO', 'bad-request') {}
export class CniDecodeError extends defineError('BB_ERR_CNI_DECODE', 'bad-request') {}
export class CniConfigError extends defineError('BB_ERR_CNI_CONFIG', 'bad-request') {}
export class CniCheckFailedError extends defineError('BB_ERR_CNI_CHECK_FAILED', 'not-found') {}
/** A delegated (IPAM) plugin failed; its own CNI code and details are passed on unchanged. */
export class CniDelegateError extends defineError('BB_ERR_CNI_DELEGATE', 'kernel') {
  constructor(
    message: string,
    readonly cniCode = 0, // 0: the plugin gave none
    readonly details = '',
  ) {
    super(message);
  }
}

/** All error classes, so docs/errors.md can be checked against the code. */
export const ALL_ERRORS = {
  InvalidRequestError,
  InvalidOptionError,
  InvalidAddressError,
  InvalidPortError,
  NetworkExistsError,
  NetworkConflictError,
  NetworkNotFoundError,
  EndpointExistsError,
  AddressInUseError,
  AddressesExhaustedError,
  EndpointNotFoundError,
  BridgeFullError,
  PortAllocatedError,
  NotSupportedError,
  OverloadedError,
  ShuttingDownError,
  KernelError,
  CniVersionError,
  CniUnsupportedFieldError,
  CniUnknownContainerError,
  CniEnvironmentError,
  CniIoError,
  CniDecodeError,
  CniConfigError,
  CniCheckFailedError,
  CniDelegateError,
  StateDirUnsafeError,
  InstanceConflictError,
  BooksVersionError,
} as const;
