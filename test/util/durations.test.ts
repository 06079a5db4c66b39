import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatDuration, parseDuration, parseSince } from '../../src/util/durations.js';

test('parses durations people write', () => {
  assert.equal(parseDuration('30s'), 30_000);
  assert.equal(parseDuration('15m'), 900_000);
  assert.equal(parseDuration('1h30m'), 5_400_000);
  assert.equal(parseDuration('500ms'), 500);
  assert.equal(parseDuration('1.5s'), 1500);
  assert.equal(parseDuration('2d'), 172_800_000);
});

test('refuses bare numbers and junk, naming the input', () => {
  for (const bad of ['15', '', 'm', '5 minutes', '1h-2m', '3w']) {
    assert.throws(
      () => parseDuration(bad),
      (err: Error) => err.message.includes(`"${bad}"`),
    );
  }
});

test('formats durations the short way', () => {
  assert.equal(formatDuration(900_000), '15m');
  assert.equal(formatDuration(5_400_000), '1h30m');
  assert.equal(formatDuration(45_000), '45s');
  assert.equal(formatDuration(800), '800ms');
  assert.equal(formatDuration(0), '0ms');
});

test('since takes a duration back from now or an RFC 3339 time', () => {
  const now = Date.UTC(2026, 0, 1, 12);
  assert.equal(parseSince('10m', now), now - 600_000);
  assert.equal(parseSince('2026-01-01T11:00:00Z', now), Date.UTC(2026, 0, 1, 11));
  assert.equal(parseSince('yesterday', now), undefined);
});
