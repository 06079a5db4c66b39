/**
 * Owns one tunnel's gateway session for its whole life: creates it, heartbeats at the
 * gateway's interval, warns from the gateway's answers, keeps the access token fresh, and when
 * the session ends either re-authenticates and opens a new one or reports why it is over.
 *
 * Silent: it emits typed events and resolves `done`; the CLI turns both into words and exit
 * codes. Time comes from an injected Clock, so tests run an hour of session life in
 * milliseconds.
 */
import type { EndReason, SessionState } from '../protocol/api.js';
import type { AccessTokenSource, GatewayApi } from '../auth/types.js';
import type { Clock, TimerHandle } from '../util/clock.js';
import { ErrorCodes, LogproxyError, isAbortError, isLogproxyError } from '../util/errors.js';

/**
 * Why a tunnel is over: the gateway's own reasons, plus what only the client can know.
 * `gateway_lost`: no answer from the gateway for longer than the grace.
 * `interrupted`: Ctrl-C or SIGTERM. `not_signed_in`: credentials cannot be refreshed and
 * re-authentication is off or failed. `failed`: an error that fits none of these (`error`).
 */
export type TunnelEndReason =
  EndReason | 'gateway_lost' | 'interrupted' | 'not_signed_in' | 'failed';

export interface TunnelEnd {
  reason: TunnelEndReason;
  /** The session that ended, when there was one. */
  sessionId?: string;
  /** The error behind `failed`, `not_signed_in` or `gateway_lost`, or a failed re-auth. */
  error?: unknown;
  /** The tunnel tried to sign in again (or to open a new session) and that failed. */
  reauthFailed?: boolean;
}

export type WarningKind = 'lifetime' | 'idle';

export type KeeperEvent =
  | { type: 'session'; session: SessionState }
  | { type: 'heartbeat'; session: SessionState }
  | { type: 'heartbeat_failed'; attempt: number; retryInMs: number; error: unknown }
  | {
      type: 'warning';
      kind: WarningKind;
      /** Seconds until the session ends (idle expiry or absolute end), per the gateway. */
      secondsLeft: number;
      /** Seconds without traffic, per the gateway (idle warnings). */
      idleS: number;
      /** The `warn_before_s` threshold that was crossed. */
      thresholdS: number;
      session: SessionState;
    }
  | { type: 'refreshed'; accessTokenExpiresAt: number }
  | { type: 'reauthenticating'; reason: TunnelEndReason | 'reauth_required'; sessionId?: string }
  | { type: 'resumed'; session: SessionState; previousSessionId?: string };

export type KeeperListener = (event: KeeperEvent) => void;

export interface SessionKeeperOptions {
  api: GatewayApi;
  tokens: AccessTokenSource;
  target: string;
  clock: Clock;
  /**
   * Signs the person in again (device flow, credentials stored). When absent, a session that
   * needs a new sign-in ends the tunnel instead.
   */
  reauth?: (signal: AbortSignal) => Promise<void>;
  /** For jitter; tests pass a fixed value. */
  random?: () => number;
}

/** First retry of a failed heartbeat; doubles up to the heartbeat interval. */
const FIRST_RETRY_MS = 500;
/**
 * The gateway ends a session as `client_lost` after three missed heartbeat intervals (its
 * default `heartbeat_misses_allowed`). Waiting longer than that for it to come back is
 * pointless, since the session is gone by then; giving up sooner would end tunnels over a
 * blip the gateway itself tolerates.
 */
const GRACE_INTERVALS = 3;
/** Refresh the access token this long before it expires (less for very short tokens). */
const REFRESH_MARGIN_MS = 60_000;
/** A forwarded request reaches the gateway in milliseconds; this covers a slow one. */
const REQUEST_MIN_VALIDITY_MS = 5_000;
/** After a transient refresh failure, try again this soon. */
const REFRESH_RETRY_MS = 2_000;
/** Never heartbeat more often than this, even to catch a warning threshold on time. */
const MIN_HEARTBEAT_GAP_MS = 1_000;
/** Heartbeat just after a threshold would be crossed, so the gateway's answer shows it. */
const THRESHOLD_SLACK_MS = 250;
/**
 * Sign-ins per switch. A fresh sign-in is what the gateway asks for; if it still refuses
 * one, asking the person again would only loop, so the tunnel ends with the reason.
 */
const MAX_SIGN_INS = 1;
/** Ending the session at the gateway must not hold up an exit for long. */
const RELEASE_TIMEOUT_MS = 3_000;

type Phase = 'idle' | 'active' | 'switching' | 'done';

interface Waiter {
  resolve: (session: SessionState) => void;
  reject: (err: unknown) => void;
}

export class SessionKeeper {
  private readonly listeners = new Set<KeeperListener>();
  private readonly random: () => number;
  private readonly abort = new AbortController();
  private phase: Phase = 'idle';
  private session: SessionState | undefined;
  private heartbeatTimer: TimerHandle | undefined;
  private refreshTimer: TimerHandle | undefined;
  private failures = 0;
  private lastContactMs = 0;
  private warnedLifetime = new Set<number>();
  private warnedIdle = new Set<number>();
  private waiters: Waiter[] = [];
  private refreshing: Promise<string> | undefined;
  private resolveDone!: (end: TunnelEnd) => void;
  /** Resolves once the tunnel is over, with why. Never rejects. */
  readonly done: Promise<TunnelEnd>;

  constructor(private readonly options: SessionKeeperOptions) {
    this.random = options.random ?? Math.random;
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
  }

  on(listener: KeeperListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The active session, or undefined while switching to a new one or after the end. */
  current(): SessionState | undefined {
    return this.phase === 'active' ? this.session : undefined;
  }

  /** The latest session state seen, even when no longer active. */
  lastSession(): SessionState | undefined {
    return this.session;
  }

  isOver(): boolean {
    return this.phase === 'done';
  }

  /**
   * Creates the first session and starts heartbeats and token refreshes. Rejects with the
   * gateway's error (access denied, unknown target, not signed in...) without emitting events.
   */
  async start(): Promise<SessionState> {
    await this.options.tokens.getAccessToken({ signal: this.abort.signal });
    const session = await this.options.api.createSession(this.options.target, this.abort.signal);
    this.adopt(session);
    this.scheduleRefresh();
    return session;
  }

  /**
   * The active session, waiting up to `timeoutMs` while a new one is being set up (re-auth).
   * Rejects with LogproxyError SESSION_ENDED when the tunnel is over or the wait runs out.
   */
  waitForSession(timeoutMs: number, signal?: AbortSignal): Promise<SessionState> {
    if (this.phase === 'active' && this.session) return Promise.resolve(this.session);
    if (this.phase === 'done') return Promise.reject(this.overError());
    return new Promise((resolve, reject) => {
      const timer = this.options.clock.setTimeout(() => {
        settle();
        reject(
          new LogproxyError(ErrorCodes.TIMEOUT, 'still waiting for a new session', {
            retryable: true,
          }),
        );
      }, timeoutMs);
      const onAbort = (): void => {
        settle();
        reject(signal!.reason);
      };
      const waiter: Waiter = {
        resolve: (s) => {
          settle();
          resolve(s);
        },
        reject: (e) => {
          settle();
          reject(e);
        },
      };
      const settle = (): void => {
        timer.cancel();
        signal?.removeEventListener('abort', onAbort);
        this.waiters = this.waiters.filter((w) => w !== waiter);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  /**
   * An access token for one forwarded request. The keeper refreshes ahead of expiry, so this
   * is normally the source's in-memory token; the floor only matters if a refresh is late.
   */
  accessToken(): Promise<string> {
    return this.options.tokens.getAccessToken({
      minValidityMs: REQUEST_MIN_VALIDITY_MS,
      signal: this.abort.signal,
    });
  }

  /**
   * Refreshes now, after the gateway answered 401 invalid_token. Concurrent callers share one
   * refresh. Rejects when credentials cannot be refreshed (the keeper then re-authenticates or
   * ends the tunnel).
   */
  refreshToken(): Promise<string> {
    this.refreshing ??= this.doRefresh().finally(() => (this.refreshing = undefined));
    return this.refreshing;
  }

  /**
   * The data plane answered 410 session-ended for `sessionId`: act on it now rather than at
   * the next heartbeat. Stale reports (an older session) are ignored.
   */
  reportSessionEnded(sessionId: string, reason: EndReason | undefined): void {
    if (this.phase !== 'active' || this.session?.id !== sessionId) return;
    void this.onSessionEnded(reason ?? 'ended');
  }

  /** Ends the tunnel from this side (Ctrl-C, SIGTERM). Idempotent. */
  stop(reason: TunnelEndReason = 'interrupted'): void {
    this.finish({ reason, sessionId: this.session?.id });
  }

  /**
   * Ends the session at the gateway if it is still open there (best effort, bounded): called
   * by the CLI after in-flight requests had their grace.
   */
  async release(): Promise<void> {
    const session = this.session;
    if (!session || session.state === 'ended') return;
    const controller = new AbortController();
    const timer = this.options.clock.setTimeout(() => controller.abort(), RELEASE_TIMEOUT_MS);
    try {
      await this.options.api.endSession(session.id, controller.signal);
      this.session = { ...session, state: 'ended', end_reason: 'ended' };
    } catch {
      // Best effort: the gateway ends it anyway once heartbeats stop (client_lost).
    } finally {
      timer.cancel();
    }
  }

  // ---------- heartbeats ----------

  private adopt(session: SessionState): void {
    this.session = session;
    this.phase = 'active';
    this.failures = 0;
    this.lastContactMs = this.options.clock.now();
    this.warnedLifetime = new Set();
    this.warnedIdle = new Set();
    this.emit({ type: 'session', session });
    this.observe(session);
    for (const w of this.waiters.slice()) w.resolve(session);
    this.scheduleHeartbeat(this.nextHeartbeatDelay(session));
  }

  private scheduleHeartbeat(delayMs: number): void {
    this.heartbeatTimer?.cancel();
    if (this.phase !== 'active') return;
    this.heartbeatTimer = this.options.clock.setTimeout(() => void this.beat(), delayMs);
  }

  private async beat(): Promise<void> {
    const session = this.session;
    if (this.phase !== 'active' || !session) return;
    let state: SessionState;
    try {
      state = await this.options.api.heartbeat(session.id, this.abort.signal);
    } catch (err) {
      if (this.phase === 'active' && this.session?.id === session.id) this.onBeatFailed(err);
      return;
    }
    if (this.phase !== 'active' || this.session?.id !== session.id) return;
    this.failures = 0;
    this.lastContactMs = this.options.clock.now();
    this.session = state;
    if (state.state === 'ended') {
      await this.onSessionEnded(state.end_reason ?? 'ended');
      return;
    }
    this.emit({ type: 'heartbeat', session: state });
    this.observe(state);
    this.scheduleHeartbeat(this.nextHeartbeatDelay(state));
  }

  private onBeatFailed(err: unknown): void {
    if (isAbortError(err)) return;
    const ended = endReasonFromError(err);
    if (ended) {
      void this.onSessionEnded(ended);
      return;
    }
    if (isAuthLost(err)) {
      void this.onAuthLost(err);
      return;
    }
    if (!isTransient(err)) {
      this.finish({ reason: 'failed', sessionId: this.session?.id, error: err });
      return;
    }

    const intervalMs = this.intervalMs();
    const silentForMs = this.options.clock.now() - this.lastContactMs;
    if (silentForMs >= GRACE_INTERVALS * intervalMs) {
      this.finish({ reason: 'gateway_lost', sessionId: this.session?.id, error: err });
      return;
    }
    this.failures += 1;
    const retryInMs = backoffMs(this.failures, intervalMs, this.random());
    // Never wait past the grace: the last retry lands right at its end.
    const untilGraceMs = GRACE_INTERVALS * intervalMs - silentForMs;
    const delayMs = Math.max(0, Math.min(retryInMs, untilGraceMs));
    this.emit({ type: 'heartbeat_failed', attempt: this.failures, retryInMs: delayMs, error: err });
    this.scheduleHeartbeat(delayMs);
  }

  private intervalMs(): number {
    return Math.max(MIN_HEARTBEAT_GAP_MS, (this.session?.policy.heartbeat_interval_s ?? 30) * 1000);
  }

  /**
   * The regular interval, shortened so the next answer comes just after the next warning
   * threshold: warnings then arrive on time and still come from the gateway's own numbers.
   */
  private nextHeartbeatDelay(state: SessionState): number {
    let delayMs = this.intervalMs();
    for (const t of this.pendingThresholds(state)) {
      const crossingMs = (t.secondsLeft - t.thresholdS) * 1000 + THRESHOLD_SLACK_MS;
      if (crossingMs > 0) delayMs = Math.min(delayMs, Math.max(MIN_HEARTBEAT_GAP_MS, crossingMs));
    }
    return delayMs;
  }

  // ---------- warnings ----------

  private pendingThresholds(
    state: SessionState,
  ): Array<{ kind: WarningKind; thresholdS: number; secondsLeft: number }> {
    const out: Array<{ kind: WarningKind; thresholdS: number; secondsLeft: number }> = [];
    for (const thresholdS of state.policy.warn_before_s) {
      if (!this.warnedLifetime.has(thresholdS)) {
        out.push({ kind: 'lifetime', thresholdS, secondsLeft: state.seconds_to_absolute_end });
      }
      if (this.idleMatters(state, thresholdS) && !this.warnedIdle.has(thresholdS)) {
        out.push({ kind: 'idle', thresholdS, secondsLeft: state.seconds_to_idle_expiry });
      }
    }
    return out;
  }

  /**
   * An idle warning makes sense only for thresholds shorter than the idle timeout (otherwise
   * it would fire on the first quiet second) and when idleness, not the absolute end, is what
   * will close the session.
   */
  private idleMatters(state: SessionState, thresholdS: number): boolean {
    return (
      thresholdS < state.policy.idle_timeout_s &&
      state.seconds_to_idle_expiry < state.seconds_to_absolute_end
    );
  }

  /** Emits one warning per kind for the smallest threshold newly crossed. */
  private observe(state: SessionState): void {
    // Traffic pushes the idle expiry back: warn again next time it comes close.
    for (const t of [...this.warnedIdle]) {
      if (state.seconds_to_idle_expiry > t) this.warnedIdle.delete(t);
    }
    const lifetime = crossed(state.policy.warn_before_s, state.seconds_to_absolute_end);
    const newLifetime = lifetime.filter((t) => !this.warnedLifetime.has(t));
    if (newLifetime.length > 0) {
      lifetime.forEach((t) => this.warnedLifetime.add(t));
      this.emitWarning('lifetime', Math.min(...newLifetime), state);
      return;
    }
    const idle = crossed(
      state.policy.warn_before_s.filter((t) => this.idleMatters(state, t)),
      state.seconds_to_idle_expiry,
    );
    const newIdle = idle.filter((t) => !this.warnedIdle.has(t));
    if (newIdle.length > 0) {
      idle.forEach((t) => this.warnedIdle.add(t));
      this.emitWarning('idle', Math.min(...newIdle), state);
    }
  }

  private emitWarning(kind: WarningKind, thresholdS: number, state: SessionState): void {
    const secondsLeft =
      kind === 'lifetime' ? state.seconds_to_absolute_end : state.seconds_to_idle_expiry;
    this.emit({
      type: 'warning',
      kind,
      secondsLeft,
      idleS: state.idle_s,
      thresholdS,
      session: state,
    });
  }

  // ---------- tokens ----------

  private scheduleRefresh(): void {
    this.refreshTimer?.cancel();
    if (this.phase === 'done') return;
    const expiresAt = this.options.tokens.describe()?.accessTokenExpiresAt;
    if (expiresAt === undefined) return;
    const leftMs = expiresAt - this.options.clock.now();
    // For short-lived tokens (tests, strict IdPs) refresh at half-life, not a minute ahead.
    const marginMs = Math.min(REFRESH_MARGIN_MS, Math.max(0, leftMs) / 2);
    this.refreshTimer = this.options.clock.setTimeout(
      () => void this.refreshToken().catch(() => undefined),
      Math.max(0, leftMs - marginMs),
    );
  }

  private async doRefresh(): Promise<string> {
    try {
      const token = await this.options.tokens.refresh(this.abort.signal);
      const expiresAt = this.options.tokens.describe()?.accessTokenExpiresAt ?? 0;
      this.emit({ type: 'refreshed', accessTokenExpiresAt: expiresAt });
      this.scheduleRefresh();
      return token;
    } catch (err) {
      if (this.phase === 'done' || isAbortError(err)) throw err;
      if (isAuthLost(err)) {
        void this.onAuthLost(err);
      } else {
        this.refreshTimer?.cancel();
        this.refreshTimer = this.options.clock.setTimeout(
          () => void this.refreshToken().catch(() => undefined),
          REFRESH_RETRY_MS,
        );
      }
      throw err;
    }
  }

  // ---------- endings and re-authentication ----------

  private async onSessionEnded(reason: EndReason): Promise<void> {
    if (this.phase !== 'active') return;
    const previous = this.session;
    if (previous) this.session = { ...previous, state: 'ended', end_reason: reason };
    // `client_lost` (the machine slept past the heartbeat grace) needs no new sign-in at the
    // gateway: a person at the terminal gets a new session without noticing. Revocations
    // and deliberate ends are never undone.
    const resumable = RESUMABLE.has(reason);
    if (!resumable || !this.options.reauth) {
      this.finish({ reason, sessionId: previous?.id });
      return;
    }
    await this.switchSession(reason, previous?.id, false);
  }

  private async onAuthLost(err: unknown): Promise<void> {
    if (this.phase !== 'active') return;
    if (!this.options.reauth) {
      this.finish({ reason: 'not_signed_in', sessionId: this.session?.id, error: err });
      return;
    }
    await this.switchSession('not_signed_in', this.session?.id, true);
  }

  /**
   * Holds new requests, signs in again when needed, and moves to a session that works. The
   * gateway decides whether a fresh sign-in is needed (`reauth-required` on create), so a
   * target with `silent_resume` continues without bothering anyone.
   */
  private async switchSession(
    reason: TunnelEndReason,
    previousId: string | undefined,
    signInFirst: boolean,
  ): Promise<void> {
    this.phase = 'switching';
    this.heartbeatTimer?.cancel();
    const signal = this.abort.signal;
    try {
      let signedIn = false;
      if (signInFirst) {
        await this.signInAgain(reason, previousId, signal);
        signedIn = true;
      }
      let next = (await this.stillActive(previousId, signal)) ?? (await this.tryCreate(signal));
      for (let signIns = signedIn ? 1 : 0; !next && signIns < MAX_SIGN_INS; signIns++) {
        await this.signInAgain(reason, previousId, signal);
        next = await this.tryCreate(signal);
      }
      if (!next) {
        next = await this.options.api.createSession(this.options.target, signal);
      }
      if (this.phase !== 'switching') return;
      this.adopt(next);
      this.scheduleRefresh();
      this.emit({ type: 'resumed', session: next, previousSessionId: previousId });
    } catch (err) {
      if (this.phase !== 'switching') return;
      const endReason = reason === 'not_signed_in' ? 'not_signed_in' : reason;
      const interrupted = isAbortError(err);
      this.finish({
        reason: interrupted ? 'interrupted' : endReason,
        sessionId: previousId,
        error: err,
        reauthFailed: !interrupted,
      });
    }
  }

  private async signInAgain(
    reason: TunnelEndReason | 'reauth_required',
    sessionId: string | undefined,
    signal: AbortSignal,
  ): Promise<void> {
    this.emit({ type: 'reauthenticating', reason, sessionId });
    await this.options.reauth!(signal);
    await this.options.tokens.reload();
    await this.options.tokens.getAccessToken({ signal });
  }

  /** After a sign-in the old session may still be open (only the token had run out). */
  private async stillActive(
    id: string | undefined,
    signal: AbortSignal,
  ): Promise<SessionState | undefined> {
    if (!id || this.session?.state === 'ended') return undefined;
    try {
      const state = await this.options.api.getSession(id, signal);
      return state.state === 'active' ? state : undefined;
    } catch {
      return undefined;
    }
  }

  /** A new session, or undefined when the gateway wants a fresh sign-in first. */
  private async tryCreate(signal: AbortSignal): Promise<SessionState | undefined> {
    try {
      return await this.options.api.createSession(this.options.target, signal);
    } catch (err) {
      if (isLogproxyError(err, ErrorCodes.REAUTH_REQUIRED) || isAuthLost(err)) return undefined;
      throw err;
    }
  }

  private finish(end: TunnelEnd): void {
    if (this.phase === 'done') return;
    this.phase = 'done';
    this.heartbeatTimer?.cancel();
    this.refreshTimer?.cancel();
    this.abort.abort('tunnel over');
    for (const w of this.waiters.slice()) w.reject(this.overError());
    this.resolveDone(end);
  }

  private overError(): LogproxyError {
    return new LogproxyError(ErrorCodes.SESSION_ENDED, 'the tunnel is closing');
  }

  private emit(event: KeeperEvent): void {
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch {
        // A listener's bug must not stop heartbeats; listeners are the CLI's renderers.
      }
    }
  }
}

/** Thresholds (seconds before the end) already reached with `secondsLeft` to go. */
function crossed(thresholdsS: number[], secondsLeft: number): number[] {
  return thresholdsS.filter((t) => secondsLeft <= t);
}

/**
 * Exponential backoff with jitter: 0.5 s, 1 s, 2 s... capped at the heartbeat interval, each
 * scaled into [50%, 100%] so many tunnels behind one flaky network do not retry in step.
 */
export function backoffMs(attempt: number, capMs: number, random: number): number {
  const raw = Math.min(capMs, FIRST_RETRY_MS * 2 ** (attempt - 1));
  return Math.round(raw * (0.5 + random / 2));
}

const RESUMABLE: ReadonlySet<EndReason> = new Set<EndReason>([
  'idle_timeout',
  'max_lifetime',
  'client_lost',
]);

const END_REASON_BY_CODE: Partial<Record<string, EndReason>> = {
  [ErrorCodes.SESSION_IDLE_TIMEOUT]: 'idle_timeout',
  [ErrorCodes.SESSION_MAX_LIFETIME]: 'max_lifetime',
  [ErrorCodes.SESSION_REVOKED]: 'revoked',
  [ErrorCodes.SESSION_ENDED]: 'ended',
};

const END_REASONS: ReadonlySet<string> = new Set<EndReason>([
  'idle_timeout',
  'max_lifetime',
  'client_lost',
  'revoked',
  'ended',
  'gateway_shutdown',
]);

/** The session's end reason when `err` says the gateway ended it, else undefined. */
export function endReasonFromError(err: unknown): EndReason | undefined {
  if (!isLogproxyError(err)) return undefined;
  const detail = err.details.reason;
  if (typeof detail === 'string' && END_REASONS.has(detail)) return detail as EndReason;
  return END_REASON_BY_CODE[err.code];
}

function isAuthLost(err: unknown): boolean {
  return (
    isLogproxyError(err, ErrorCodes.NOT_SIGNED_IN) ||
    isLogproxyError(err, ErrorCodes.REAUTH_REQUIRED)
  );
}

/** Worth retrying: the network, a timeout, a 5xx, or anything not classified as final. */
function isTransient(err: unknown): boolean {
  if (!isLogproxyError(err)) return true;
  if (err.retryable) return true;
  const codes: string[] = [ErrorCodes.UNREACHABLE, ErrorCodes.TIMEOUT, ErrorCodes.BAD_RESPONSE];
  return codes.includes(err.code);
}
