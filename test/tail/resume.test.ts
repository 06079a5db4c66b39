import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ReconnectPolicy,
  classifyFailure,
  gaveUpError,
  resumeParams,
} from '../../src/tail/resume.js';
import { LineSplitter } from '../../src/tail/stream.js';
import { ManualClock } from '../../src/util/clock.js';
import { ErrorCodes, LogproxyError } from '../../src/util/errors.js';
import { problemToError } from '../../src/auth/http.js';
import { ProblemTypes } from '../../src/protocol/api.js';

test('the first request carries since/limit; a resumed one only the cursor', () => {
  const query = { follow: true, since: '15m', limit: 100, grep: 'err|warn' };
  assert.equal(
    resumeParams(query, undefined).toString(),
    'follow=true&since=15m&limit=100&grep=err%7Cwarn',
  );
  const resumed = resumeParams(query, 'f1.abc.0.42');
  assert.equal(resumed.get('cursor'), 'f1.abc.0.42');
  assert.equal(resumed.get('since'), null);
  assert.equal(resumed.get('limit'), null);
  assert.equal(resumed.get('grep'), 'err|warn', 'the filter still applies after a resume');
  assert.equal(resumeParams({ follow: false }, undefined).toString(), '');
});

test('failures are sorted into retry, refresh, new session and fatal', () => {
  const problem = (type: string, status: number, extra = {}) =>
    problemToError({ type, title: 't', status, ...extra });
  assert.equal(classifyFailure(new TypeError('fetch failed')), 'retry');
  assert.equal(
    classifyFailure(new LogproxyError(ErrorCodes.UNREACHABLE, 'refused', { retryable: true })),
    'retry',
  );
  assert.equal(classifyFailure(problem(ProblemTypes.invalidToken, 401)), 'refresh');
  assert.equal(
    classifyFailure(new LogproxyError(ErrorCodes.NOT_SIGNED_IN, 'run logproxy login')),
    'fatal',
    'a token source that cannot refresh is final',
  );
  assert.equal(classifyFailure(problem(ProblemTypes.sessionNotFound, 404)), 'session');
  for (const reason of [
    'idle_timeout',
    'max_lifetime',
    'revoked',
    'gateway_shutdown',
    'client_lost',
  ]) {
    assert.equal(
      classifyFailure(problem(ProblemTypes.sessionEnded, 410, { reason })),
      'session',
      reason,
    );
  }
  assert.equal(
    classifyFailure(problem(ProblemTypes.invalidParameter, 400, { parameter: 'grep' })),
    'fatal',
  );
  assert.equal(classifyFailure(problem(ProblemTypes.forbidden, 403)), 'fatal');
  const abort = new DOMException('aborted', 'AbortError');
  assert.equal(classifyFailure(abort), 'fatal');
});

test('reconnect backoff grows, is capped, and gives up after the time bound', () => {
  const clock = new ManualClock();
  const policy = new ReconnectPolicy(clock, {
    firstDelayMs: 250,
    maxDelayMs: 2_000,
    giveUpAfterMs: 10_000,
    random: () => 0.999999,
  });
  const delays: number[] = [];
  for (;;) {
    const d = policy.nextDelay();
    if (d === undefined) break;
    delays.push(d);
    clock.advance(d);
  }
  assert.deepEqual(delays.slice(0, 5), [250, 500, 1000, 2000, 2000]);
  assert.equal(
    delays.reduce((a, b) => a + b, 0),
    10_000,
    'the last wait lands on the bound',
  );
  assert.equal(policy.awayMs(), 10_000);
  assert.match(
    gaveUpError(policy.awayMs(), new Error('connection refused')).message,
    /10s.*refused/,
  );
});

test('a success resets the backoff and the time away', () => {
  const clock = new ManualClock();
  const policy = new ReconnectPolicy(clock, { giveUpAfterMs: 5_000, random: () => 0 });
  clock.advance(policy.nextDelay()!);
  clock.advance(policy.nextDelay()!);
  assert.equal(policy.failures, 2);
  policy.succeeded();
  assert.equal(policy.failures, 0);
  assert.equal(policy.awayMs(), 0);
  clock.advance(60_000);
  assert.equal(
    policy.nextDelay(),
    Math.round(250 * 0.75),
    'a new outage starts from the first wait',
  );
});

test('jitter stays within 75-100% of the step', () => {
  const clock = new ManualClock();
  const low = new ReconnectPolicy(clock, { random: () => 0 }).nextDelay()!;
  const high = new ReconnectPolicy(clock, { random: () => 0.9999 }).nextDelay()!;
  assert.ok(low >= 187 && low <= 188, String(low));
  assert.ok(high >= 249 && high <= 250, String(high));
});

test('the line splitter keeps partial lines and multi-byte characters whole', () => {
  const s = new LineSplitter();
  const bytes = Buffer.from('{"a":"caf\u00e9"}\n{"b":"\u{1F600}"}\n{"c"', 'utf8');
  let out = '';
  // Feed one byte at a time: every cut point, including inside a character.
  for (let i = 0; i < bytes.length; i++) out += s.push(bytes.subarray(i, i + 1));
  assert.equal(out, '{"a":"caf\u00e9"}\n{"b":"\u{1F600}"}\n');
  assert.equal(s.pending, 4);
  assert.equal(s.push(Buffer.from(':1}\n')), '{"c":1}\n');
  assert.equal(s.pending, 0);
});
