import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { register as globalRegistry } from 'prom-client';
import { createMetrics } from '../../src/gateway/metrics.js';
import { SessionManager } from '../../src/gateway/sessions.js';
import type { SessionPolicyConfig, TargetConfig } from '../../src/gateway/types.js';
import { ManualClock } from '../../src/util/clock.js';

const defaults: SessionPolicyConfig = {
  idleTimeoutMs: 10 * 60_000,
  maxLifetimeMs: 60 * 60_000,
  heartbeatIntervalMs: 30_000,
  warnBeforeMs: [60_000],
  heartbeatMissesAllowed: 3,
  silentResume: true,
};

function target(name: string): TargetConfig {
  return {
    name,
    source: { type: 'demo', ratePerSec: 1, historyLines: 0, seed: 1 },
    allow: ['*'],
    session: {},
    activity: 'requests',
  };
}

/** The value of one sample line, e.g. `logproxy_heartbeats_total{target="a"}`. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('gateway metrics', () => {
  it('counts sessions by target and reason, heartbeats and token rejections', async () => {
    const clock = new ManualClock();
    const sessions = new SessionManager({
      clock,
      defaults,
      targets: { a: target('a'), b: target('b') },
    });
    const metrics = createMetrics(sessions, ['a', 'b']);
    const who = (subject: string) => ({ subject, expiresAtMs: clock.now() + 1e6, scopes: [] });

    const first = sessions.create(who('alice'), 'a');
    const second = sessions.create(who('bob'), 'a');
    sessions.create(who('carol'), 'a');
    sessions.heartbeat(first.id, 'alice');
    sessions.heartbeat(first.id, 'alice');
    sessions.revoke(second.id, 'alice');
    metrics.tokenRejected('expired');
    metrics.tokenRejected('expired');
    metrics.tokenRejected('wrong_audience');

    let text = await metrics.render();
    assert.equal(sample(text, 'logproxy_sessions_active{target="a"}'), 2);
    assert.equal(sample(text, 'logproxy_sessions_active{target="b"}'), 0);
    assert.equal(sample(text, 'logproxy_sessions_created_total{target="a"}'), 3);
    assert.equal(sample(text, 'logproxy_heartbeats_total{target="a"}'), 2);
    assert.equal(sample(text, 'logproxy_sessions_ended_total{target="a",reason="revoked"}'), 1);
    assert.equal(sample(text, 'logproxy_token_rejections_total{reason="expired"}'), 2);
    assert.equal(sample(text, 'logproxy_token_rejections_total{reason="wrong_audience"}'), 1);
    assert.match(text, /^process_resident_memory_bytes \d+/m);

    clock.advance(2 * 60_000); // nobody beats: both remaining sessions are lost
    text = await metrics.render();
    assert.equal(sample(text, 'logproxy_sessions_active{target="a"}'), 0);
    assert.equal(sample(text, 'logproxy_sessions_ended_total{target="a",reason="client_lost"}'), 2);
    assert.equal(metrics.contentType.startsWith('text/plain'), true);
  });

  it('keeps its own registry: two gateways in one process do not mix', async () => {
    const clock = new ManualClock();
    const make = () => new SessionManager({ clock, defaults, targets: { a: target('a') } });
    const one = createMetrics(make(), ['a']);
    const two = createMetrics(make(), ['a']);
    one.tokenRejected('missing');
    assert.equal(
      sample(await one.render(), 'logproxy_token_rejections_total{reason="missing"}'),
      1,
    );
    assert.equal(
      sample(await two.render(), 'logproxy_token_rejections_total{reason="missing"}'),
      undefined,
    );
    assert.equal((await globalRegistry.metrics()).includes('logproxy_'), false);
  });
});
