import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AuditLog, auditSessions } from '../../src/gateway/audit.js';
import { SESSION_ID_PATTERN, SessionManager } from '../../src/gateway/sessions.js';
import type { SessionEvent } from '../../src/gateway/sessions.js';
import type { Principal, SessionPolicyConfig, TargetConfig } from '../../src/gateway/types.js';
import { ManualClock } from '../../src/util/clock.js';
import { ErrorCodes, isLogproxyError } from '../../src/util/errors.js';

const MIN = 60_000;
const HOUR = 60 * MIN;

const defaults: SessionPolicyConfig = {
  idleTimeoutMs: 15 * MIN,
  maxLifetimeMs: 2 * HOUR,
  heartbeatIntervalMs: 30_000,
  warnBeforeMs: [5 * MIN, MIN],
  heartbeatMissesAllowed: 3,
  silentResume: false,
};

function target(name: string, extra: Partial<TargetConfig> = {}): TargetConfig {
  return {
    name,
    source: { type: 'demo', ratePerSec: 1, historyLines: 0, seed: 1 },
    allow: ['alice', 'bob'],
    session: {},
    activity: 'requests',
    ...extra,
  };
}

const targets = {
  prod: target('prod'),
  quick: target('quick', { session: { silentResume: true, idleTimeoutMs: 5 * MIN } }),
  secret: target('secret', { allow: ['bob'] }),
};

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'lp-sessions-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A manager with its audit trail in a fresh file and every event recorded. */
function setup(name: string) {
  const clock = new ManualClock(Date.UTC(2026, 0, 1, 9));
  const sessions = new SessionManager({ clock, defaults, targets, retainEndedMs: HOUR });
  const audit = new AuditLog(path.join(dir, `${name}.jsonl`), clock);
  auditSessions(sessions, audit);
  const events: SessionEvent[] = [];
  const types = ['created', 'warned', 'heartbeat', 'refreshed', 'expired', 'revoked', 'ended'];
  for (const t of types) sessions.on(t as SessionEvent['type'], (e) => events.push(e));
  const principal = (subject = 'alice', authTimeMs = clock.now()): Principal => ({
    subject,
    authTimeMs,
    expiresAtMs: clock.now() + 5 * MIN,
    scopes: [],
    tokenId: `jti-${clock.now()}`,
  });
  const auditLines = async () => {
    const text = await readFile(audit.file, 'utf8');
    return text
      .trim()
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  };
  return { clock, sessions, audit, events, principal, auditLines };
}

/** Heartbeats every 30 s for `ms`, as a healthy but unused client does. */
function beatFor(ctx: ReturnType<typeof setup>, id: string, ms: number): void {
  for (let t = 0; t < ms; t += 30_000) {
    ctx.clock.advance(Math.min(30_000, ms - t));
    ctx.sessions.heartbeat(id, 'alice');
  }
}

describe('SessionManager', () => {
  it('expires an idle session even while heartbeats keep coming, warning first', async () => {
    const ctx = setup('idle');
    const s = ctx.sessions.create(ctx.principal(), 'prod');
    assert.match(s.id, SESSION_ID_PATTERN);
    assert.equal(s.seconds_to_idle_expiry, 900);
    assert.equal(s.seconds_to_absolute_end, 7200);
    const live = ctx.sessions.find(s.id, 'alice')!;

    beatFor(ctx, s.id, 10 * MIN);
    const at10 = ctx.sessions.heartbeat(s.id, 'alice')!;
    assert.equal(at10.state, 'active');
    assert.equal(at10.idle_s, 600, 'heartbeats are not activity');
    assert.equal(at10.seconds_to_idle_expiry, 300);
    beatFor(ctx, s.id, 5 * MIN);

    const end = ctx.sessions.read(s.id, 'alice')!;
    assert.equal(end.state, 'ended');
    assert.equal(end.end_reason, 'idle_timeout');
    assert.equal(end.ended_at, new Date(Date.UTC(2026, 0, 1, 9, 15)).toISOString());
    assert.equal(live.signal.aborted, true);
    assert.equal(live.signal.reason, 'idle_timeout');

    const lines = await ctx.auditLines();
    assert.deepEqual(
      lines.map((l) => [l.ts, l.event, l.reason]),
      [
        ['2026-01-01T09:00:00.000Z', 'session.created', undefined],
        ['2026-01-01T09:10:00.000Z', 'session.warned', 'idle_timeout'],
        ['2026-01-01T09:14:00.000Z', 'session.warned', 'idle_timeout'],
        ['2026-01-01T09:15:00.000Z', 'session.expired', 'idle_timeout'],
      ],
    );
    assert.deepEqual(
      lines.map((l) => l.threshold_s),
      [undefined, 300, 60, undefined],
    );
    for (const l of lines) {
      assert.equal(l.session_id, s.id);
      assert.equal(l.subject, 'alice');
      assert.equal(l.target, 'prod');
    }
  });

  it('moves the idle end with real traffic only, then ends at the absolute lifetime', async () => {
    const ctx = setup('lifetime');
    const s = ctx.sessions.create(ctx.principal(), 'prod');
    const live = ctx.sessions.find(s.id, 'alice')!;
    for (let i = 0; i < 24; i++) {
      beatFor(ctx, s.id, 5 * MIN);
      if (ctx.sessions.isActive(s.id)) live.recordActivity();
    }
    const end = ctx.sessions.read(s.id)!;
    assert.equal(end.end_reason, 'max_lifetime');
    assert.equal(end.ended_at, new Date(Date.UTC(2026, 0, 1, 11)).toISOString());
    assert.equal(live.signal.reason, 'max_lifetime');
    const lines = await ctx.auditLines();
    assert.deepEqual(
      lines.map((l) => `${l.ts} ${l.event} ${l.reason ?? ''}`),
      [
        '2026-01-01T09:00:00.000Z session.created ',
        '2026-01-01T10:55:00.000Z session.warned max_lifetime',
        '2026-01-01T10:59:00.000Z session.warned max_lifetime',
        '2026-01-01T11:00:00.000Z session.expired max_lifetime',
      ],
    );
  });

  it('ends a session whose client stopped sending heartbeats as client_lost', async () => {
    const ctx = setup('lost');
    const s = ctx.sessions.create(ctx.principal(), 'prod');
    beatFor(ctx, s.id, 2 * MIN);
    ctx.clock.advance(104_999);
    assert.equal(ctx.sessions.isActive(s.id), true, 'three missed beats plus grace not reached');
    ctx.clock.advance(1);
    assert.equal(ctx.sessions.read(s.id)!.end_reason, 'client_lost');
    const last = (await ctx.auditLines()).at(-1)!;
    assert.equal(last.event, 'session.expired');
    assert.equal(last.reason, 'client_lost');
    assert.equal(last.ts, '2026-01-01T09:03:45.000Z');
    // client_lost is no reason to ask for a new sign-in
    const again = ctx.sessions.create(ctx.principal('alice', Date.UTC(2026, 0, 1, 8)), 'prod');
    assert.equal(again.state, 'active');
  });

  it('revokes at once, records who did it, and cuts the data plane', async () => {
    const ctx = setup('revoke');
    const s = ctx.sessions.create(ctx.principal('bob'), 'prod');
    const live = ctx.sessions.find(s.id, 'bob')!;
    ctx.clock.advance(MIN);
    const state = ctx.sessions.revoke(s.id, 'alice')!;
    assert.equal(state.state, 'ended');
    assert.equal(state.end_reason, 'revoked');
    assert.equal(live.signal.reason, 'revoked');
    assert.equal(ctx.sessions.heartbeat(s.id, 'bob')!.end_reason, 'revoked');
    const last = (await ctx.auditLines()).at(-1)!;
    assert.deepEqual(
      { event: last.event, by: last.by, subject: last.subject, reason: last.reason },
      { event: 'session.revoked', by: 'alice', subject: 'bob', reason: 'revoked' },
    );
    assert.equal(ctx.clock.pendingTimers(), 1, 'only the prune timer is left');
  });

  it('asks for a fresh sign-in after an expiry, unless the target allows silent resume', () => {
    const ctx = setup('reauth');
    const signedInAt = ctx.clock.now();
    const first = ctx.sessions.create(ctx.principal('alice', signedInAt), 'prod');
    ctx.sessions.create(ctx.principal('alice', signedInAt), 'quick');
    ctx.clock.advance(20 * MIN);
    assert.equal(ctx.sessions.read(first.id)!.end_reason, 'client_lost');

    // A new session, then a real idle expiry while the client keeps beating.
    const second = ctx.sessions.create(ctx.principal('alice', signedInAt), 'prod');
    const quick = ctx.sessions.create(ctx.principal('alice', signedInAt), 'quick');
    beatFor(ctx, second.id, 15 * MIN);
    assert.equal(ctx.sessions.read(second.id)!.end_reason, 'idle_timeout');
    assert.equal(ctx.sessions.read(quick.id)!.end_reason, 'client_lost');
    const endedAt = Date.parse(ctx.sessions.read(second.id)!.ended_at!);

    assert.throws(
      () => ctx.sessions.create(ctx.principal('alice', signedInAt), 'prod'),
      (err: Error) => isLogproxyError(err, ErrorCodes.REAUTH_REQUIRED),
    );
    assert.throws(
      () => ctx.sessions.create({ ...ctx.principal('alice'), authTimeMs: undefined }, 'prod'),
      (err: Error) => isLogproxyError(err, ErrorCodes.REAUTH_REQUIRED),
    );
    // auth_time has whole seconds: one second before the end is refused, the same second not
    const endSecond = Math.floor(endedAt / 1000) * 1000;
    assert.throws(
      () => ctx.sessions.create(ctx.principal('alice', endSecond - 1000), 'prod'),
      (err: Error) => isLogproxyError(err, ErrorCodes.REAUTH_REQUIRED),
    );
    // bob is not affected by alice's expiry
    assert.equal(ctx.sessions.create(ctx.principal('bob', signedInAt), 'prod').state, 'active');
    ctx.clock.advance(1000);
    const fresh = ctx.sessions.create(ctx.principal('alice', endSecond), 'prod');
    assert.equal(fresh.state, 'active');

    // silent resume: an idle expiry on `quick` needs no new sign-in
    const q = ctx.sessions.create(ctx.principal('alice', signedInAt), 'quick');
    const qLive = ctx.sessions.find(q.id, 'alice')!;
    beatFor(ctx, q.id, 5 * MIN);
    assert.equal(qLive.signal.reason, 'idle_timeout');
    assert.equal(ctx.sessions.create(ctx.principal('alice', signedInAt), 'quick').state, 'active');
  });

  it('binds sessions to their subject and to the allow list', () => {
    const ctx = setup('binding');
    const s = ctx.sessions.create(ctx.principal('alice'), 'prod');
    assert.equal(ctx.sessions.read(s.id, 'bob'), undefined);
    assert.equal(ctx.sessions.find(s.id, 'bob'), undefined);
    assert.equal(ctx.sessions.heartbeat(s.id, 'bob'), undefined);
    assert.equal(ctx.sessions.end(s.id, 'bob'), undefined);
    assert.equal(ctx.sessions.isActive(s.id), true);
    assert.deepEqual(ctx.sessions.list('bob'), []);
    assert.equal(ctx.sessions.list().length, 1);
    assert.throws(
      () => ctx.sessions.create(ctx.principal('alice'), 'secret'),
      (err: Error) => isLogproxyError(err, ErrorCodes.ACCESS_DENIED),
    );
    assert.throws(
      () => ctx.sessions.create(ctx.principal('alice'), 'nope'),
      (err: Error) => isLogproxyError(err, ErrorCodes.NOT_FOUND),
    );
    assert.throws(
      () => ctx.sessions.create(ctx.principal('alice'), 'toString'),
      (err: Error) => isLogproxyError(err, ErrorCodes.NOT_FOUND),
    );
  });

  it('keeps an ended session readable for a while, then forgets it', async () => {
    const ctx = setup('prune');
    const s = ctx.sessions.create(ctx.principal(), 'prod');
    const state = ctx.sessions.end(s.id, 'alice')!;
    assert.equal(state.end_reason, 'ended');
    assert.equal(ctx.sessions.find(s.id, 'alice')!.signal.reason, 'ended');
    ctx.clock.advance(HOUR - 1);
    assert.equal(ctx.sessions.read(s.id, 'alice')!.state, 'ended');
    ctx.clock.advance(1);
    assert.equal(ctx.sessions.read(s.id, 'alice'), undefined);
    assert.equal(ctx.clock.pendingTimers(), 0);
    assert.deepEqual(
      (await ctx.auditLines()).map((l) => `${l.event} ${l.reason ?? ''}`),
      ['session.created ', 'session.ended ended'],
    );
  });

  it('reports a newer token on a session once, as refreshed', async () => {
    const ctx = setup('refresh');
    const p = ctx.principal();
    const s = ctx.sessions.create(p, 'prod');
    ctx.sessions.noteToken(s.id, p);
    beatFor(ctx, s.id, 4 * MIN);
    const newer = ctx.principal();
    ctx.sessions.noteToken(s.id, newer);
    ctx.sessions.noteToken(s.id, newer);
    ctx.sessions.noteToken(s.id, p); // an older token still in flight is no refresh
    assert.equal(ctx.events.filter((e) => e.type === 'refreshed').length, 1);
    // Two tokens issued in the same second share their exp: the jti tells them apart, and a
    // client alternating between them (requests in flight) is reported once per token.
    const sibling = { ...newer, tokenId: 'jti-sibling' };
    ctx.sessions.noteToken(s.id, sibling);
    ctx.sessions.noteToken(s.id, newer);
    ctx.sessions.noteToken(s.id, sibling);
    assert.equal(ctx.events.filter((e) => e.type === 'refreshed').length, 2);
    const last2 = (await ctx.auditLines()).at(-1)!;
    assert.equal(last2.token_id, 'jti-sibling');
    const lines = (await ctx.auditLines()).filter((l) => l.event === 'session.refreshed');
    assert.deepEqual(
      lines.map((l) => l.token_id),
      [newer.tokenId, 'jti-sibling'],
    );
    assert.equal(JSON.stringify(await ctx.auditLines()).includes('eyJ'), false);
  });

  it('ends every active session on shutdown', () => {
    const ctx = setup('shutdown');
    const a = ctx.sessions.create(ctx.principal(), 'prod');
    ctx.sessions.shutdown();
    assert.equal(ctx.sessions.read(a.id)!.end_reason, 'gateway_shutdown');
    assert.equal(ctx.clock.pendingTimers(), 0);
    const ended = ctx.events.filter((e) => e.type === 'ended');
    assert.equal(ended.length, 1);
  });
});
