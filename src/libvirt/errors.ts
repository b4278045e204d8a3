// Errors of the libvirt client. Each has a stable `code` (match on it, or on `name`, never with instanceof
// across process boundaries) and keeps libvirt's own error code and domain when the daemon sent them.
// This module is standalone (publishable without drover), so its base class mirrors drover's error shape
// (`code`, `cause`) instead of importing it.

/** Base of every error this client throws. */
export class LibvirtClientError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'LibvirtClientError';
    this.code = code;
  }
}

/** libvirt's virErrorNumber values this client and its users branch on. */
export const VirErrorCode = {
  INTERNAL_ERROR: 1,
  NO_SUPPORT: 3,
  INVALID_ARG: 8,
  OPERATION_FAILED: 9,
  AUTH_FAILED: 45,
  NO_DOMAIN: 42,
  NO_STORAGE_POOL: 49,
  NO_STORAGE_VOL: 50,
  OPERATION_INVALID: 55,
  OPERATION_TIMEOUT: 68,
  ARGUMENT_UNSUPPORTED: 74,
  OPERATION_ABORTED: 78,
  MIGRATE_UNSAFE: 81,
  OPERATION_UNSUPPORTED: 84,
  AGENT_UNRESPONSIVE: 86,
} as const;

/** An error the daemon reported for a call (virError on the wire). */
export class LibvirtError extends LibvirtClientError {
  /** virErrorNumber */
  readonly virCode: number;
  /** virErrorDomain (which part of libvirt raised it) */
  readonly virDomain: number;
  readonly level: number;
  /** The procedure that failed. */
  readonly procedure: string;
  constructor(fields: {
    virCode: number;
    virDomain: number;
    level: number;
    message: string;
    procedure: string;
  }) {
    super('libvirt_error', `${fields.procedure}: ${fields.message} (libvirt error ${fields.virCode})`);
    this.name = 'LibvirtError';
    this.virCode = fields.virCode;
    this.virDomain = fields.virDomain;
    this.level = fields.level;
    this.procedure = fields.procedure;
  }
}

/** A call got no reply within its timeout; the connection itself may still be fine. */
export class LibvirtTimeoutError extends LibvirtClientError {
  readonly procedure: string;
  readonly timeoutMs: number;
  constructor(procedure: string, timeoutMs: number) {
    super('libvirt_timeout', `${procedure}: no reply from libvirtd within ${timeoutMs} ms`);
    this.name = 'LibvirtTimeoutError';
    this.procedure = procedure;
    this.timeoutMs = timeoutMs;
  }
}

/** The connection is gone (closed, reset, peer declared dead by keepalive) or could not be made. */
export class LibvirtConnectionError extends LibvirtClientError {
  constructor(
    code: 'libvirt_connection_closed' | 'libvirt_peer_dead' | 'libvirt_connect_failed',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
    this.name = 'LibvirtConnectionError';
  }
}

/** The peer sent bytes that are not a valid libvirt RPC packet (truncated, oversized, malformed). */
export class LibvirtProtocolError extends LibvirtClientError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('libvirt_protocol', message, options);
    this.name = 'LibvirtProtocolError';
  }
}

/** The server demands an authentication method this client does not speak, or refused ours. */
export class LibvirtAuthError extends LibvirtClientError {
  constructor(message: string) {
    super('libvirt_auth', message);
    this.name = 'LibvirtAuthError';
  }
}

/** A connection URI this client cannot use; `field` names the offending part. */
export class LibvirtUriError extends LibvirtClientError {
  readonly field: string;
  constructor(field: string, message: string) {
    super('libvirt_bad_uri', `${field}: ${message}`);
    this.name = 'LibvirtUriError';
    this.field = field;
  }
}

function fieldOf(err: unknown, key: string): unknown {
  return typeof err === 'object' && err !== null && key in err
    ? (err as Record<string, unknown>)[key]
    : undefined;
}

function hasVirCode(err: unknown, virCode: number): boolean {
  return fieldOf(err, 'code') === 'libvirt_error' && fieldOf(err, 'virCode') === virCode;
}

/** The domain does not exist on that host. */
export const isNoDomain = (err: unknown): boolean => hasVirCode(err, VirErrorCode.NO_DOMAIN);
/** The operation is not valid in the domain's current state (not running, no job, ...). */
export const isOperationInvalid = (err: unknown): boolean => hasVirCode(err, VirErrorCode.OPERATION_INVALID);
/** The job was aborted (e.g. a migration after abortJob). */
export const isOperationAborted = (err: unknown): boolean => hasVirCode(err, VirErrorCode.OPERATION_ABORTED);
/** The daemon does not support the call or flag. */
export const isNoSupport = (err: unknown): boolean =>
  hasVirCode(err, VirErrorCode.NO_SUPPORT) || hasVirCode(err, VirErrorCode.OPERATION_UNSUPPORTED);
/** A live migration libvirt considers unsafe (e.g. disks not on shared storage, cache mode). */
export const isMigrateUnsafe = (err: unknown): boolean => hasVirCode(err, VirErrorCode.MIGRATE_UNSAFE);
export const isInvalidArgument = (err: unknown): boolean =>
  hasVirCode(err, VirErrorCode.INVALID_ARG) || hasVirCode(err, VirErrorCode.ARGUMENT_UNSUPPORTED);
export const isNoStoragePool = (err: unknown): boolean => hasVirCode(err, VirErrorCode.NO_STORAGE_POOL);
export const isNoStorageVol = (err: unknown): boolean => hasVirCode(err, VirErrorCode.NO_STORAGE_VOL);
/** Our call timed out, or libvirt reported its own timeout (e.g. a hung QEMU monitor). */
export const isTimeout = (err: unknown): boolean =>
  fieldOf(err, 'code') === 'libvirt_timeout' || hasVirCode(err, VirErrorCode.OPERATION_TIMEOUT);
/** The connection is closed, failed or its peer was declared dead: reconnect. */
export const isConnectionLost = (err: unknown): boolean => {
  const code = fieldOf(err, 'code');
  return (
    code === 'libvirt_connection_closed' || code === 'libvirt_peer_dead' || code === 'libvirt_connect_failed'
  );
};
export const isProtocolError = (err: unknown): boolean => fieldOf(err, 'code') === 'libvirt_protocol';
export const isAuthError = (err: unknown): boolean =>
  fieldOf(err, 'code') === 'libvirt_auth' || hasVirCode(err, VirErrorCode.AUTH_FAILED);
