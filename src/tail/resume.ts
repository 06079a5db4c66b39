/**
 * The decisions behind "never lose a line": what to ask the gateway for when (re)connecting,
 * what a failure means (retry, refresh the token, get a new session, give up), and how long
 * to keep trying while the gateway is away. Pure and clock-driven, so tests can walk through
 * a minute of outage in microseconds.
 */
import type { Clock } from '../util/clock.js';
import { ErrorCodes, LogproxyError, isAbortError, isLogproxyError } from '../util/errors.js';

export interface LogQuery {
  follow: boolean;
  /** Duration (`10m`) or RFC 3339 time, passed through to the gateway. */
  since?: string;
  limit?: number;
  grep?: string;
}

/**
 * The query string of the next request. Once anything was written (or a keepalive moved the
 * position), the cursor alone says where to continue: `since` and `limit` described the
 * starting point and would repeat or skip lines if sent again.
 */
export function resumeParams(query: LogQuery, cursor: string | undefined): URLSearchParams {
  const params = new URLSearchParams();
  if (query.follow) params.set('follow', 'true');
  if (cursor !== undefined) {
    params.set('cursor', cursor);
  } else {
    if (query.since !== undefined) params.set('since', query.since);
    if (query.limit !== undefined) params.set('limit', String(query.limit));
  }
  if (query.grep !== undefined) params.set('grep', query.grep);
  return params;
}

export type FailureAction =
  /** The gateway or the network: wait (backoff) and reconnect from the cursor. */
  | 'retry'
  /** 401: refresh the access token and reconnect at once. */
  | 'refresh'
  /** The session is over or unknown (gateway restarted): get a new one, then reconnect. */
  | 'session'
  /** Nothing to gain by trying again. */
  | 'fatal';

/** What a failed request or a broken stream calls for. */
export function classifyFailure(err: unknown): FailureAction {
  if (isAbortError(err)) return 'fatal';
  if (!isLogproxyError(err)) return 'retry';
  switch (err.code) {
    case ErrorCodes.NOT_SIGNED_IN:
      return err.details.status === 401 || err.details.problemType !== undefined
        ? 'refresh'
        : 'fatal';
    case ErrorCodes.SESSION_IDLE_TIMEOUT:
    case ErrorCodes.SESSION_MAX_LIFETIME:
    case ErrorCodes.SESSION_REVOKED:
    case ErrorCodes.SESSION_ENDED:
    case ErrorCodes.REAUTH_REQUIRED:
      return 'session';
    case ErrorCodes.NOT_FOUND:
      // A session the gateway does not know: it restarted and forgot it. A missing target is
      // reported when the new session is created, not here.
      return 'session';
    case ErrorCodes.UNREACHABLE:
    case ErrorCodes.TIMEOUT:
    case ErrorCodes.BAD_RESPONSE:
      return err.details.reason !== undefined ? 'session' : 'retry';
    default:
      return err.retryable ? 'retry' : 'fatal';
  }
}

export interface ReconnectOptions {
  /** First wait after a failure. */
  firstDelayMs?: number;
  /** Longest single wait. */
  maxDelayMs?: number;
  /** Give up when the gateway has been away this long (then exit 5). */
  giveUpAfterMs?: number;
  /** For jitter, in [0, 1); tests pass a constant. */
  random?: () => number;
}

/**
 * 250 ms, doubling to 5 s: a restarting gateway is usually back within a second or two, and a
 * reader should not wait much longer than that to notice; 5 s keeps a gateway that is down
 * for minutes from being hammered.
 */
export const FIRST_RECONNECT_DELAY_MS = 250;
export const MAX_RECONNECT_DELAY_MS = 5_000;
/** Long enough for a gateway restart or a short network cut, short enough for a script. */
export const GIVE_UP_AFTER_MS = 60_000;

/**
 * Backoff while the gateway is unreachable, bounded by total time away, not attempt count:
 * "retry for a minute" is what a person can reason about. `succeeded()` resets it.
 */
export class ReconnectPolicy {
  private readonly firstDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly giveUpAfterMs: number;
  private readonly random: () => number;
  private failingSinceMs: number | undefined;
  private attempts = 0;

  constructor(
    private readonly clock: Clock,
    options: ReconnectOptions = {},
  ) {
    this.firstDelayMs = options.firstDelayMs ?? FIRST_RECONNECT_DELAY_MS;
    this.maxDelayMs = options.maxDelayMs ?? MAX_RECONNECT_DELAY_MS;
    this.giveUpAfterMs = options.giveUpAfterMs ?? GIVE_UP_AFTER_MS;
    this.random = options.random ?? Math.random;
  }

  /** Attempts since the last success. */
  get failures(): number {
    return this.attempts;
  }

  /**
   * The wait before the next attempt, or undefined when it is time to give up. Waits are
   * jittered into [75%, 100%] and never run past the give-up deadline.
   */
  nextDelay(): number | undefined {
    const now = this.clock.now();
    this.failingSinceMs ??= now;
    const awayMs = now - this.failingSinceMs;
    if (awayMs >= this.giveUpAfterMs) return undefined;
    this.attempts += 1;
    const raw = Math.min(this.maxDelayMs, this.firstDelayMs * 2 ** (this.attempts - 1));
    const jittered = Math.round(raw * (0.75 + this.random() / 4));
    return Math.min(jittered, this.giveUpAfterMs - awayMs);
  }

  /** How long the gateway has been away, in ms (0 when it is not). */
  awayMs(): number {
    return this.failingSinceMs === undefined ? 0 : this.clock.now() - this.failingSinceMs;
  }

  succeeded(): void {
    this.failingSinceMs = undefined;
    this.attempts = 0;
  }
}

/** The error to end with when the gateway stayed away past the bound. */
export function gaveUpError(awayMs: number, last: unknown): LogproxyError {
  const why = last instanceof Error ? `: ${last.message}` : '';
  return new LogproxyError(
    ErrorCodes.UNREACHABLE,
    `gave up after the gateway was unreachable for ${Math.round(awayMs / 1000)}s${why}`,
    { cause: last },
  );
}
