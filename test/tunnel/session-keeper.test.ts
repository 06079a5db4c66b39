/**
 * The keeper's timing logic (backoff, grace, warning thresholds, refresh schedule, re-auth
 * switch) against a ManualClock and a scripted sessions API. The real gateway is exercised by
 * test/cli/connect*.test.ts; here an hour of session life takes milliseconds.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../../src/util/clock.js';
import { ErrorCodes, LogproxyError } from '../../src/util/errors.js';
import type { EndReason, SessionState } from '../../src/protocol/api.js';
import type { AccessTokenSource, GatewayApi } from '../../src/auth/types.js';
import {
  SessionKeeper,
  backoffMs,
  endReasonFromError,
  type KeeperEvent,
} from '../../src/tunnel/session-keeper.js';

interface Policy {
  idleS: number;
  maxS: number;
  intervalS: number;
  warnS: number[];
}

/** A sessions API computed from the manual clock, like the gateway does from its own. */
class ScriptedGateway {
  down = false;
  needsSignIn = false;
  creates = 0;
  heartbeats = 0;
  ended: string[] = [];
  private sessions = new Map<string, { created: number; activity: number; end?: EndReason }>();

  constructor(
    private readonly clock: ManualClock,
    private readonly policy: Policy,
  ) {}

  touch(id: string): void {
    this.sessions.get(id)!.activity = this.clock.now();
  }

  endSession(id: string, reason: EndReason): void {
    this.sessions.get(id)!.end = reason;
  }

  state(id: string): SessionState {
    const s = this.sessions.get(id)!;
    const now = this.clock.now();
    const idleEnd = s.activity + this.policy.idleS * 1000;
    const absEnd = s.created + this.policy.maxS * 1000;
    if (!s.end && now >= absEnd) s.end = 'max_lifetime';
    if (!s.end && now >= idleEnd) s.end = 'idle_timeout';
    return {
      id,
      target: 't',
      subject: 'alice',
      state: s.end ? 'ended' : 'active',
      created_at: new Date(s.created).toISOString(),
      last_activity_at: new Date(s.activity).toISOString(),
      idle_expires_at: new Date(idleEnd).toISOString(),
      expires_at: new Date(absEnd).toISOString(),
      idle_s: Math.floor((now - s.activity) / 1000),
      seconds_to_idle_expiry: Math.max(0, Math.floor((idleEnd - now) / 1000)),
      seconds_to_absolute_end: Math.max(0, Math.floor((absEnd - now) / 1000)),
      policy: {
        idle_timeout_s: this.policy.idleS,
        max_lifetime_s: this.policy.maxS,
        heartbeat_interval_s: this.policy.intervalS,
        warn_before_s: this.policy.warnS,
        silent_resume: false,
      },
      ...(s.end ? { end_reason: s.end } : {}),
    };
  }

  api(): GatewayApi {
    const unreachable = (): LogproxyError =>
      new LogproxyError(ErrorCodes.UNREACHABLE, 'connection refused', { retryable: true });
    return {
      baseUrl: 'http://gateway.test',
      discovery: () => Promise.reject(new Error('unused')),
      listTargets: () => Promise.reject(new Error('unused')),
      listSessions: () => Promise.reject(new Error('unused')),
      revokeSession: () => Promise.reject(new Error('unused')),
      createSession: async () => {
        if (this.down) throw unreachable();
        if (this.needsSignIn) throw new LogproxyError(ErrorCodes.REAUTH_REQUIRED, 'sign in');
        this.creates += 1;
        const id = `s${this.creates}`;
        this.sessions.set(id, { created: this.clock.now(), activity: this.clock.now() });
        return this.state(id);
      },
      getSession: async (id) => this.state(id),
      heartbeat: async (id) => {
        if (this.down) throw unreachable();
        this.heartbeats += 1;
        return this.state(id);
      },
      endSession: async (id) => {
        this.ended.push(id);
        this.endSession(id, 'ended');
      },
    };
  }
}

class CountingTokens implements AccessTokenSource {
  refreshes = 0;
  reloads = 0;
  expiresAt: number;
  constructor(
    private readonly clock: ManualClock,
    private readonly ttlMs: number,
  ) {
    this.expiresAt = clock.now() + ttlMs;
  }
  async getAccessToken(): Promise<string> {
    return `token-${this.refreshes}`;
  }
  async refresh(): Promise<string> {
    this.refreshes += 1;
    this.expiresAt = this.clock.now() + this.ttlMs;
    return `token-${this.refreshes}`;
  }
  async reload(): Promise<void> {
    this.reloads += 1;
  }
  describe() {
    return { subject: 'alice', accessTokenExpiresAt: this.expiresAt, hasRefreshToken: true };
  }
}

function setup(policy: Policy, opts: { reauth?: () => Promise<void>; ttlMs?: number } = {}) {
  const clock = new ManualClock(0);
  const gateway = new ScriptedGateway(clock, policy);
  const tokens = new CountingTokens(clock, opts.ttlMs ?? 3_600_000);
  const events: KeeperEvent[] = [];
  const keeper = new SessionKeeper({
    api: gateway.api(),
    tokens,
    target: 't',
    clock,
    random: () => 1,
    ...(opts.reauth ? { reauth: opts.reauth } : {}),
  });
  keeper.on((e) => events.push(e));
  return { clock, gateway, tokens, events, keeper };
}

const of = <T extends KeeperEvent['type']>(events: KeeperEvent[], type: T) =>
  events.filter((e): e is Extract<KeeperEvent, { type: T }> => e.type === type);

test('heartbeats at the gateway interval and warns once per lifetime threshold', async () => {
  const { clock, gateway, events, keeper } = setup({
    idleS: 3600,
    maxS: 600,
    intervalS: 30,
    warnS: [300, 60],
  });
  await keeper.start();
  // Keep the session busy so only the absolute end matters.
  for (let t = 0; t < 590; t += 10) {
    gateway.touch('s1');
    await clock.advanceAsync(10_000, 1000);
  }
  const warnings = of(events, 'warning');
  assert.deepEqual(
    warnings.map((w) => [w.kind, w.thresholdS]),
    [
      ['lifetime', 300],
      ['lifetime', 60],
    ],
  );
  // Each warning comes from a heartbeat answer taken just after the threshold.
  assert.ok(warnings[0]!.secondsLeft <= 300 && warnings[0]!.secondsLeft >= 298);
  assert.ok(warnings[1]!.secondsLeft <= 60 && warnings[1]!.secondsLeft >= 58);
  assert.ok(gateway.heartbeats >= 19 && gateway.heartbeats <= 23, `${gateway.heartbeats}`);
  keeper.stop();
});

test('the session ends at its maximum lifetime without re-auth', async () => {
  const { clock, gateway, keeper } = setup({ idleS: 3600, maxS: 120, intervalS: 30, warnS: [60] });
  await keeper.start();
  for (let t = 0; t < 200 && !keeper.isOver(); t += 5) {
    gateway.touch('s1');
    await clock.advanceAsync(5000, 1000);
  }
  const end = await keeper.done;
  assert.equal(end.reason, 'max_lifetime');
  assert.equal(end.sessionId, 's1');
});

test('idle warnings come from the gateway, re-arm after traffic, then idle expiry', async () => {
  const { clock, gateway, events, keeper } = setup({
    idleS: 900,
    maxS: 36_000,
    intervalS: 30,
    warnS: [300, 120, 7200],
  });
  await keeper.start();
  await clock.advanceAsync(800_000, 1000);
  let idle = of(events, 'warning').filter((w) => w.kind === 'idle');
  assert.deepEqual(
    idle.map((w) => w.thresholdS),
    [300, 120],
    'the 2h threshold is longer than the idle timeout and never warns',
  );
  assert.ok(idle[1]!.idleS >= 779 && idle[1]!.secondsLeft <= 120);

  gateway.touch('s1');
  await clock.advanceAsync(31_000, 1000);
  await clock.advanceAsync(800_000, 1000);
  idle = of(events, 'warning').filter((w) => w.kind === 'idle');
  assert.equal(idle.length, 4, 'warned again after the idle clock was reset by traffic');

  await clock.advanceAsync(200_000, 1000);
  const end = await keeper.done;
  assert.equal(end.reason, 'idle_timeout');
});

test('a failed heartbeat is retried with backoff; the tunnel ends only past the grace', async () => {
  const { clock, gateway, events, keeper } = setup({
    idleS: 3600,
    maxS: 36_000,
    intervalS: 10,
    warnS: [],
  });
  await keeper.start();
  await clock.advanceAsync(10_000, 500);
  assert.equal(gateway.heartbeats, 1);

  gateway.down = true;
  await clock.advanceAsync(20_000, 250);
  const failures = of(events, 'heartbeat_failed');
  assert.deepEqual(
    failures.slice(0, 5).map((f) => f.retryInMs),
    [500, 1000, 2000, 4000, 8000],
  );
  assert.equal(keeper.isOver(), false, 'still within the grace of three intervals');

  gateway.down = false;
  await clock.advanceAsync(9_000, 250);
  assert.ok(gateway.heartbeats >= 2, 'heartbeats resumed once the gateway answered');
  assert.equal(keeper.isOver(), false);

  gateway.down = true;
  await clock.advanceAsync(40_000, 250);
  const end = await keeper.done;
  assert.equal(end.reason, 'gateway_lost');
  const last = of(events, 'heartbeat_failed').at(-1)!;
  assert.ok(last.retryInMs <= 10_000);
});

test('backoff doubles, is capped at the interval and jittered into [50%, 100%]', () => {
  assert.equal(backoffMs(1, 30_000, 1), 500);
  assert.equal(backoffMs(3, 30_000, 1), 2000);
  assert.equal(backoffMs(20, 30_000, 1), 30_000);
  assert.equal(backoffMs(20, 30_000, 0), 15_000);
});

test('the access token is refreshed before it expires', async () => {
  const { clock, tokens, events, keeper } = setup(
    { idleS: 36_000, maxS: 36_000, intervalS: 30, warnS: [] },
    { ttlMs: 600_000 },
  );
  await keeper.start();
  await clock.advanceAsync(539_000, 1000);
  assert.equal(tokens.refreshes, 0);
  await clock.advanceAsync(2_000, 1000);
  assert.equal(tokens.refreshes, 1, 'refreshed a minute before expiry');
  assert.equal(of(events, 'refreshed').length, 1);
  assert.equal(await keeper.accessToken(), 'token-1');
  await clock.advanceAsync(1_200_000, 1000);
  assert.equal(tokens.refreshes, 3);
  keeper.stop();
});

test('short tokens refresh at half-life; concurrent refreshes share one call', async () => {
  const { clock, tokens, keeper } = setup(
    { idleS: 36_000, maxS: 36_000, intervalS: 30, warnS: [] },
    { ttlMs: 10_000 },
  );
  await keeper.start();
  await clock.advanceAsync(5_500, 500);
  assert.equal(tokens.refreshes, 1);
  const [a, b] = await Promise.all([keeper.refreshToken(), keeper.refreshToken()]);
  assert.equal(a, b);
  assert.equal(tokens.refreshes, 2);
  keeper.stop();
});

test('on expiry with re-auth, requests wait and resume on a new session', async () => {
  let signIns = 0;
  const { clock, gateway, tokens, events, keeper } = setup(
    { idleS: 60, maxS: 36_000, intervalS: 5, warnS: [] },
    {
      reauth: async () => {
        signIns += 1;
        gateway.needsSignIn = false;
      },
    },
  );
  await keeper.start();
  gateway.needsSignIn = true;
  await clock.advanceAsync(61_000, 500);
  assert.equal(signIns, 1);
  assert.equal(tokens.reloads, 1);
  assert.equal(keeper.current()?.id, 's2');
  const types = events.map((e) => e.type).filter((t) => t !== 'heartbeat');
  assert.deepEqual(types.slice(-3), ['reauthenticating', 'session', 'resumed']);
  keeper.stop();
});

test('waitForSession holds callers during the switch and times out when it drags', async () => {
  let release!: () => void;
  const { clock, gateway, keeper } = setup(
    { idleS: 10, maxS: 36_000, intervalS: 5, warnS: [] },
    { reauth: () => new Promise<void>((resolve) => (release = resolve)) },
  );
  await keeper.start();
  gateway.needsSignIn = true;
  await clock.advanceAsync(11_000, 500);
  assert.equal(keeper.current(), undefined, 'switching');

  const late = keeper.waitForSession(1000).catch((e: unknown) => e);
  const waiting = keeper.waitForSession(60_000);
  await clock.advanceAsync(1500, 500);
  assert.equal(((await late) as LogproxyError).code, ErrorCodes.TIMEOUT);

  gateway.needsSignIn = false;
  release();
  await clock.advanceAsync(100, 100);
  assert.equal((await waiting).id, 's2');
  keeper.stop();
});

test('without re-auth a revoked or expired session ends the tunnel with its reason', async () => {
  const { clock, gateway, keeper } = setup({ idleS: 600, maxS: 3600, intervalS: 5, warnS: [] });
  await keeper.start();
  gateway.endSession('s1', 'revoked');
  await clock.advanceAsync(5_000, 500);
  assert.deepEqual(await keeper.done, { reason: 'revoked', sessionId: 's1' });
});

test('a data-plane 410 is acted on at once; stale reports are ignored', async () => {
  const { keeper } = setup({ idleS: 600, maxS: 3600, intervalS: 5, warnS: [] });
  await keeper.start();
  keeper.reportSessionEnded('s0', 'revoked');
  assert.equal(keeper.isOver(), false);
  keeper.reportSessionEnded('s1', 'revoked');
  assert.equal((await keeper.done).reason, 'revoked');
});

test('release ends the session at the gateway once', async () => {
  const { gateway, keeper } = setup({ idleS: 600, maxS: 3600, intervalS: 5, warnS: [] });
  await keeper.start();
  keeper.stop('interrupted');
  assert.equal((await keeper.done).reason, 'interrupted');
  await keeper.release();
  await keeper.release();
  assert.deepEqual(gateway.ended, ['s1']);
});

test('end reasons are read from problem details or error codes', () => {
  const detailed = new LogproxyError(ErrorCodes.SESSION_ENDED, 'x', {
    details: { reason: 'client_lost' },
  });
  assert.equal(endReasonFromError(detailed), 'client_lost');
  assert.equal(endReasonFromError(new LogproxyError(ErrorCodes.SESSION_REVOKED, 'x')), 'revoked');
  assert.equal(endReasonFromError(new LogproxyError(ErrorCodes.UNREACHABLE, 'x')), undefined);
});

test('a failed re-auth ends the tunnel with the original reason', async () => {
  const { clock, gateway, keeper } = setup(
    { idleS: 10, maxS: 36_000, intervalS: 5, warnS: [] },
    {
      reauth: async () => {
        throw new LogproxyError(ErrorCodes.DEVICE_CODE_EXPIRED, 'the code expired');
      },
    },
  );
  await keeper.start();
  gateway.needsSignIn = true;
  await clock.advanceAsync(11_000, 500);
  const end = await keeper.done;
  assert.equal(end.reason, 'idle_timeout');
  assert.equal(end.reauthFailed, true);
  assert.equal((end.error as LogproxyError).code, ErrorCodes.DEVICE_CODE_EXPIRED);
});

test('after client_lost (a sleeping laptop) a new session opens without a sign-in', async () => {
  let signIns = 0;
  const { clock, gateway, events, keeper } = setup(
    { idleS: 600, maxS: 36_000, intervalS: 5, warnS: [] },
    { reauth: async () => void signIns++ },
  );
  await keeper.start();
  gateway.endSession('s1', 'client_lost');
  await clock.advanceAsync(5_000, 500);
  assert.equal(keeper.current()?.id, 's2');
  assert.equal(signIns, 0);
  assert.equal(of(events, 'resumed').length, 1);
  keeper.stop();
});
