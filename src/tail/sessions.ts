/**
 * Where `tail` gets the session it reads through.
 *
 * - `TunnelSession`: a `logproxy connect` for the target is running. Its tunnel forwards only
 *   `/forward/` to http targets, so tail does not read through the tunnel's port; it reads the
 *   tunnel's SESSION (id and gateway from the registry record) directly at the gateway with
 *   the person's own token. No second session is opened, the tunnel keeps heartbeating, and
 *   when the tunnel moves to a new session (re-authentication) its record says so.
 * - `OwnSession`: tail opens a session through a SessionKeeper (heartbeats, warnings, token
 *   refresh, re-authentication) and ends it on exit. A gateway that restarted forgets its
 *   sessions: then a new keeper opens a new session and reading goes on from the cursor.
 */
import type { EndReason, SessionState } from '../protocol/api.js';
import type { AccessTokenSource } from '../auth/types.js';
import type { SessionKeeper, TunnelEnd } from '../tunnel/session-keeper.js';
import type { TunnelRecord } from '../tunnel/registry.js';
import type { Clock } from '../util/clock.js';
import { ErrorCodes, LogproxyError, isLogproxyError } from '../util/errors.js';
import type { SessionSource } from './stream.js';

/** How long to wait for a keeper that is switching sessions (a person signing in). */
const SWITCH_WAIT_MS = 15 * 60_000;

/** Reasons after which a NEW session is the right answer, without asking anyone. */
const GATEWAY_WENT_AWAY: ReadonlySet<string> = new Set([
  'gateway_lost',
  'gateway_shutdown',
  'client_lost',
]);

/** Tail's session is over for good: `end` says why (the CLI words it and picks the code). */
export class SessionOverError extends LogproxyError {
  constructor(readonly end: TunnelEnd) {
    super(codeForEnd(end), `the session is over (${end.reason})`, {
      cause: end.error,
      details: { reason: end.reason },
    });
  }
}

function codeForEnd(end: TunnelEnd): (typeof ErrorCodes)[keyof typeof ErrorCodes] {
  switch (end.reason) {
    case 'idle_timeout':
      return ErrorCodes.SESSION_IDLE_TIMEOUT;
    case 'max_lifetime':
      return ErrorCodes.SESSION_MAX_LIFETIME;
    case 'revoked':
      return ErrorCodes.SESSION_REVOKED;
    case 'ended':
      return ErrorCodes.SESSION_ENDED;
    case 'interrupted':
      return ErrorCodes.INTERRUPTED;
    case 'not_signed_in':
      return ErrorCodes.NOT_SIGNED_IN;
    case 'failed':
      return isLogproxyError(end.error) ? end.error.code : ErrorCodes.INTERNAL;
    default:
      return ErrorCodes.UNREACHABLE;
  }
}

export interface OwnSessionOptions {
  baseUrl: string;
  /** A new, not yet started keeper for the target (the CLI subscribes its renderer). */
  createKeeper(): SessionKeeper;
}

export class OwnSession implements SessionSource {
  private keeper: SessionKeeper | undefined;
  private starting: Promise<SessionState> | undefined;

  constructor(private readonly options: OwnSessionOptions) {}

  /** The keeper of the current session, if any (for release at exit). */
  current(): SessionKeeper | undefined {
    return this.keeper;
  }

  async acquire(signal: AbortSignal): Promise<{ baseUrl: string; sessionId: string }> {
    for (;;) {
      signal.throwIfAborted();
      const keeper = await this.running();
      try {
        const session = await keeper.waitForSession(SWITCH_WAIT_MS, signal);
        return { baseUrl: this.options.baseUrl, sessionId: session.id };
      } catch (err) {
        if (!keeper.isOver()) throw err;
        await this.afterEnd(keeper);
      }
    }
  }

  token(_signal: AbortSignal): Promise<string> {
    if (!this.keeper) throw new LogproxyError(ErrorCodes.INTERNAL, 'no session yet');
    return this.keeper.accessToken();
  }

  refreshToken(_signal: AbortSignal): Promise<string> {
    if (!this.keeper) throw new LogproxyError(ErrorCodes.INTERNAL, 'no session yet');
    return this.keeper.refreshToken();
  }

  async lost(sessionId: string, error: LogproxyError, _signal: AbortSignal): Promise<void> {
    const keeper = this.keeper;
    if (!keeper) return;
    const reason = endReason(error);
    if (reason === 'idle_timeout' || reason === 'max_lifetime') {
      // The keeper re-authenticates and switches, or ends; `acquire` waits for either.
      keeper.reportSessionEnded(sessionId, reason);
      return;
    }
    if (reason === undefined || GATEWAY_WENT_AWAY.has(reason)) {
      // Unknown session (the gateway restarted) or dropped by a shutdown: start afresh.
      if (keeper.current()?.id === sessionId || keeper.isOver()) this.drop(keeper);
      return;
    }
    keeper.stop(reason);
    throw new SessionOverError({ reason, sessionId, error });
  }

  /** Ends the session at the gateway (at exit). */
  async close(): Promise<void> {
    const keeper = this.keeper;
    if (!keeper) return;
    if (!keeper.isOver()) keeper.stop('ended');
    await keeper.release();
  }

  private async running(): Promise<SessionKeeper> {
    if (this.keeper && !this.starting) return this.keeper;
    if (!this.starting) {
      const keeper = this.options.createKeeper();
      this.keeper = keeper;
      this.starting = keeper.start().finally(() => (this.starting = undefined));
      this.starting.catch(() => {
        if (this.keeper === keeper) this.keeper = undefined;
      });
    }
    await this.starting;
    return this.keeper!;
  }

  private async afterEnd(keeper: SessionKeeper): Promise<void> {
    const end = await keeper.done;
    if (GATEWAY_WENT_AWAY.has(end.reason) || isUnknownSession(end.error)) {
      this.drop(keeper);
      return;
    }
    throw new SessionOverError(end);
  }

  private drop(keeper: SessionKeeper): void {
    if (!keeper.isOver()) keeper.stop('gateway_lost');
    if (this.keeper === keeper) this.keeper = undefined;
  }
}

function endReason(error: LogproxyError): EndReason | undefined {
  const detail = error.details.reason;
  if (typeof detail === 'string') return detail as EndReason;
  switch (error.code) {
    case ErrorCodes.SESSION_IDLE_TIMEOUT:
      return 'idle_timeout';
    case ErrorCodes.SESSION_MAX_LIFETIME:
      return 'max_lifetime';
    case ErrorCodes.SESSION_REVOKED:
      return 'revoked';
    case ErrorCodes.SESSION_ENDED:
      return 'ended';
    default:
      return undefined;
  }
}

function isUnknownSession(err: unknown): boolean {
  return isLogproxyError(err, ErrorCodes.NOT_FOUND);
}

export interface TunnelSessionOptions {
  record: TunnelRecord;
  tokens: AccessTokenSource;
  /** Reads the tunnel's record again (it changes when the tunnel switches sessions). */
  reread(): Promise<TunnelRecord | undefined>;
  clock: Clock;
  /** How long to wait for a tunnel that is switching to a new session. */
  switchWaitMs?: number;
}

/** How often the registry is read while a tunnel switches sessions. */
const REREAD_EVERY_MS = 500;

export class TunnelSession implements SessionSource {
  private record: TunnelRecord;

  constructor(private readonly options: TunnelSessionOptions) {
    this.record = options.record;
  }

  async acquire(_signal: AbortSignal): Promise<{ baseUrl: string; sessionId: string }> {
    return { baseUrl: this.record.gateway, sessionId: this.record.sessionId };
  }

  token(signal: AbortSignal): Promise<string> {
    return this.options.tokens.getAccessToken({ signal });
  }

  refreshToken(signal: AbortSignal): Promise<string> {
    return this.options.tokens.refresh(signal);
  }

  /**
   * The tunnel's session ended. A tunnel that re-authenticates rewrites its record with the
   * new session: wait for that; a tunnel that is gone (or stays on the dead session) means
   * tail is over too, for the same reason.
   */
  async lost(sessionId: string, error: LogproxyError, signal: AbortSignal): Promise<void> {
    const deadline = this.options.clock.now() + (this.options.switchWaitMs ?? 30_000);
    while (this.options.clock.now() < deadline) {
      const record = await this.options.reread();
      if (!record) break;
      if (record.sessionId !== sessionId) {
        this.record = record;
        return;
      }
      await this.options.clock.sleep(REREAD_EVERY_MS, signal);
    }
    // A session the gateway no longer knows (it restarted) or cannot tell us about: to the
    // person that is the gateway lost, as it was for the tunnel that owned the session.
    const reason =
      endReason(error) ??
      (isUnknownSession(error) || isLogproxyError(error, ErrorCodes.UNREACHABLE)
        ? 'gateway_lost'
        : 'failed');
    throw new SessionOverError({ reason, sessionId, error });
  }
}
