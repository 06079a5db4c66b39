import type { EndReason } from '../protocol/api.js';
import { ErrorCodes, type ErrorCode } from '../util/errors.js';

/** Exit codes, documented in docs/exit-codes.md. Scripts rely on them: never renumber. */
export const ExitCodes = {
  OK: 0,
  ERROR: 1,
  USAGE: 2,
  NOT_SIGNED_IN: 3,
  ACCESS_DENIED: 4,
  UNREACHABLE: 5,
  IDLE_TIMEOUT: 10,
  MAX_LIFETIME: 11,
  REVOKED: 12,
  INTERRUPTED: 130,
} as const;

export type ExitCode = (typeof ExitCodes)[keyof typeof ExitCodes];

const BY_ERROR_CODE: Partial<Record<ErrorCode, ExitCode>> = {
  [ErrorCodes.USAGE]: ExitCodes.USAGE,
  [ErrorCodes.CONFIG_INVALID]: ExitCodes.USAGE,
  [ErrorCodes.NOT_SIGNED_IN]: ExitCodes.NOT_SIGNED_IN,
  [ErrorCodes.REAUTH_REQUIRED]: ExitCodes.NOT_SIGNED_IN,
  [ErrorCodes.DEVICE_CODE_EXPIRED]: ExitCodes.NOT_SIGNED_IN,
  [ErrorCodes.KEYCHAIN_UNAVAILABLE]: ExitCodes.ERROR,
  [ErrorCodes.ACCESS_DENIED]: ExitCodes.ACCESS_DENIED,
  [ErrorCodes.NOT_FOUND]: ExitCodes.ACCESS_DENIED,
  [ErrorCodes.UNREACHABLE]: ExitCodes.UNREACHABLE,
  [ErrorCodes.BAD_RESPONSE]: ExitCodes.UNREACHABLE,
  [ErrorCodes.TIMEOUT]: ExitCodes.UNREACHABLE,
  [ErrorCodes.SESSION_IDLE_TIMEOUT]: ExitCodes.IDLE_TIMEOUT,
  [ErrorCodes.SESSION_MAX_LIFETIME]: ExitCodes.MAX_LIFETIME,
  [ErrorCodes.SESSION_REVOKED]: ExitCodes.REVOKED,
  [ErrorCodes.SESSION_ENDED]: ExitCodes.OK,
  [ErrorCodes.INTERRUPTED]: ExitCodes.INTERRUPTED,
};

/** The one place an error code becomes an exit code. */
export function exitCodeForError(code: ErrorCode | undefined): ExitCode {
  return (code && BY_ERROR_CODE[code]) ?? ExitCodes.ERROR;
}

const BY_END_REASON: Record<EndReason, ExitCode> = {
  idle_timeout: ExitCodes.IDLE_TIMEOUT,
  max_lifetime: ExitCodes.MAX_LIFETIME,
  revoked: ExitCodes.REVOKED,
  // The gateway stopped hearing from us: to the person that is a lost gateway.
  client_lost: ExitCodes.UNREACHABLE,
  gateway_shutdown: ExitCodes.UNREACHABLE,
  ended: ExitCodes.OK,
};

export function exitCodeForEndReason(reason: EndReason): ExitCode {
  return BY_END_REASON[reason];
}
