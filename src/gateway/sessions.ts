/**
 * The gateway's session state machine. Silent: it emits typed events (audit.ts and
 * metrics.ts subscribe) and throws LogproxyError; every time comes from the injected clock,
 * never from a client.
 *
 * Rules (docs/gateway.md, "Sessions"):
 * - idle timeout: only `recordActivity()` (real traffic through the data plane) resets it;
 *   heartbeats prove the client is alive and never do;
 * - absolute lifetime, whatever the activity;
 * - client_lost when no heartbeat (or traffic) came for `heartbeatMissesAllowed` intervals
 *   plus half an interval of grace;
 * - revocation and client ends take effect at once: the session's AbortSignal fires, so the
 *   data plane cuts open streams;
 * - after an idle or lifetime expiry at time T, a new session of the same subject on the
 *   same target needs a token with auth_time > T unless the target allows silent resume.
 *
 * One timer per session, set for its earliest deadline (an end, a warning or client_lost).
 * Activity and heartbeats only move deadlines later, so they update fields without touching
 * the timer: a timer that fires early re-evaluates and sets itself again. That keeps
 * `recordActivity()` cheap enough to call on every streamed chunk.
 */
import { randomBytes } from 'node:crypto';
import type { EndReason, SessionState } from '../protocol/api.js';
import type { Clock, TimerHandle } from '../util/clock.js';
import { ErrorCodes, LogproxyError } from '../util/errors.js';
import { effectivePolicy, isAllowed, toWirePolicy } from './policy.js';
import type { LiveSession, Principal, SessionPolicyConfig, TargetConfig } from './types.js';

/** How long an ended session can still be read (state `ended` + reason) before it is pruned. */
export const DEFAULT_RETAIN_ENDED_MS = 60 * 60_000;

/** A subject whose last session on a target expired at `endedAtMs` (idle or lifetime). */
export interface ReauthMark {
  subject: string;
  target: string;
  endedAtMs: number;
}

const SEEN_TOKEN_IDS = 8;

export type ExpiryReason = 'idle_timeout' | 'max_lifetime' | 'client_lost';

/** The identifying part of a session every event carries. */
export interface SessionRef {
  id: string;
  subject: string;
  target: string;
}

export type SessionEvent =
  | { type: 'created'; session: SessionRef; policy: SessionPolicyConfig; tokenId?: string }
  | {
      type: 'warned';
      session: SessionRef;
      /** Which end is coming. */
      ending: 'idle_timeout' | 'max_lifetime';
      thresholdMs: number;
      remainingMs: number;
    }
  | { type: 'heartbeat'; session: SessionRef }
  | { type: 'refreshed'; session: SessionRef; tokenId?: string; tokenExpiresAtMs: number }
  | { type: 'expired'; session: SessionRef; reason: ExpiryReason }
  | { type: 'revoked'; session: SessionRef; by: string }
  | { type: 'ended'; session: SessionRef; reason: 'ended' | 'gateway_shutdown' };

export type SessionEventType = SessionEvent['type'];
type EventOf<K extends SessionEventType> = Extract<SessionEvent, { type: K }>;

export interface SessionManagerOptions {
  clock: Clock;
  defaults: SessionPolicyConfig;
  targets: Record<string, TargetConfig>;
  retainEndedMs?: number;
}

interface Session {
  ref: SessionRef;
  policy: SessionPolicyConfig;
  createdAtMs: number;
  lastActivityMs: number;
  lastHeartbeatMs: number;
  expiresAtMs: number;
  tokenExpiresAtMs: number;
  /** `jti`s of the tokens seen on this session, newest last (at most SEEN_TOKEN_IDS). */
  tokenIds: string[];
  warned: Set<string>;
  controller: AbortController;
  timer?: TimerHandle;
  endedAtMs?: number;
  endReason?: EndReason;
  live: LiveSession;
}

export class SessionManager {
  private readonly clock: Clock;
  private readonly defaults: SessionPolicyConfig;
  private readonly targets: Record<string, TargetConfig>;
  private readonly retainEndedMs: number;
  private readonly sessions = new Map<string, Session>();
  /** `${subject}\0${target}` -> when a session of theirs last expired by idle or lifetime. */
  private readonly reauthAfter = new Map<string, number>();
  private readonly listeners = new Map<string, Array<(e: SessionEvent) => void>>();

  constructor(options: SessionManagerOptions) {
    this.clock = options.clock;
    this.defaults = options.defaults;
    this.targets = options.targets;
    this.retainEndedMs = options.retainEndedMs ?? DEFAULT_RETAIN_ENDED_MS;
  }

  /** Subscribes to one event type; returns the unsubscribe function. */
  on<K extends SessionEventType>(type: K, listener: (e: EventOf<K>) => void): () => void {
    const list = this.listeners.get(type) ?? [];
    list.push(listener as (e: SessionEvent) => void);
    this.listeners.set(type, list);
    return () => {
      const i = list.indexOf(listener as (e: SessionEvent) => void);
      if (i >= 0) list.splice(i, 1);
    };
  }

  /** The policy sessions of this target run under. */
  policyFor(target: TargetConfig): SessionPolicyConfig {
    return effectivePolicy(this.defaults, target);
  }

  /**
   * Opens a session. Throws LogproxyError NOT_FOUND (no such target), ACCESS_DENIED (not in
   * the target's allow list) or REAUTH_REQUIRED (see the module comment).
   */
  create(principal: Principal, targetName: string): SessionState {
    const target = Object.hasOwn(this.targets, targetName) ? this.targets[targetName] : undefined;
    if (!target) {
      throw new LogproxyError(ErrorCodes.NOT_FOUND, `no target named ${targetName}`);
    }
    if (!isAllowed(target, principal.subject)) {
      throw new LogproxyError(
        ErrorCodes.ACCESS_DENIED,
        `${principal.subject} may not open sessions on ${targetName}`,
      );
    }
    const policy = this.policyFor(target);
    this.checkReauth(principal, targetName, policy);

    const now = this.clock.now();
    const ref = { id: newSessionId(), subject: principal.subject, target: targetName };
    const controller = new AbortController();
    const session: Session = {
      ref,
      policy,
      createdAtMs: now,
      lastActivityMs: now,
      lastHeartbeatMs: now,
      expiresAtMs: now + policy.maxLifetimeMs,
      tokenExpiresAtMs: principal.expiresAtMs,
      tokenIds: principal.tokenId ? [principal.tokenId] : [],
      warned: new Set(),
      controller,
      live: undefined as unknown as LiveSession,
    };
    session.live = {
      id: ref.id,
      subject: ref.subject,
      target: ref.target,
      signal: controller.signal,
      recordActivity: () => this.recordActivity(session),
    };
    this.sessions.set(ref.id, session);
    this.emit({ type: 'created', session: ref, policy, ...tokenIdOf(principal) });
    this.schedule(session);
    return this.stateOf(session);
  }

  private checkReauth(principal: Principal, target: string, policy: SessionPolicyConfig) {
    const key = `${principal.subject}\0${target}`;
    const endedAt = this.reauthAfter.get(key);
    if (endedAt === undefined) return;
    // `auth_time` has whole seconds: a sign-in approved within the same second as the end
    // (an auto-approving provider does that) must count as after it. Only a session shorter
    // than a second could be let through wrongly, and none is.
    const endedSecondMs = Math.floor(endedAt / 1000) * 1000;
    if (policy.silentResume || (principal.authTimeMs ?? -Infinity) >= endedSecondMs) {
      this.reauthAfter.delete(key);
      return;
    }
    throw new LogproxyError(
      ErrorCodes.REAUTH_REQUIRED,
      `your last session on ${target} expired; sign in again to open a new one`,
      { details: { ended_at: new Date(endedAt).toISOString() } },
    );
  }

  /**
   * Restores "sign in again" marks after a restart (from the audit trail, see
   * audit.ts `readReauthMarks`), so a restart does not let an expired person back in with
   * their old token. A later mark for the same subject and target wins.
   */
  restoreReauthMarks(marks: Iterable<ReauthMark>): void {
    for (const m of marks) {
      const key = `${m.subject}\0${m.target}`;
      if ((this.reauthAfter.get(key) ?? -Infinity) < m.endedAtMs)
        this.reauthAfter.set(key, m.endedAtMs);
    }
  }

  /** The session if it exists and belongs to `subject` (or `subject` is undefined: admin). */
  find(id: string, subject?: string): LiveSession | undefined {
    const s = this.sessions.get(id);
    if (!s || (subject !== undefined && s.ref.subject !== subject)) return undefined;
    return s.live;
  }

  /** Wire state of a session owned by `subject` (any owner when subject is undefined). */
  read(id: string, subject?: string): SessionState | undefined {
    const s = this.sessions.get(id);
    if (!s || (subject !== undefined && s.ref.subject !== subject)) return undefined;
    return this.stateOf(s);
  }

  isActive(id: string): boolean {
    const s = this.sessions.get(id);
    return s !== undefined && s.endedAtMs === undefined;
  }

  /** Sessions of one subject, or everyone's when subject is undefined; newest first. */
  list(subject?: string): SessionState[] {
    return [...this.sessions.values()]
      .filter((s) => subject === undefined || s.ref.subject === subject)
      .sort((a, b) => b.createdAtMs - a.createdAtMs)
      .map((s) => this.stateOf(s));
  }

  /** Counts active sessions per target (metrics). */
  activeByTarget(): Map<string, number> {
    const out = new Map<string, number>();
    for (const s of this.sessions.values()) {
      if (s.endedAtMs === undefined) out.set(s.ref.target, (out.get(s.ref.target) ?? 0) + 1);
    }
    return out;
  }

  /** A heartbeat: proves the client alive; never resets idle. Ended sessions: no change. */
  heartbeat(id: string, subject: string): SessionState | undefined {
    const s = this.sessions.get(id);
    if (!s || s.ref.subject !== subject) return undefined;
    if (s.endedAtMs === undefined) {
      s.lastHeartbeatMs = this.clock.now();
      this.emit({ type: 'heartbeat', session: s.ref });
    }
    return this.stateOf(s);
  }

  /**
   * Notes the token a request on this session came with: a newer token (later exp or another
   * jti) than the last one seen is a refresh, and is reported once.
   */
  noteToken(id: string, principal: Principal): void {
    const s = this.sessions.get(id);
    if (!s || s.endedAtMs !== undefined || s.ref.subject !== principal.subject) return;
    if (principal.expiresAtMs < s.tokenExpiresAtMs) return; // an older token still in use
    const seen = principal.tokenId !== undefined && s.tokenIds.includes(principal.tokenId);
    const later = principal.expiresAtMs > s.tokenExpiresAtMs;
    if (seen || (!later && principal.tokenId === undefined)) return;
    s.tokenExpiresAtMs = principal.expiresAtMs;
    if (principal.tokenId) {
      // A client may alternate between a few tokens for a while (requests in flight while it
      // refreshes); remembering the last few ids reports each token once.
      s.tokenIds.push(principal.tokenId);
      if (s.tokenIds.length > SEEN_TOKEN_IDS) s.tokenIds.shift();
    }
    this.emit({
      type: 'refreshed',
      session: s.ref,
      tokenExpiresAtMs: principal.expiresAtMs,
      ...tokenIdOf(principal),
    });
  }

  /** The owner ends a session. Returns the final state, or undefined if not theirs. */
  end(id: string, subject: string): SessionState | undefined {
    const s = this.sessions.get(id);
    if (!s || s.ref.subject !== subject) return undefined;
    if (s.endedAtMs === undefined) {
      this.finish(s, 'ended');
      this.emit({ type: 'ended', session: s.ref, reason: 'ended' });
    }
    return this.stateOf(s);
  }

  /** An admin ends anyone's session at once. */
  revoke(id: string, by: string): SessionState | undefined {
    const s = this.sessions.get(id);
    if (!s) return undefined;
    if (s.endedAtMs === undefined) {
      this.finish(s, 'revoked');
      this.emit({ type: 'revoked', session: s.ref, by });
    }
    return this.stateOf(s);
  }

  /** Ends every active session as gateway_shutdown (clean stop) and drops all timers. */
  shutdown(): void {
    for (const s of this.sessions.values()) {
      if (s.endedAtMs === undefined) {
        this.finish(s, 'gateway_shutdown');
        this.emit({ type: 'ended', session: s.ref, reason: 'gateway_shutdown' });
      }
      s.timer?.cancel();
    }
  }

  // ---------- internals ----------

  private recordActivity(s: Session): void {
    if (s.endedAtMs !== undefined) return;
    s.lastActivityMs = this.clock.now();
    for (const key of s.warned) if (key.startsWith('idle_timeout')) s.warned.delete(key);
  }

  private idleEndMs(s: Session): number {
    return s.lastActivityMs + s.policy.idleTimeoutMs;
  }

  private lostAtMs(s: Session): number {
    // Missing `heartbeatMissesAllowed` beats in a row, plus half an interval so a beat that
    // is merely late on a slow network does not end the session.
    const { heartbeatIntervalMs: every, heartbeatMissesAllowed: misses } = s.policy;
    return Math.max(s.lastHeartbeatMs, s.lastActivityMs) + every * misses + every / 2;
  }

  /** The end that comes first if nothing happens, and when. */
  private nextEnd(s: Session): { ending: 'idle_timeout' | 'max_lifetime'; atMs: number } {
    const idle = this.idleEndMs(s);
    return idle < s.expiresAtMs
      ? { ending: 'idle_timeout', atMs: idle }
      : { ending: 'max_lifetime', atMs: s.expiresAtMs };
  }

  private schedule(s: Session): void {
    s.timer?.cancel();
    if (s.endedAtMs !== undefined) return;
    const now = this.clock.now();
    const { ending, atMs } = this.nextEnd(s);
    let next = Math.min(atMs, this.lostAtMs(s));
    for (const w of this.warnThresholds(s, ending)) {
      if (!s.warned.has(`${ending}:${atMs}:${w}`) && atMs - w > now)
        next = Math.min(next, atMs - w);
    }
    s.timer = this.clock.setTimeout(() => this.evaluate(s), Math.max(0, next - now));
  }

  /** Thresholds that make sense for this end: a 5m warning on a 3m idle timeout does not. */
  private warnThresholds(s: Session, ending: 'idle_timeout' | 'max_lifetime'): number[] {
    const span = ending === 'idle_timeout' ? s.policy.idleTimeoutMs : s.policy.maxLifetimeMs;
    return s.policy.warnBeforeMs.filter((w) => w < span);
  }

  private evaluate(s: Session): void {
    if (s.endedAtMs !== undefined) return;
    const now = this.clock.now();
    if (now >= s.expiresAtMs) return this.expire(s, 'max_lifetime');
    if (now >= this.idleEndMs(s)) return this.expire(s, 'idle_timeout');
    if (now >= this.lostAtMs(s)) return this.expire(s, 'client_lost');

    const { ending, atMs } = this.nextEnd(s);
    const remaining = atMs - now;
    // Only the tightest crossed threshold is announced: after a long pause (a suspended
    // laptop) one warning, not a burst.
    const crossed = this.warnThresholds(s, ending).filter(
      (w) => remaining <= w && !s.warned.has(`${ending}:${atMs}:${w}`),
    );
    if (crossed.length > 0) {
      for (const w of crossed) s.warned.add(`${ending}:${atMs}:${w}`);
      const thresholdMs = Math.min(...crossed);
      this.emit({ type: 'warned', session: s.ref, ending, thresholdMs, remainingMs: remaining });
    }
    this.schedule(s);
  }

  private expire(s: Session, reason: ExpiryReason): void {
    this.finish(s, reason);
    if (reason !== 'client_lost') {
      this.reauthAfter.set(`${s.ref.subject}\0${s.ref.target}`, s.endedAtMs!);
    }
    this.emit({ type: 'expired', session: s.ref, reason });
  }

  private finish(s: Session, reason: EndReason): void {
    s.timer?.cancel();
    s.endedAtMs = this.clock.now();
    s.endReason = reason;
    s.controller.abort(reason);
    s.timer = this.clock.setTimeout(() => this.sessions.delete(s.ref.id), this.retainEndedMs);
  }

  private stateOf(s: Session): SessionState {
    const now = s.endedAtMs ?? this.clock.now();
    const idleEnd = Math.min(this.idleEndMs(s), s.expiresAtMs);
    const state: SessionState = {
      id: s.ref.id,
      target: s.ref.target,
      subject: s.ref.subject,
      state: s.endedAtMs === undefined ? 'active' : 'ended',
      created_at: iso(s.createdAtMs),
      last_activity_at: iso(s.lastActivityMs),
      idle_expires_at: iso(idleEnd),
      expires_at: iso(s.expiresAtMs),
      idle_s: seconds(now - s.lastActivityMs),
      seconds_to_idle_expiry: s.endedAtMs === undefined ? secondsLeft(idleEnd - now) : 0,
      seconds_to_absolute_end: s.endedAtMs === undefined ? secondsLeft(s.expiresAtMs - now) : 0,
      policy: toWirePolicy(s.policy),
    };
    if (s.endedAtMs !== undefined) {
      state.ended_at = iso(s.endedAtMs);
      state.end_reason = s.endReason!;
    }
    return state;
  }

  private emit(event: SessionEvent): void {
    for (const listener of this.listeners.get(event.type) ?? []) {
      // A failing subscriber (say, a full disk under the audit file) must not stop the
      // state machine; subscribers report their own failures.
      try {
        listener(event);
      } catch {
        // reported by the subscriber
      }
    }
  }
}

/** 128 random bits, base64url, with a prefix that makes ids recognisable in logs. */
export function newSessionId(): string {
  return `ses_${randomBytes(16).toString('base64url')}`;
}

export const SESSION_ID_PATTERN = /^ses_[A-Za-z0-9_-]{22}$/;

function tokenIdOf(p: Principal): { tokenId?: string } {
  return p.tokenId ? { tokenId: p.tokenId } : {};
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

/** Whole seconds elapsed. */
function seconds(ms: number): number {
  return Math.max(0, Math.floor(ms / 1000));
}

/** Whole seconds left, rounded up: "0 left" only once the end has come. */
function secondsLeft(ms: number): number {
  return Math.max(0, Math.ceil(ms / 1000));
}
