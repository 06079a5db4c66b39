/**
 * The gateway API client and the sign-in core, in-process against a real gateway with its
 * embedded provider: a real device login stored in a real 0600 file store, the sessions API,
 * the single refresh-and-retry on a refused token, and problem+json mapping.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as oidc from 'openid-client';
import { createGatewayApi } from '../../src/auth/gateway-api.js';
import { createHttpClient, type HttpClient } from '../../src/auth/http.js';
import { getOidcConfiguration } from '../../src/auth/oidc-config.js';
import { readProfileRecords } from '../../src/auth/profiles.js';
import { createTokenManager, type TokenManagerEvent } from '../../src/auth/refresh.js';
import { signIn, type SignInPaths } from '../../src/auth/sign-in.js';
import { FileTokenStore } from '../../src/auth/token-store.js';
import type { DeviceCodePrompt } from '../../src/auth/types.js';
import { ErrorCodes, isLogproxyError } from '../../src/util/errors.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';

describe('sign-in core and gateway API against a real gateway', () => {
  let gw: TestGateway;
  let dir: string;
  let paths: SignInPaths;
  let http: HttpClient;
  let store: FileTokenStore;

  before(async () => {
    gw = await startGateway({
      targets: {
        'prod-logs': { source: { type: 'demo', ratePerSec: 1, historyLines: 5, seed: 1 } },
        secret: {
          source: { type: 'demo', ratePerSec: 1, historyLines: 5, seed: 2 },
          allow: ['bob'],
        },
      },
    });
    dir = await mkdtemp(path.join(tmpdir(), 'lp-api-'));
    paths = {
      credentialsDir: path.join(dir, 'credentials'),
      configFile: path.join(dir, 'config.yaml'),
      profilesFile: path.join(dir, 'profiles.json'),
      locksDir: path.join(dir, 'locks'),
    };
    http = createHttpClient({ env: {}, timeoutMs: 10_000 });
    store = new FileTokenStore(paths.credentialsDir);
  });
  after(async () => {
    await http.close();
    await gw.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('signIn: discovery, device flow, stored credentials and profile record', async () => {
    const prompts: DeviceCodePrompt[] = [];
    const result = await signIn({
      gateway: gw.url,
      profile: 'default',
      paths,
      storeKind: 'file',
      fetch: http,
      callbacks: { onCode: (p) => prompts.push(p) },
    });
    assert.equal(result.subject, 'alice');
    assert.equal(result.issuer, gw.issuer);
    assert.equal(result.store.kind, 'file');
    assert.equal(result.hasRefreshToken, true);
    assert.ok(result.authTime !== undefined && result.authTime <= Date.now());
    assert.equal(prompts.length, 1);
    assert.match(prompts[0]!.userCode, /^[A-Z]{4}-[A-Z]{4}$/);

    const creds = await store.read(gw.url, 'default');
    assert.equal(creds?.subject, 'alice');
    assert.equal(creds?.audience, gw.audience);
    assert.equal(creds?.clientId, gw.clientId);
    assert.ok(creds?.refreshToken);
    const records = await readProfileRecords(paths.profilesFile);
    assert.deepEqual(
      records.map((r) => [r.gateway, r.profile, r.subject, r.store]),
      [[gw.url, 'default', 'alice', 'file']],
    );
  });

  function api(events: TokenManagerEvent[] = []) {
    const tokens = createTokenManager({
      gateway: gw.url,
      profile: 'default',
      store,
      locksDir: paths.locksDir,
      fetch: http,
      onEvent: (e) => events.push(e),
    });
    return { tokens, api: createGatewayApi({ baseUrl: gw.url, tokens, fetch: http }) };
  }

  test('targets and the life of a session through the API', async () => {
    const { api: client } = api();
    const doc = await client.discovery();
    assert.equal(doc.issuer, gw.issuer);

    const { targets } = await client.listTargets();
    assert.deepEqual(
      targets.map((t) => t.name),
      ['prod-logs'],
      'alice does not see the target only bob may open',
    );

    const session = await client.createSession('prod-logs');
    assert.equal(session.state, 'active');
    assert.equal(session.subject, 'alice');
    const read = await client.getSession(session.id);
    assert.equal(read.id, session.id);
    const beat = await client.heartbeat(session.id);
    assert.equal(beat.state, 'active');
    assert.ok(beat.seconds_to_absolute_end > 0);
    const mine = await client.listSessions();
    assert.ok(mine.sessions.some((s) => s.id === session.id));

    await client.endSession(session.id);
    const ended = await client.getSession(session.id);
    assert.equal(ended.state, 'ended');
    assert.equal(ended.end_reason, 'ended');
  });

  test('problem answers become typed errors', async () => {
    const { api: client } = api();
    await assert.rejects(client.createSession('no-such-target'), (err: unknown) => {
      assert.ok(isLogproxyError(err, ErrorCodes.NOT_FOUND), String(err));
      assert.match(err.message, /run `logproxy targets`/);
      return true;
    });
    await assert.rejects(client.createSession('secret'), (err: unknown) =>
      isLogproxyError(err, ErrorCodes.ACCESS_DENIED),
    );
    await assert.rejects(client.getSession('not-a-session'), (err: unknown) =>
      isLogproxyError(err, ErrorCodes.NOT_FOUND),
    );
  });

  test('a refused access token is refreshed once and the request retried', async () => {
    const creds = (await store.read(gw.url, 'default'))!;
    // A token the gateway cannot verify but the client believes valid for an hour.
    await store.write({
      ...creds,
      accessToken: 'not-a-jwt',
      accessTokenExpiresAt: Date.now() + 3_600_000,
    });
    const events: TokenManagerEvent[] = [];
    const { api: client } = api(events);
    const { targets } = await client.listTargets();
    assert.equal(targets.length, 1);
    assert.deepEqual(
      events.map((e) => e.type),
      ['refreshed'],
    );
    const after = (await store.read(gw.url, 'default'))!;
    assert.notEqual(after.accessToken, 'not-a-jwt');
  });

  test('when the refresh token was revoked, the error says to sign in again', async () => {
    const creds = (await store.read(gw.url, 'default'))!;
    const config = await getOidcConfiguration(creds.issuer, creds.clientId, { fetch: http });
    await oidc.tokenRevocation(config, creds.refreshToken!, { token_type_hint: 'refresh_token' });
    await store.write({
      ...creds,
      accessToken: 'not-a-jwt',
      accessTokenExpiresAt: Date.now() + 3_600_000,
    });

    const { api: client } = api();
    await assert.rejects(client.listTargets(), (err: unknown) => {
      assert.ok(isLogproxyError(err, ErrorCodes.NOT_SIGNED_IN), String(err));
      assert.match(err.message, /logproxy login/);
      return true;
    });
  });
});
