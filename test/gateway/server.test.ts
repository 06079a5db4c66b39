/**
 * The real gateway over HTTP, with real tokens from its embedded provider and forged ones.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SignJWT, decodeJwt, exportJWK, generateKeyPair, importJWK } from 'jose';
import type { JWK } from 'jose';

type SigningKey = Parameters<SignJWT['sign']>[0];
import { PROBLEM_CONTENT_TYPE, ProblemTypes } from '../../src/protocol/api.js';
import type {
  DiscoveryDocument,
  Problem,
  SessionList,
  SessionState,
  TargetList,
} from '../../src/protocol/api.js';
import { ManualClock } from '../../src/util/clock.js';
import {
  GATEWAY_BIN,
  gatewayYaml,
  readAudit,
  spawnGateway,
  startGateway,
} from '../helpers/gateway.js';
import type { TestGateway } from '../helpers/gateway.js';

const MIN = 60_000;

interface Answer<T = unknown> {
  status: number;
  headers: Headers;
  body: T;
}

async function call<T = unknown>(
  url: string,
  opts: { method?: string; token?: string; json?: unknown; headers?: Record<string, string> } = {},
): Promise<Answer<T>> {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`;
  let body: string | undefined;
  if (opts.json !== undefined) {
    headers['content-type'] ??= 'application/json';
    body = typeof opts.json === 'string' ? opts.json : JSON.stringify(opts.json);
  }
  const res = await fetch(url, { method: opts.method ?? 'GET', headers, body });
  const text = await res.text();
  const type = res.headers.get('content-type') ?? '';
  return {
    status: res.status,
    headers: res.headers,
    body: (/^application\/(problem\+)?json/.test(type) ? JSON.parse(text) : text) as T,
  };
}

function assertProblem(a: Answer, status: number, type: string): Problem {
  assert.equal(a.status, status, JSON.stringify(a.body));
  assert.equal(a.headers.get('content-type'), PROBLEM_CONTENT_TYPE);
  const p = a.body as Problem;
  assert.equal(p.type, type);
  assert.equal(p.status, status);
  assert.equal(typeof p.title, 'string');
  return p;
}

describe('gateway over HTTP', () => {
  let gw: TestGateway;
  let alice: string;

  before(async () => {
    gw = await startGateway({
      targets: {
        demo: { source: { type: 'demo', ratePerSec: 5, historyLines: 10, seed: 1 } },
        'bob-only': {
          source: { type: 'file', paths: ['/nonexistent/*.log'] },
          allow: ['bob'],
        },
        api: {
          description: 'An HTTP upstream',
          source: { type: 'http', url: 'http://127.0.0.1:9', headers: {}, timeoutMs: 1000 },
          session: { idleTimeoutMs: 5 * MIN },
        },
      },
    });
    alice = await gw.tokenFor();
  });
  after(() => gw.close());

  it('publishes discovery, health and targets', async () => {
    const d = await call<DiscoveryDocument>(`${gw.url}/.well-known/logproxy`);
    assert.equal(d.status, 200);
    assert.deepEqual(d.body, {
      api_version: 1,
      gateway: gw.url,
      issuer: `${gw.url}/oidc`,
      client_id: 'logproxy-cli',
      audience: gw.audience,
      scopes: ['openid', 'offline_access'],
      dev: true,
    });
    const meta = await call<{ issuer: string }>(
      `${d.body.issuer}/.well-known/openid-configuration`,
    );
    assert.equal(meta.body.issuer, d.body.issuer);
    assert.equal((await call(`${gw.url}/healthz`)).status, 200);

    const t = await call<TargetList>(`${gw.url}/v1/targets`, { token: alice });
    assert.equal(t.status, 200);
    assert.deepEqual(
      t.body.targets.map((x) => [x.name, x.source_type, x.capabilities.join()]),
      [
        ['demo', 'demo', 'logs'],
        ['api', 'http', 'forward'],
      ],
    );
    const api = t.body.targets.find((x) => x.name === 'api')!;
    assert.equal(api.description, 'An HTTP upstream');
    assert.deepEqual(api.policy, {
      idle_timeout_s: 300,
      max_lifetime_s: 7200,
      heartbeat_interval_s: 30,
      warn_before_s: [300, 60],
      silent_resume: false,
    });
    assert.equal(decodeJwt(alice).sub, 'alice');
  });

  it('runs a session: create, read, heartbeat, list, end', async () => {
    const created = await call<SessionState>(`${gw.url}/v1/sessions`, {
      method: 'POST',
      token: alice,
      json: { target: 'demo' },
    });
    assert.equal(created.status, 201);
    const s = created.body;
    assert.equal(created.headers.get('location'), `/v1/sessions/${s.id}`);
    assert.match(s.id, /^ses_[A-Za-z0-9_-]{22}$/);
    assert.equal(s.state, 'active');
    assert.equal(s.subject, 'alice');
    assert.equal(s.seconds_to_idle_expiry, 900);
    assert.equal(s.policy.heartbeat_interval_s, 30);

    const read = await call<SessionState>(`${gw.url}/v1/sessions/${s.id}`, { token: alice });
    assert.equal(read.status, 200);
    assert.equal(read.body.id, s.id);
    const beat = await call<SessionState>(`${gw.url}/v1/sessions/${s.id}/heartbeat`, {
      method: 'POST',
      token: alice,
    });
    assert.equal(beat.status, 200);
    assert.equal(beat.body.state, 'active');
    // A newer token on the same session (the client refreshed) is audited once.
    const newer = await gw.tokenFor();
    for (let i = 0; i < 2; i++) {
      const again = await call(`${gw.url}/v1/sessions/${s.id}/heartbeat`, {
        method: 'POST',
        token: newer,
      });
      assert.equal(again.status, 200);
    }
    const mine = await call<SessionList>(`${gw.url}/v1/sessions`, { token: alice });
    assert.ok(mine.body.sessions.some((x) => x.id === s.id));

    // The data plane serves the session; the answer is NDJSON log records.
    const logs = await call<string>(`${gw.url}/v1/sessions/${s.id}/logs`, { token: alice });
    assert.equal(logs.status, 200);
    const records = logs.body
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { line?: string });
    assert.ok(records.some((r) => typeof r.line === 'string'));

    const ended = await call<SessionState>(`${gw.url}/v1/sessions/${s.id}`, {
      method: 'DELETE',
      token: alice,
    });
    assert.equal(ended.status, 200);
    assert.equal(ended.body.state, 'ended');
    assert.equal(ended.body.end_reason, 'ended');
    const after = await call<SessionState>(`${gw.url}/v1/sessions/${s.id}/heartbeat`, {
      method: 'POST',
      token: alice,
    });
    assert.equal(after.status, 200);
    assert.equal(after.body.end_reason, 'ended');
    const gone = await call(`${gw.url}/v1/sessions/${s.id}/logs`, { token: alice });
    const p = assertProblem(gone, 410, ProblemTypes.sessionEnded);
    assert.equal(p.reason, 'ended');
    assert.equal(p.session_id, s.id);

    const lines = (await gw.auditLines()).filter((l) => l.session_id === s.id);
    assert.deepEqual(
      lines.map((l) => `${l.event} ${l.subject} ${l.target} ${l.reason ?? ''}`),
      [
        'session.created alice demo ',
        'session.refreshed alice demo ',
        'session.ended alice demo ended',
      ],
    );
  });

  it('cuts an open log stream the moment its session is revoked', async () => {
    const s = await call<SessionState>(`${gw.url}/v1/sessions`, {
      method: 'POST',
      token: alice,
      json: { target: 'demo' },
    });
    const res = await fetch(`${gw.url}/v1/sessions/${s.body.id}/logs?follow=true`, {
      headers: { authorization: `Bearer ${alice}` },
    });
    assert.equal(res.status, 200);
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = '';
    while (!text.includes('\n')) text += (await reader.read()).value ?? '';

    const revoked = await call<SessionState>(`${gw.url}/v1/sessions/${s.body.id}/revoke`, {
      method: 'POST',
      token: alice,
    });
    assert.equal(revoked.body.end_reason, 'revoked');
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
    }
    const last = JSON.parse(text.trim().split('\n').at(-1)!) as Record<string, unknown>;
    assert.equal(last.notice, 'session_ended');
    assert.equal(last.reason, 'revoked');
  });

  it('answers bad requests with a problem type per reason', async () => {
    const post = (json: unknown, headers?: Record<string, string>) =>
      call(`${gw.url}/v1/sessions`, { method: 'POST', token: alice, json, ...{ headers } });
    assertProblem(await post('{"target":'), 400, ProblemTypes.badRequest);
    const p = assertProblem(await post({ tgt: 'demo' }), 400, ProblemTypes.invalidParameter);
    assert.equal(p.parameter, 'target');
    assertProblem(await post({ target: 'nope' }), 404, ProblemTypes.targetNotFound);
    assertProblem(await post({ target: 'bob-only' }), 403, ProblemTypes.forbidden);
    assertProblem(
      await post({ target: 'demo', pad: 'x'.repeat(20_000) }),
      413,
      ProblemTypes.badRequest,
    );
    assertProblem(
      await post('target=demo', { 'content-type': 'application/x-www-form-urlencoded' }),
      415,
      ProblemTypes.badRequest,
    );
    assertProblem(await call(`${gw.url}/v2/nothing`), 404, ProblemTypes.notFound);
    assertProblem(
      await call(`${gw.url}/v1/targets`, { method: 'PUT', token: alice }),
      405,
      ProblemTypes.notSupported,
    );
    const unknown = 'ses_AAAAAAAAAAAAAAAAAAAAAA';
    assertProblem(
      await call(`${gw.url}/v1/sessions/${unknown}`, { token: alice }),
      404,
      ProblemTypes.sessionNotFound,
    );
    const refused = (await gw.auditLines()).filter((l) => l.event === 'session.refused');
    assert.deepEqual(
      refused.map((l) => [l.subject, l.target, l.reason]),
      [['alice', 'bob-only', 'forbidden']],
    );
  });

  it('serves logs on log targets only, forward on http targets only', async () => {
    const s = await call<SessionState>(`${gw.url}/v1/sessions`, {
      method: 'POST',
      token: alice,
      json: { target: 'api' },
    });
    assert.equal(s.status, 201);
    assertProblem(
      await call(`${gw.url}/v1/sessions/${s.body.id}/logs`, { token: alice }),
      400,
      ProblemTypes.notSupported,
    );
  });

  it('rejects missing, malformed and forged tokens with 401, and audits each', async () => {
    const keys = JSON.parse(
      await readFile(path.join(gw.dataDir, 'idp', 'signing-keys.json'), 'utf8'),
    ) as { keys: JWK[] };
    const jwk = keys.keys.find((k) => k.alg === 'ES256')!;
    const signingKey = await importJWK(jwk, 'ES256');
    const now = Math.floor(Date.now() / 1000);
    const claims = {
      iss: gw.issuer,
      aud: gw.audience,
      sub: 'alice',
      client_id: 'logproxy-cli',
      auth_time: now,
      jti: 'forged',
    };
    const sign = async (
      over: Record<string, unknown> = {},
      header: Record<string, unknown> = {},
      key: SigningKey = signingKey as SigningKey,
    ) =>
      new SignJWT({ ...claims, ...over })
        .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: jwk.kid, ...header })
        .setIssuedAt(now)
        .setExpirationTime(typeof over.exp === 'number' ? over.exp : now + 300)
        .sign(key);

    // Sanity: a token we sign with the provider's own key and right claims is accepted, so
    // each refusal below is due to the one thing changed.
    const good = await sign();
    assert.equal((await call(`${gw.url}/v1/targets`, { token: good })).status, 200);

    const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const algNone = `${b64({ alg: 'none', typ: 'at+jwt' })}.${b64({ ...claims, exp: now + 300 })}.`;
    const publicJwk = { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y };
    const hsKey = new TextEncoder().encode(JSON.stringify(publicJwk));
    const hs256 = await new SignJWT({ ...claims })
      .setProtectedHeader({ alg: 'HS256', typ: 'at+jwt', kid: jwk.kid })
      .setExpirationTime(now + 300)
      .sign(hsKey);
    const stranger = await generateKeyPair('ES256');
    const strangerKid = (await exportJWK(stranger.publicKey)).x!.slice(0, 16);

    const cases: Array<[string, string, string]> = [
      ['alg none', algNone, 'alg_not_allowed'],
      ['HS256 with the public key', hs256, 'alg_not_allowed'],
      ['wrong issuer', await sign({ iss: 'https://evil.example' }), 'wrong_issuer'],
      ['wrong audience', await sign({ aud: 'https://other.example' }), 'wrong_audience'],
      ['expired', await sign({ exp: now - 3600 }), 'expired'],
      ['not yet valid', await sign({ nbf: now + 3600 }), 'not_yet_valid'],
      ['wrong typ', await sign({}, { typ: 'JWT' }), 'wrong_typ'],
      [
        'unknown kid',
        await sign({}, { kid: strangerKid }, stranger.privateKey as SigningKey),
        'unknown_kid',
      ],
      ['garbage', 'not-a-token', 'malformed'],
    ];
    const reference = (await call(`${gw.url}/v1/targets`, { token: 'x.y.z' })).body;
    const before = (await gw.auditLines()).length;
    for (const [name, token] of cases) {
      const a = await call(`${gw.url}/v1/targets`, { token });
      assertProblem(a, 401, ProblemTypes.invalidToken);
      assert.equal(
        a.headers.get('www-authenticate'),
        'Bearer realm="logproxy", error="invalid_token"',
        name,
      );
      // One answer for every reason: nothing tells an attacker which check failed.
      assert.deepEqual(a.body, reference, name);
    }
    const missing = await call(`${gw.url}/v1/sessions`);
    assert.deepEqual(missing.body, reference);
    assertProblem(missing, 401, ProblemTypes.invalidToken);
    assert.equal(missing.headers.get('www-authenticate'), 'Bearer realm="logproxy"');
    const basic = await call(`${gw.url}/v1/sessions`, { headers: { authorization: 'Basic eA==' } });
    assert.equal(basic.status, 401);

    const rejected = (await gw.auditLines()).slice(before);
    assert.deepEqual(
      rejected.map((l) => [l.event, l.reason]),
      [
        ...cases.map(([, , reason]) => ['token.rejected', reason]),
        ['token.rejected', 'missing'],
        ['token.rejected', 'malformed'],
      ],
    );
    const audit = await readFile(gw.auditFile, 'utf8');
    for (const [name, token] of cases) {
      assert.equal(audit.includes(token), false, `${name}: the token reached the audit file`);
    }
    assert.equal(audit.includes(alice), false);

    const metrics = await call<string>(`${gw.url}/metrics`);
    assert.match(metrics.body, /logproxy_token_rejections_total\{reason="wrong_issuer"\} 1\n/);
    assert.match(metrics.body, /logproxy_token_rejections_total\{reason="alg_not_allowed"\} 2\n/);
  });
});

describe('gateway with two users and an injected clock', () => {
  let gw: TestGateway;
  let alice: string;
  let bob: string;
  let clock: ManualClock;

  before(async () => {
    // Sign bob in on a first gateway, then restart it on the same port and data dir with
    // alice auto-approved: the signing keys persist, so bob's token stays valid.
    const first = await startGateway({ autoApprove: 'bob', keepData: true });
    bob = await first.tokenFor('bob');
    const { port, dataDir } = first;
    await first.close();
    clock = new ManualClock(Date.now());
    gw = await startGateway({
      port,
      dataDir,
      clock,
      targets: {
        demo: { source: { type: 'demo', ratePerSec: 5, historyLines: 10, seed: 1 } },
      },
    });
    alice = await gw.tokenFor();
  });
  after(async () => {
    await gw.close();
    const { rm } = await import('node:fs/promises');
    await rm(gw.dataDir, { recursive: true, force: true });
  });

  const create = async (token: string) => {
    const a = await call<SessionState>(`${gw.url}/v1/sessions`, {
      method: 'POST',
      token,
      json: { target: 'demo' },
    });
    assert.equal(a.status, 201, JSON.stringify(a.body));
    return a.body;
  };

  it("hides one user's sessions from another, and keeps admin routes for admins", async () => {
    const bobs = await create(bob);
    const alices = await create(alice);
    assertProblem(
      await call(`${gw.url}/v1/sessions/${alices.id}`, { token: bob }),
      404,
      ProblemTypes.sessionNotFound,
    );
    for (const suffix of ['/heartbeat', '/logs']) {
      const method = suffix === '/heartbeat' ? 'POST' : 'GET';
      const a = await call(`${gw.url}/v1/sessions/${alices.id}${suffix}`, { method, token: bob });
      assertProblem(a, 404, ProblemTypes.sessionNotFound);
    }
    const del = await call(`${gw.url}/v1/sessions/${alices.id}`, { method: 'DELETE', token: bob });
    assertProblem(del, 404, ProblemTypes.sessionNotFound);
    assert.equal(gw.sessions.isActive(alices.id), true);

    assertProblem(
      await call(`${gw.url}/v1/sessions?all=true`, { token: bob }),
      403,
      ProblemTypes.notAdmin,
    );
    assertProblem(
      await call(`${gw.url}/v1/sessions/${alices.id}/revoke`, { method: 'POST', token: bob }),
      403,
      ProblemTypes.notAdmin,
    );
    const all = await call<SessionList>(`${gw.url}/v1/sessions?all=true`, { token: alice });
    const subjects = new Set(all.body.sessions.map((s) => s.subject));
    assert.deepEqual([...subjects].sort(), ['alice', 'bob']);
    const bobsOwn = await call<SessionList>(`${gw.url}/v1/sessions`, { token: bob });
    assert.deepEqual(
      bobsOwn.body.sessions.map((s) => s.id),
      [bobs.id],
    );

    const revoked = await call<SessionState>(`${gw.url}/v1/sessions/${bobs.id}/revoke`, {
      method: 'POST',
      token: alice,
    });
    assert.equal(revoked.status, 200);
    assert.equal(revoked.body.end_reason, 'revoked');
    const beat = await call<SessionState>(`${gw.url}/v1/sessions/${bobs.id}/heartbeat`, {
      method: 'POST',
      token: bob,
    });
    assert.equal(beat.body.state, 'ended');
    assert.equal(beat.body.end_reason, 'revoked');
    const line = (await gw.auditLines()).find((l) => l.event === 'session.revoked')!;
    assert.deepEqual([line.session_id, line.subject, line.by], [bobs.id, 'bob', 'alice']);
  });

  it('counts data plane traffic as activity, and heartbeats not', async () => {
    const s = await create(bob);
    const beat = () =>
      call<SessionState>(`${gw.url}/v1/sessions/${s.id}/heartbeat`, {
        method: 'POST',
        token: bob,
      });
    for (let i = 0; i < 20; i++) {
      clock.advance(30_000);
      await beat();
    }
    assert.equal((await beat()).body.seconds_to_idle_expiry, 300);
    const logs = await call(`${gw.url}/v1/sessions/${s.id}/logs?limit=1`, { token: bob });
    assert.equal(logs.status, 200);
    const after = (await beat()).body;
    assert.equal(after.seconds_to_idle_expiry, 900);
    assert.equal(after.idle_s, 0);
    await call(`${gw.url}/v1/sessions/${s.id}`, { method: 'DELETE', token: bob });
  });

  it('expires idle sessions on the gateway clock and then asks for a new sign-in', async () => {
    const s = await create(alice);
    for (let i = 0; i < 30; i++) {
      clock.advance(30_000);
      const beat = await call<SessionState>(`${gw.url}/v1/sessions/${s.id}/heartbeat`, {
        method: 'POST',
        token: alice,
      });
      assert.equal(beat.status, 200);
      if (i === 19) assert.equal(beat.body.seconds_to_idle_expiry, 300, 'beats are not activity');
    }
    const state = await call<SessionState>(`${gw.url}/v1/sessions/${s.id}`, { token: alice });
    assert.equal(state.body.end_reason, 'idle_timeout');

    // alice's token was issued before that end: no new session without signing in again.
    const again = await call(`${gw.url}/v1/sessions`, {
      method: 'POST',
      token: alice,
      json: { target: 'demo' },
    });
    assertProblem(again, 401, ProblemTypes.reauthRequired);
    assert.match(
      again.headers.get('www-authenticate') ?? '',
      /^Bearer realm="logproxy", error="insufficient_user_authentication", .*max_age=\d+$/,
    );
    const lines = (await gw.auditLines()).filter(
      (l) => l.session_id === s.id || l.event === 'session.refused',
    );
    assert.deepEqual(
      lines.map((l) => `${l.event} ${l.reason ?? ''}`),
      [
        'session.created ',
        'session.warned idle_timeout',
        'session.warned idle_timeout',
        'session.expired idle_timeout',
        'session.refused reauth_required',
      ],
    );

    const metrics = await call<string>(`${gw.url}/metrics`);
    assert.match(
      metrics.body,
      /logproxy_sessions_ended_total\{target="demo",reason="idle_timeout"\} 1\n/,
    );
    assert.match(metrics.body, /logproxy_sessions_ended_total\{target="demo",reason="revoked"\} 1/);
    assert.match(metrics.body, /logproxy_heartbeats_total\{target="demo"\} \d+/);
    // alice's first session sent no heartbeat while the clock moved: client_lost.
    assert.match(
      metrics.body,
      /logproxy_sessions_ended_total\{target="demo",reason="client_lost"\} 1\n/,
    );
    assert.match(metrics.body, /logproxy_sessions_active\{target="demo"\} 0\n/);
    assert.match(metrics.body, /process_cpu_user_seconds_total/);

    // A restart does not forget it: the marks come back from the audit trail.
    const { port, dataDir } = gw;
    await gw.close();
    gw = await startGateway({ port, dataDir, clock: new ManualClock(Date.now()) });
    const afterRestart = await call(`${gw.url}/v1/sessions`, {
      method: 'POST',
      token: alice,
      json: { target: 'demo' },
    });
    assertProblem(afterRestart, 401, ProblemTypes.reauthRequired);
    // bob's sessions did not expire that way: he opens one with his old token.
    assert.equal((await create(bob)).state, 'active');
  });
});

describe('gateway over TLS with a private CA', () => {
  it('serves HTTPS and verifies tokens of its embedded issuer', async (t) => {
    const { createPrivateCa } = await import('../helpers/private-ca.js');
    const { Agent, fetch: undiciFetch } = await import('undici');
    const ca = await createPrivateCa();
    t.after(() => ca.cleanup());
    const gw = await startGateway({ tls: { certFile: ca.certFile, keyFile: ca.keyFile } });
    t.after(() => gw.close());
    assert.match(gw.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(gw.issuer, `${gw.url}/oidc`);

    const dispatcher = new Agent({ connect: { ca: await readFile(ca.caFile) } });
    t.after(() => dispatcher.close());
    const get = (url: string, token?: string) =>
      undiciFetch(url, {
        dispatcher,
        headers: token ? { authorization: `Bearer ${token}` } : {},
      });
    const d = (await (await get(`${gw.url}/.well-known/logproxy`)).json()) as DiscoveryDocument;
    assert.equal(d.issuer, gw.issuer);
    await assert.rejects(fetch(`${gw.url}/healthz`), 'an untrusted CA is refused');

    // A token signed with the provider's key: the gateway fetches its own JWKS over TLS.
    const keys = JSON.parse(
      await readFile(path.join(gw.dataDir, 'idp', 'signing-keys.json'), 'utf8'),
    ) as { keys: JWK[] };
    const jwk = keys.keys.find((k) => k.alg === 'ES256')!;
    const now = Math.floor(Date.now() / 1000);
    const token = await new SignJWT({ sub: 'alice', client_id: 'logproxy-cli', auth_time: now })
      .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: jwk.kid })
      .setIssuer(gw.issuer)
      .setAudience(gw.audience)
      .setIssuedAt(now)
      .setExpirationTime(now + 300)
      .sign((await importJWK(jwk, 'ES256')) as SigningKey);
    const targets = await get(`${gw.url}/v1/targets`, token);
    assert.equal(targets.status, 200);
    assert.equal(((await targets.json()) as TargetList).targets[0]!.name, 'demo');
  });
});

describe('WebSocket upgrades through the gateway', () => {
  it('authenticates the upgrade, passes the socket through, and refuses without a token', async (t) => {
    const http = await import('node:http');
    const { WebSocket, WebSocketServer } = await import('ws');
    const upstream = http.createServer();
    const wss = new WebSocketServer({ server: upstream });
    wss.on('connection', (ws, req) => {
      ws.on('message', (data) => ws.send(`echo ${String(data)} on ${req.url}`));
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    t.after(() => new Promise((resolve) => upstream.close(resolve)));
    t.after(() => wss.close());
    const port = (upstream.address() as { port: number }).port;

    const gw = await startGateway({
      targets: {
        loki: {
          source: { type: 'http', url: `http://127.0.0.1:${port}`, headers: {}, timeoutMs: 5000 },
        },
      },
    });
    t.after(() => gw.close());
    const token = await gw.tokenFor();
    const s = await call<SessionState>(`${gw.url}/v1/sessions`, {
      method: 'POST',
      token,
      json: { target: 'loki' },
    });
    const wsUrl = `${gw.url.replace('http', 'ws')}/v1/sessions/${s.body.id}/forward/tail?q=1`;

    const refused = await new Promise<number>((resolve) => {
      const ws = new WebSocket(wsUrl);
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.on('error', () => resolve(-1));
    });
    assert.equal(refused, 401);

    const ws = new WebSocket(wsUrl, { headers: { authorization: `Bearer ${token}` } });
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    const answer = new Promise<string>((resolve) => ws.once('message', (d) => resolve(String(d))));
    ws.send('hello');
    assert.equal(await answer, 'echo hello on /tail?q=1');
    const closed = new Promise((resolve) => ws.once('close', resolve));
    await call(`${gw.url}/v1/sessions/${s.body.id}`, { method: 'DELETE', token });
    await closed;
    const lines = (await gw.auditLines()).filter((l) => l.event === 'token.rejected');
    assert.deepEqual(
      lines.map((l) => [l.reason, l.path]),
      [['missing', `/v1/sessions/${s.body.id}/forward/tail`]],
    );
  });
});

describe('gateway with an external OIDC issuer (YAML config)', () => {
  it('accepts JWT access tokens of auth.issuer, and opaque ones through introspection', async (t) => {
    const { startDevIdp } = await import('../helpers/dev-idp.js');
    const { deviceLogin, discover } = await import('../helpers/device-token.js');
    const { parseConfig } = await import('../../src/gateway/config.js');
    const { createGateway } = await import('../../src/gateway/server.js');
    const { createLogger } = await import('../../src/gateway/logger.js');
    const { mkdtemp, rm } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const dir = await mkdtemp(path.join(tmpdir(), 'lp-external-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const gatewayClient = { clientId: 'logproxy-gateway', clientSecret: 'gateway-secret-1234' };
    const jwtIdp = await startDevIdp();
    t.after(() => jwtIdp.close());
    const opaqueIdp = await startDevIdp({
      accessTokenFormat: 'opaque',
      introspectionClients: [gatewayClient],
    });
    t.after(() => opaqueIdp.close());
    const introspectionUrl = (await discover(opaqueIdp.issuer)).introspection_endpoint!;

    const start = async (issuer: string, extraAuth: string, name: string) => {
      const yaml = `listen: 127.0.0.1:0
auth:
  issuer: ${issuer}
  audience: ${jwtIdp.audience}
${extraAuth}audit: { file: ./${name}.jsonl }
targets:
  demo: { source: { type: demo }, allow: [alice] }
`;
      const { config } = parseConfig(yaml, { fileLabel: 'g.yaml', baseDir: dir });
      const gw = await createGateway(config, { logger: createLogger('silent') });
      t.after(() => gw.close());
      return gw;
    };
    const withJwt = await start(jwtIdp.issuer, '', 'jwt');
    assert.equal(withJwt.issuer, jwtIdp.issuer);
    const d = await call<DiscoveryDocument>(`${withJwt.url}/.well-known/logproxy`);
    assert.equal(d.body.issuer, jwtIdp.issuer);
    assert.equal(d.body.dev, false);
    const jwt = (await deviceLogin(jwtIdp.issuer, jwtIdp.clientId)).accessToken;
    assert.equal((await call(`${withJwt.url}/v1/targets`, { token: jwt })).status, 200);

    const introspection =
      `  introspection:\n    url: ${introspectionUrl}\n` +
      `    client_id: ${gatewayClient.clientId}\n` +
      `    client_secret: ${gatewayClient.clientSecret}\n`;
    const withOpaque = await start(opaqueIdp.issuer, introspection, 'opaque');
    const opaque = (await deviceLogin(opaqueIdp.issuer, opaqueIdp.clientId)).accessToken;
    assert.equal(opaque.split('.').length, 1, 'an opaque token');
    const s = await call<SessionState>(`${withOpaque.url}/v1/sessions`, {
      method: 'POST',
      token: opaque,
      json: { target: 'demo' },
    });
    assert.equal(s.status, 201);
    assert.equal(s.body.subject, 'alice');
    const refused = await call(`${withOpaque.url}/v1/targets`, { token: 'no-such-token-12345' });
    assertProblem(refused, 401, ProblemTypes.invalidToken);
    const audit = await readAudit(path.join(dir, 'opaque.jsonl'));
    assert.deepEqual(
      audit.map((l) => `${l.event} ${l.reason ?? ''}`),
      ['session.created ', 'token.rejected inactive'],
    );
  });
});

describe('gateway behind a public URL', () => {
  it('publishes public_url and verifies tokens without reaching it', async (t) => {
    const gw = await startGateway({ publicUrl: 'https://logs.unreachable.test' });
    t.after(() => gw.close());
    assert.equal(gw.url, 'https://logs.unreachable.test');
    assert.equal(gw.issuer, 'https://logs.unreachable.test/oidc');
    const d = await call<DiscoveryDocument>(`${gw.localUrl}/.well-known/logproxy`);
    assert.equal(d.body.gateway, 'https://logs.unreachable.test');
    assert.equal(d.body.issuer, 'https://logs.unreachable.test/oidc');

    const keys = JSON.parse(
      await readFile(path.join(gw.dataDir, 'idp', 'signing-keys.json'), 'utf8'),
    ) as { keys: JWK[] };
    const jwk = keys.keys.find((k) => k.alg === 'ES256')!;
    const now = Math.floor(Date.now() / 1000);
    const token = await new SignJWT({ sub: 'bob', client_id: 'logproxy-cli', auth_time: now })
      .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: jwk.kid })
      .setIssuer(gw.issuer)
      .setAudience(gw.audience)
      .setExpirationTime(now + 300)
      .sign((await importJWK(jwk, 'ES256')) as SigningKey);
    const s = await call<SessionState>(`${gw.localUrl}/v1/sessions`, {
      method: 'POST',
      token,
      json: { target: 'demo' },
    });
    assert.equal(s.status, 201);
    assert.equal(s.body.subject, 'bob');
  });
});

describe('logproxy-gateway as a process', () => {
  it('validates a config with --check (0 valid, 2 invalid, with the line)', async () => {
    const run = async (yaml: string) => {
      const { mkdtemp, writeFile, rm } = await import('node:fs/promises');
      const { tmpdir } = await import('node:os');
      const dir = await mkdtemp(path.join(tmpdir(), 'lp-check-'));
      const file = path.join(dir, 'gateway.yaml');
      await writeFile(file, yaml);
      const child = spawn(process.execPath, [GATEWAY_BIN, '--config', file, '--check']);
      let out = '';
      child.stdout.on('data', (b: Buffer) => (out += b.toString()));
      child.stderr.on('data', (b: Buffer) => (out += b.toString()));
      const code = await new Promise<number | null>((r) => child.on('exit', r));
      await rm(dir, { recursive: true, force: true });
      return { code, out: out.replaceAll(file, 'gateway.yaml') };
    };
    const ok = await run(gatewayYaml());
    assert.equal(ok.code, 0, ok.out);
    assert.match(ok.out, /gateway\.yaml: valid \(1 targets\)/);
    const bad = await run(gatewayYaml().replace('admins:', 'admns:'));
    assert.equal(bad.code, 2);
    assert.match(bad.out, /gateway\.yaml:10: admns: unknown key \(did you mean admins\?\)/);
    const noCert = await run(
      gatewayYaml({ extra: 'tls: { cert: ./none.pem, key: ./none.key }\n' }),
    );
    assert.equal(noCert.code, 2);
    assert.match(noCert.out, /tls\.cert: cannot read .*none\.pem \(ENOENT\)/);
  });

  it('runs --dev with no file and says where things are', async () => {
    const child = await spawnGateway(null, {
      args: ['--dev', '--listen', '127.0.0.1:0', '--auto-approve', 'alice'],
    });
    try {
      const d = await call<DiscoveryDocument>(`${child.url}/.well-known/logproxy`);
      assert.equal(d.body.dev, true);
      assert.equal(d.body.issuer, `${child.url}/oidc`);
      const page = await call<string>(`${child.url}/oidc/device`);
      assert.equal(page.status, 200);
      assert.match(page.body, /<form/i);
      const err = child.stderr();
      assert.match(err, /DEVELOPMENT MODE/);
      assert.match(err, new RegExp(`audit file +${child.dir}/state/logproxy-gateway/dev/audit`));
      assert.match(err, /users +alice, bob \(admins: alice\); every device code is approved/);
    } finally {
      assert.equal(await child.stop(), 0);
    }
  });

  it('stops cleanly on SIGTERM: sessions end as gateway_shutdown, audit flushed', async () => {
    const child = await spawnGateway(gatewayYaml());
    let stopped = false;
    try {
      const { deviceLogin } = await import('../helpers/device-token.js');
      const tokens = await deviceLogin(child.issuer, 'logproxy-cli', {
        audience: 'https://logs.test.example',
      });
      const s = await call<SessionState>(`${child.url}/v1/sessions`, {
        method: 'POST',
        token: tokens.accessToken,
        json: { target: 'demo' },
      });
      assert.equal(s.status, 201);
      const code = await child.stop('SIGTERM', { keepDir: true });
      stopped = true;
      assert.equal(code, 0, child.stderr());
      const lines = await readAudit(path.join(child.dir, 'audit.jsonl'));
      assert.deepEqual(
        lines.map((l) => `${l.event} ${l.reason ?? ''}`),
        ['session.created ', 'session.ended gateway_shutdown'],
      );
    } finally {
      if (!stopped) await child.stop();
      const { rm } = await import('node:fs/promises');
      await rm(child.dir, { recursive: true, force: true });
    }
  });
});
