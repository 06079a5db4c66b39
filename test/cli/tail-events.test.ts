import { test } from 'node:test';
import assert from 'node:assert/strict';
import { describeTailEvent } from '../../src/cli/tail.js';
import { ErrorCodes, LogproxyError } from '../../src/util/errors.js';

const gw = 'https://logs.example.com';

test('lost data is reported with how much and from which file', () => {
  const text = describeTailEvent(
    {
      type: 'data_lost',
      notice: {
        notice: 'data_lost',
        ts: '2026-01-31T14:05:00.000Z',
        source: '/var/log/app/app.log',
        lost_bytes: 1234,
      },
    },
    'prod-logs',
    gw,
  );
  assert.equal(
    text,
    'gateway says 1234 bytes of app.log were rotated away before they could be read',
  );
  const lines = describeTailEvent(
    { type: 'data_lost', notice: { notice: 'data_lost', ts: 'x', lost_bytes: 10, lost_lines: 2 } },
    'prod-logs',
    gw,
  );
  assert.match(lines!, /^gateway says 10 bytes \(2 lines\) were rotated away/);
});

test('a reconnect is said once per outage, in words without library jargon', () => {
  const first = describeTailEvent(
    { type: 'reconnecting', attempt: 1, delayMs: 250, error: new TypeError('terminated') },
    'prod-logs',
    gw,
  );
  assert.equal(first, 'lost the log stream of prod-logs (the connection was cut); reconnecting');
  const named = describeTailEvent(
    {
      type: 'reconnecting',
      attempt: 1,
      delayMs: 250,
      error: new LogproxyError(ErrorCodes.UNREACHABLE, `cannot reach the gateway at ${gw}`),
    },
    'prod-logs',
    gw,
  );
  assert.match(named!, /cannot reach the gateway/);
  const again = describeTailEvent(
    { type: 'reconnecting', attempt: 2, delayMs: 500, error: new Error('x') },
    'prod-logs',
    gw,
  );
  assert.equal(again, undefined);
  assert.equal(
    describeTailEvent({ type: 'connected', sessionId: 's', resumed: false }, 'prod-logs', gw),
    undefined,
  );
  assert.equal(
    describeTailEvent({ type: 'connected', sessionId: 's', resumed: true }, 'prod-logs', gw),
    'log stream of prod-logs resumed',
  );
});
