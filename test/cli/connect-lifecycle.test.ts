/**
 * A tunnel's life against the real gateway with timeouts in seconds: warnings from the
 * gateway's answers, idle expiry while heartbeats flow, absolute expiry under traffic,
 * revocation, a killed gateway, inline re-authentication and token refresh under load with
 * no failed request. connect runs in-process (`runConnect`) with `--events json`.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, spawnGateway, gatewayYaml, type TestGateway } from '../helpers/gateway.js';
import { listTunnels } from '../../src/tunnel/registry.js';
import {
  connectInProcess,
  signedIn,
  startUpstream,
  until,
  type SignedIn,
  type Upstream,
} from './connect-helpers.js';

let upstream: Upstream;
let gw: TestGateway;
let user: SignedIn;

const http = (url: string) => ({
  type: 'http' as const,
  url,
  headers: {},
  timeoutMs: 30_000,
});

before(async () => {
  upstream = await startUpstream();
  const source = http(upstream.url);
  gw = await startGateway({
    targets: {
      idle: {
        source,
        // Thresholds seconds apart: on a loaded machine a heartbeat may come late, and the
        // warning of a window it slept through is (rightly) never shown.
        session: { idleTimeoutMs: 8_000, heartbeatIntervalMs: 1_000, warnBeforeMs: [6_000, 3_000] },
      },
      lifetime: {
        source,
        session: {
          maxLifetimeMs: 4_000,
          idleTimeoutMs: 3_000,
          heartbeatIntervalMs: 1_000,
          warnBeforeMs: [2_000],
        },
      },
      steady: { source, session: { heartbeatIntervalMs: 1_000 } },
      reauth: {
        source,
        session: { maxLifetimeMs: 4_000, heartbeatIntervalMs: 1_000, warnBeforeMs: [2_000] },
      },
    },
  });
  user = await signedIn(gw.url);
});

after(async () => {
  await user?.cleanup();
  await gw?.close();
  await upstream?.close();
});

/** Sends GETs back to back until `stop()`; counts answers by status. */
function keepRequesting(url: string) {
  const statuses = new Map<number | string, number>();
  let running = true;
  const loop = (async () => {
    while (running) {
      try {
        const res = await fetch(`${url}/echo/load`);
        await res.arrayBuffer();
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      } catch (err) {
        statuses.set(String((err as Error).cause ?? err), (statuses.get(String(err)) ?? 0) + 1);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  return {
    statuses,
    total: () => [...statuses.values()].reduce((a, b) => a + b, 0),
    stop: async () => {
      running = false;
      await loop;
      return statuses;
    },
  };
}

test('idle: warnings at the thresholds, then expiry while heartbeats flow (exit 10)', async () => {
  const beats: string[] = [];
  const onBeat = (e: { session: { target: string; id: string } }): void => {
    if (e.session.target === 'idle') beats.push(e.session.id);
  };
  gw.sessions.on('heartbeat', onBeat);
  const tunnel = await connectInProcess(user.env, 'idle', { reauth: false });
  const res = await fetch(`${tunnel.url}/echo/once`);
  assert.equal(res.status, 200);
  await res.arrayBuffer();

  const code = await tunnel.exit;
  assert.equal(code, 10);
  const events = tunnel.events();
  const warnings = events.filter((e) => e.event === 'warning');
  assert.deepEqual(
    warnings.map((w) => [w.kind, w.threshold_s]),
    [
      ['idle', 6],
      ['idle', 3],
    ],
  );
  for (const w of warnings) {
    assert.ok((w.seconds_left as number) <= (w.threshold_s as number), JSON.stringify(w));
  }
  const ended = events.at(-1)!;
  assert.equal(ended.event, 'ended');
  assert.equal(ended.reason, 'idle_timeout');
  assert.equal(ended.exit_code, 10);
  assert.match(ended.message as string, /expired after 8s idle/);
  // Heartbeats kept flowing until the end and did not count as use.
  assert.ok(beats.length >= 3, `heartbeats: ${beats.length}`);
  const audit = await gw.auditLines();
  const expired = audit.find(
    (l) => l.event === 'session.expired' && l.session_id === tunnel.sessionId,
  );
  assert.equal(expired?.reason, 'idle_timeout', JSON.stringify(audit.slice(-5)));
});

test('lifetime: expiry under constant traffic (exit 11), with a warning first', async () => {
  const tunnel = await connectInProcess(user.env, 'lifetime', { reauth: false });
  const load = keepRequesting(tunnel.url);
  const code = await tunnel.exit;
  const statuses = await load.stop();
  assert.equal(code, 11);
  assert.ok((statuses.get(200) ?? 0) > 5, JSON.stringify([...statuses]));
  const events = tunnel.events();
  const warnings = events.filter((e) => e.event === 'warning');
  assert.deepEqual(
    warnings.map((w) => [w.kind, w.threshold_s]),
    [['lifetime', 2]],
  );
  const ended = events.at(-1)!;
  assert.equal(ended.reason, 'max_lifetime');
  assert.match(ended.message as string, /maximum lifetime of 4s/);
});

test('revocation by an admin ends the tunnel with exit 12 and no re-auth', async () => {
  const tunnel = await connectInProcess(user.env, 'steady', { reauth: true }, { tty: true });
  const admin = await gw.tokenFor('alice');
  const res = await fetch(`${gw.url}/v1/sessions/${tunnel.sessionId}/revoke`, {
    method: 'POST',
    headers: { authorization: `Bearer ${admin}` },
  });
  assert.equal(res.status, 200);
  assert.equal(await tunnel.exit, 12);
  const events = tunnel.events();
  assert.equal(events.filter((e) => e.event === 'reauthenticating').length, 0);
  assert.equal(events.at(-1)!.reason, 'revoked');
  assert.match(events.at(-1)!.message as string, /revoked by an administrator/);
});

test('Ctrl-C ends the session at the gateway (exit 130)', async () => {
  const tunnel = await connectInProcess(user.env, 'steady', { reauth: false });
  assert.equal(await tunnel.stop(), 130);
  assert.equal(gw.sessions.read(tunnel.sessionId)?.end_reason, 'ended');
  assert.equal(tunnel.events().at(-1)!.reason, 'interrupted');
});

test('a killed gateway ends the tunnel with gateway_lost (exit 5)', async (t) => {
  const child = await spawnGateway(
    gatewayYaml({
      extra: `session:
  heartbeat_interval: 1s
  idle_timeout: 1m
`,
    }),
  );
  t.after(() => child.stop('SIGKILL'));
  const me = await signedIn(child.url);
  t.after(() => me.cleanup());
  const tunnel = await connectInProcess(me.env, 'demo', { reauth: false });
  await until(() => tunnel.events().some((e) => e.event === 'listening'), 'the listening event');
  assert.equal((await listTunnels(me.stateDir)).length, 1, 'recorded while running');
  child.child.kill('SIGKILL');
  assert.equal(await tunnel.exit, 5);
  assert.deepEqual(await listTunnels(me.stateDir), [], 'the record is gone with the gateway');
  const events = tunnel.events();
  assert.ok(events.some((e) => e.event === 'heartbeat_failed'));
  const ended = events.at(-1)!;
  assert.equal(ended.reason, 'gateway_lost');
  assert.equal(ended.exit_code, 5);
  assert.match(ended.message as string, /lost the gateway at/);
});

test('inline re-authentication while a client keeps sending: no request fails', async () => {
  // LOGPROXY_REAUTH=always: re-auth off a TTY, for the provider's auto-approve.
  const tunnel = await connectInProcess({ ...user.env, LOGPROXY_REAUTH: 'always' }, 'reauth');
  const load = keepRequesting(tunnel.url);
  await until(
    () => tunnel.events().some((e) => e.event === 'resumed'),
    'the tunnel to resume on a new session',
  );
  const resumedAt = load.total();
  await until(() => load.total() > resumedAt + 5, 'requests on the new session');
  const statuses = await load.stop();
  assert.equal(await tunnel.stop(), 130);

  assert.deepEqual([...statuses.keys()], [200], JSON.stringify([...statuses]));
  const events = tunnel.events();
  const kinds = events.map((e) => e.event);
  const i = kinds.indexOf('reauthenticating');
  assert.ok(i > 0, kinds.join(','));
  assert.equal(events[i]!.reason, 'max_lifetime');
  assert.ok(kinds.indexOf('device_code') > i);
  const resumed = events.find((e) => e.event === 'resumed')!;
  assert.equal(resumed.previous_session_id, tunnel.sessionId);
  assert.notEqual(resumed.session_id, tunnel.sessionId);
  // The upstream saw traffic from both sessions' time.
  assert.ok(upstream.seen.length > resumedAt);
});
