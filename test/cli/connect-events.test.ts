/** How tunnel events read: JSON lines, plain lines off a TTY, and the live status line. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../../src/util/clock.js';
import { BufferStream } from '../../src/cli/test-io.js';
import {
  createRenderer,
  describeEnd,
  exitCodeForTunnelEnd,
  type ConnectEvent,
} from '../../src/cli/events.js';
import type { SessionState } from '../../src/protocol/api.js';
import { LogproxyError, ErrorCodes } from '../../src/util/errors.js';

const clock = new ManualClock(Date.UTC(2026, 0, 1, 10, 0, 0));

function session(over: Partial<SessionState> = {}): SessionState {
  return {
    id: 'ses_1',
    target: 'prod-logs',
    subject: 'alice',
    state: 'active',
    created_at: '2026-01-01T10:00:00.000Z',
    last_activity_at: '2026-01-01T10:00:00.000Z',
    idle_expires_at: '2026-01-01T10:15:00.000Z',
    expires_at: '2026-01-01T22:00:00.000Z',
    idle_s: 0,
    seconds_to_idle_expiry: 900,
    seconds_to_absolute_end: 43_200,
    policy: {
      idle_timeout_s: 900,
      max_lifetime_s: 43_200,
      heartbeat_interval_s: 30,
      warn_before_s: [300, 120],
      silent_resume: false,
    },
    ...over,
  };
}

const listening: ConnectEvent = {
  type: 'listening',
  info: {
    url: 'http://127.0.0.1:4000',
    addresses: ['127.0.0.1:4000'],
    target: 'prod-logs',
    session: session(),
  },
};
const idleWarning: ConnectEvent = {
  type: 'warning',
  kind: 'idle',
  secondsLeft: 120,
  idleS: 780,
  thresholdS: 120,
  session: session({ idle_s: 780, seconds_to_idle_expiry: 120 }),
};

function render(mode: 'json' | 'lines' | 'tty', events: ConnectEvent[]): string {
  const stream = new BufferStream();
  const r = createRenderer({
    stream,
    mode,
    target: 'prod-logs',
    gateway: 'https://logs.example.com',
    clock,
    reauth: false,
  });
  for (const e of events) r.render(e);
  r.close();
  return stream.text();
}

test('off a TTY: one plain line per event, in the words of the issue', () => {
  const text = render('lines', [listening, idleWarning]);
  assert.match(text, /^logproxy: tunnel to prod-logs listening on http:\/\/127\.0\.0\.1:4000$/m);
  assert.match(text, /idle timeout 15m/);
  assert.match(text, /logproxy: warning: idle for 13m; the session closes in 2m unless used\n/);
  assert.ok(!text.includes('\x1b'), 'no control characters');
});

test('--events json: one object per event with stable fields; heartbeats left out', () => {
  const end: ConnectEvent = {
    type: 'ended',
    end: { reason: 'idle_timeout', exitCode: 10, sessionId: 'ses_1', message: 'm' },
  };
  const lines = render('json', [
    listening,
    { type: 'heartbeat', session: session() },
    idleWarning,
    end,
  ])
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.deepEqual(
    lines.map((l) => l.event),
    ['listening', 'warning', 'ended'],
  );
  assert.equal(lines[0]!.url, 'http://127.0.0.1:4000');
  assert.equal(lines[0]!.idle_timeout_s, 900);
  assert.equal(lines[1]!.kind, 'idle');
  assert.equal(lines[1]!.seconds_left, 120);
  assert.equal(lines[1]!.ends_at, '2026-01-01T10:15:00.000Z');
  assert.deepEqual(
    { reason: lines[2]!.reason, exit_code: lines[2]!.exit_code },
    { reason: 'idle_timeout', exit_code: 10 },
  );
});

test('on a TTY: a status line redrawn in place, notices printed above it', () => {
  const stream = new BufferStream();
  const r = createRenderer({
    stream,
    mode: 'tty',
    target: 'prod-logs',
    gateway: 'g',
    clock,
    reauth: true,
  });
  r.render(listening);
  clock.advance(60_000);
  r.render(idleWarning);
  r.close();
  const text = stream.text();
  assert.match(text, /prod-logs · ends in 12h · closes in 15m if idle/);
  assert.match(text, /prod-logs · ends in 11h59m · closes in 14m if idle/, 'counts down');
  assert.ok(text.includes('\r\x1b[2Kwarning: idle for 13m'), 'the status line is cleared first');
});

test('every end reason has an exit code and a message that names the next step', () => {
  const cases: Array<[Parameters<typeof exitCodeForTunnelEnd>[0], number, RegExp]> = [
    ['idle_timeout', 10, /expired after 15m idle; run `logproxy connect prod-logs`/],
    ['max_lifetime', 11, /maximum lifetime of 12h/],
    ['revoked', 12, /revoked by an administrator/],
    ['gateway_lost', 5, /lost the gateway at https:\/\/logs\.example\.com/],
    ['client_lost', 5, /did not hear from this tunnel/],
    ['interrupted', 130, /interrupted/],
    ['not_signed_in', 3, /logproxy login/],
    ['ended', 0, /was ended/],
  ];
  for (const [reason, code, message] of cases) {
    assert.equal(exitCodeForTunnelEnd(reason), code, reason);
    assert.match(
      describeEnd(reason, 'prod-logs', { session: session(), gateway: 'https://logs.example.com' }),
      message,
    );
  }
  const denied = new LogproxyError(ErrorCodes.ACCESS_DENIED, 'access denied');
  assert.equal(exitCodeForTunnelEnd('failed', denied), 4);
});
