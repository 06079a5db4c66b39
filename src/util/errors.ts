/**
 * One error base class for the client side and the gateway. Each error carries a stable
 * string `code` (scripts and tests match on it, never on the message), whether retrying may
 * help, and the underlying `cause`. Messages name the fix.
 */

export const ErrorCodes = {
  /** Unexpected failure; a bug or an environment we did not foresee. */
  INTERNAL: 'LP_INTERNAL',
  /** The command line or a config file is wrong. */
  USAGE: 'LP_USAGE',
  CONFIG_INVALID: 'LP_CONFIG_INVALID',
  /** No credentials, or they can no longer be refreshed: the person must sign in. */
  NOT_SIGNED_IN: 'LP_NOT_SIGNED_IN',
  REAUTH_REQUIRED: 'LP_REAUTH_REQUIRED',
  /** Signed in, but not allowed (login denied, target not allowed, not an admin). */
  ACCESS_DENIED: 'LP_ACCESS_DENIED',
  /** The gateway or the identity provider could not be reached or answered garbage. */
  UNREACHABLE: 'LP_UNREACHABLE',
  BAD_RESPONSE: 'LP_BAD_RESPONSE',
  TIMEOUT: 'LP_TIMEOUT',
  /** The device code expired before anyone approved it. */
  DEVICE_CODE_EXPIRED: 'LP_DEVICE_CODE_EXPIRED',
  /** No usable keychain on this machine. */
  KEYCHAIN_UNAVAILABLE: 'LP_KEYCHAIN_UNAVAILABLE',
  /** A session ended; `reason` says why. */
  SESSION_IDLE_TIMEOUT: 'LP_SESSION_IDLE_TIMEOUT',
  SESSION_MAX_LIFETIME: 'LP_SESSION_MAX_LIFETIME',
  SESSION_REVOKED: 'LP_SESSION_REVOKED',
  SESSION_ENDED: 'LP_SESSION_ENDED',
  NOT_FOUND: 'LP_NOT_FOUND',
  INTERRUPTED: 'LP_INTERRUPTED',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

export interface LogproxyErrorOptions {
  cause?: unknown;
  retryable?: boolean;
  /** Extra facts for `--json` output and events; never a secret. */
  details?: Record<string, unknown>;
}

export class LogproxyError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options: LogproxyErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'LogproxyError';
    this.code = code;
    this.retryable = options.retryable ?? false;
    this.details = options.details ?? {};
  }
}

export function isLogproxyError(err: unknown, code?: ErrorCode): err is LogproxyError {
  return err instanceof LogproxyError && (code === undefined || err.code === code);
}

/** True for the errors an AbortSignal produces. */
export function isAbortError(err: unknown): boolean {
  return (
    err instanceof Error &&
    (err.name === 'AbortError' || (err as { code?: string }).code === 'ABORT_ERR')
  );
}
