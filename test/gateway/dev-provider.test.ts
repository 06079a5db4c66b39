/**
 * The embedded development provider over real HTTP: discovery under the mount path, the
 * device flow with auto-approval, JWT access tokens with auth_time, refresh token rotation
 * and reuse detection, revocation, and state that survives a restart on the same data dir.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { createDevProvider } from '../../src/gateway/dev-provider.js';
import { FileModelStore } from '../../src/gateway/dev-provider-store.js';
import { createTokenVerifier } from '../../src/gateway/tokens.js';
import { startDevIdp, type DevIdp } from '../helpers/dev-idp.js';
import {
  OAuthResponseError,
  deviceLogin,
  discover,
  pollDeviceToken,
  refreshGrant,
  revokeToken,
  startDeviceAuthorization,
} from '../helpers/device-token.js';

async function oauthError(promise: Promise<unknown>): Promise<OAuthResponseError> {
  const err = await promise.then(
    () => assert.fail('expected the provider to refuse'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof OAuthResponseError, `expected an OAuth error, got ${String(err)}`);
  return err;
}

/** auth_time has whole seconds; to see a later one, the next second must have begun. */
async function nextSecond(): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, 1000 - (Date.now() % 1000) + 5));
}

describe('embedded provider with auto-approval', () => {
  let idp: DevIdp;

  before(async () => {
    idp = await startDevIdp({ pollIntervalS: 2 });
  });
  after(async () => {
    await idp?.close();
  });

  test('serves discovery under the mount path, with device flow and revocation', async () => {
    const doc = (await discover(idp.issuer)) as unknown as Record<string, unknown>;
    assert.equal(doc.issuer, idp.issuer);
    for (const key of ['token_endpoint', 'device_authorization_endpoint', 'jwks_uri']) {
      assert.match(String(doc[key]), new RegExp(`^${idp.issuer}/`), key);
    }
    assert.match(String(doc.revocation_endpoint), new RegExp(`^${idp.issuer}/`));
    assert.ok(
      (doc.grant_types_supported as string[]).includes(
        'urn:ietf:params:oauth:grant-type:device_code',
      ),
    );
  });

  test('logs loudly that it is a development provider', () => {
    assert.ok(idp.warnings.some((w) => /DEVELOPMENT/.test(w.msg) && /production/.test(w.msg)));
  });

  test('advertises the poll interval and a verification URI under the mount', async () => {
    const authorization = await startDeviceAuthorization(idp.issuer, idp.clientId);
    assert.equal(authorization.intervalS, 2);
    assert.equal(authorization.verificationUri, `${idp.issuer}/device`);
    assert.match(authorization.userCode, /^[A-Z]{4}-[A-Z]{4}$/);
  });

  test('issues RFC 9068 access tokens for the audience, auth_time = approval', async () => {
    const startedS = Math.floor(Date.now() / 1000);
    const tokens = await deviceLogin(idp.issuer, idp.clientId);
    const endedS = Math.ceil(Date.now() / 1000);

    assert.equal(decodeProtectedHeader(tokens.accessToken).typ, 'at+jwt');
    const claims = decodeJwt(tokens.accessToken);
    assert.equal(claims.iss, idp.issuer);
    assert.equal(claims.aud, idp.audience);
    assert.equal(claims.sub, 'alice');
    assert.equal(claims.client_id, idp.clientId);
    assert.equal(tokens.expiresIn, 300);
    assert.equal(typeof claims.auth_time, 'number');
    assert.ok((claims.auth_time as number) >= startedS && (claims.auth_time as number) <= endedS);

    assert.ok(tokens.idToken);
    const idClaims = decodeJwt(tokens.idToken);
    assert.equal(idClaims.sub, 'alice');
    assert.equal(idClaims.aud, idp.clientId);
  });

  test('refresh keeps the sign-in time; a new device login brings a new one', async () => {
    const first = await deviceLogin(idp.issuer, idp.clientId);
    const signedIn = decodeJwt(first.accessToken).auth_time;
    await nextSecond();

    const refreshed = await refreshGrant(idp.issuer, idp.clientId, first.refreshToken);
    assert.equal(decodeJwt(refreshed.accessToken).auth_time, signedIn);
    assert.ok((decodeJwt(refreshed.accessToken).iat as number) > (signedIn as number));

    const again = await deviceLogin(idp.issuer, idp.clientId);
    assert.ok((decodeJwt(again.accessToken).auth_time as number) > (signedIn as number));
  });

  test('rotates the refresh token on every use; reusing an old one revokes the grant', async () => {
    const tokens = await deviceLogin(idp.issuer, idp.clientId);
    const second = await refreshGrant(idp.issuer, idp.clientId, tokens.refreshToken);
    assert.notEqual(second.refreshToken, tokens.refreshToken);
    const third = await refreshGrant(idp.issuer, idp.clientId, second.refreshToken);
    assert.notEqual(third.refreshToken, second.refreshToken);

    // A stolen, already used token comes back: the whole chain dies, the thief's and ours.
    const reuse = await oauthError(refreshGrant(idp.issuer, idp.clientId, tokens.refreshToken));
    assert.equal(reuse.error, 'invalid_grant');
    const latest = await oauthError(refreshGrant(idp.issuer, idp.clientId, third.refreshToken));
    assert.equal(latest.error, 'invalid_grant');
  });

  test('a revoked refresh token no longer refreshes', async () => {
    const tokens = await deviceLogin(idp.issuer, idp.clientId);
    await revokeToken(idp.issuer, idp.clientId, tokens.refreshToken);
    const refused = await oauthError(refreshGrant(idp.issuer, idp.clientId, tokens.refreshToken));
    assert.equal(refused.error, 'invalid_grant');
  });

  test('refuses a resource other than the gateway audience', async () => {
    const refused = await oauthError(
      startDeviceAuthorization(idp.issuer, idp.clientId, { audience: 'https://elsewhere.example' }),
    );
    assert.equal(refused.error, 'invalid_target');
  });

  test('serves its own self-contained pages that say it is for development', async () => {
    const response = await fetch(`${idp.issuer}/device`);
    const html = await response.text();
    assert.equal(response.status, 200);
    assert.match(html, /Development sign-in/);
    assert.match(html, /Not for production/);
    const outside = /https?:\/\/(?!127\.0\.0\.1[:/])|@import|<script|<link/i;
    assert.doesNotMatch(html, outside, 'the page must load nothing from elsewhere');
    assert.equal(response.headers.get('x-frame-options'), 'DENY');
  });

  test('answers only below its mount path', async () => {
    const origin = new URL(idp.issuer).origin;
    const response = await fetch(`${origin}/oidcx/.well-known/openid-configuration`);
    assert.equal(response.status, 404);
    await response.body?.cancel();
  });

  test('an interaction page without its cookie says the sign-in expired', async () => {
    const response = await fetch(`${idp.issuer}/interaction/abc123`);
    assert.equal(response.status, 400);
    assert.match(await response.text(), /expired/);
  });
});

describe('embedded provider without auto-approval', () => {
  let idp: DevIdp;
  before(async () => {
    idp = await startDevIdp({ autoApprove: undefined, pollIntervalS: 1 });
  });
  after(async () => {
    await idp?.close();
  });

  test('a device code waits for a person', async () => {
    const authorization = await startDeviceAuthorization(idp.issuer, idp.clientId);
    const gaveUp = await pollDeviceToken(idp.issuer, idp.clientId, authorization, {
      timeoutMs: 0,
    }).then(
      () => assert.fail('a device code was approved without anyone approving it'),
      (e: Error) => e,
    );
    assert.match(gaveUp.message, /not approved in time/);
    assert.ok(gaveUp.cause instanceof OAuthResponseError);
    assert.equal(gaveUp.cause.error, 'authorization_pending');
  });
});

describe('embedded provider state on disk', () => {
  let dataDir: string;
  before(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'lp-idp-restart-'));
  });
  after(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });

  test('a refresh token and signing keys survive a restart on the same data dir', async () => {
    const first = await startDevIdp({ dataDir });
    const { port } = first.server.address() as { port: number };
    const tokens = await deviceLogin(first.issuer, first.clientId);
    const keysBefore = await (await fetch(`${first.issuer}/jwks`)).json();
    await first.close({ keepData: true });

    const second = await startDevIdp({ dataDir, port });
    try {
      assert.equal(second.issuer, first.issuer);
      assert.deepEqual(await (await fetch(`${second.issuer}/jwks`)).json(), keysBefore);

      // The access token from before the restart still verifies against the new instance.
      const verifier = createTokenVerifier({
        issuer: second.issuer,
        audience: second.audience,
        algorithms: ['ES256', 'RS256'],
        clockToleranceS: 0,
      });
      assert.equal((await verifier.verify(tokens.accessToken)).subject, 'alice');

      const refreshed = await refreshGrant(second.issuer, second.clientId, tokens.refreshToken);
      assert.equal(decodeJwt(refreshed.accessToken).sub, 'alice');
      assert.equal(
        decodeJwt(refreshed.accessToken).auth_time,
        decodeJwt(tokens.accessToken).auth_time,
      );
    } finally {
      await second.close({ keepData: true });
    }
  });

  test('keeps keys and grants private: directory 0700, files 0600', async () => {
    const idp = await startDevIdp({ dataDir });
    try {
      await deviceLogin(idp.issuer, idp.clientId);
    } finally {
      await idp.close({ keepData: true });
    }
    assert.equal((await stat(dataDir)).mode & 0o777, 0o700);
    const files = await readdir(dataDir);
    assert.deepEqual(files.sort(), [
      'cookie-keys.json',
      'provider-store.json',
      'signing-keys.json',
    ]);
    for (const file of files) {
      assert.equal((await stat(path.join(dataDir, file))).mode & 0o777, 0o600, file);
    }
  });

  test('refuses an auto-approve user who is not a configured user', async () => {
    await assert.rejects(
      createDevProvider({
        issuer: 'http://127.0.0.1:1/oidc',
        audience: 'https://logs.example',
        clientId: 'logproxy-cli',
        config: {
          users: ['alice'],
          autoApprove: 'mallory',
          accessTokenTtlMs: 60_000,
          refreshTokenTtlMs: 3_600_000,
          deviceCodeTtlMs: 600_000,
          pollIntervalS: 1,
          dataDir,
        },
      }),
      /auto_approve is "mallory", which is not in auth.dev.users/,
    );
  });
});

describe('file model store', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'lp-store-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('ignores and drops expired entries, keeps live ones across reopening', async () => {
    let nowMs = 1_000_000;
    const file = path.join(dir, 'store.json');
    // what a crash between write and rename leaves (the naming of src/util/atomic-file.ts)
    await writeFile(
      path.join(path.dirname(file), `.${path.basename(file)}.4242.0a1b2c.tmp`),
      '{"half-written',
    );
    const store = await FileModelStore.open(file, () => nowMs);
    const tokens = store.adapterFor('RefreshToken');
    await tokens.upsert('short', { grantId: 'g1', kind: 'RefreshToken' }, 10);
    await tokens.upsert('long', { grantId: 'g1', kind: 'RefreshToken' }, 3600);
    assert.ok(await tokens.find('short'));

    nowMs += 11_000;
    assert.equal(await tokens.find('short'), undefined);
    const reopened = await FileModelStore.open(file, () => nowMs);
    const again = reopened.adapterFor('RefreshToken');
    assert.equal(await again.find('short'), undefined);
    assert.equal((await again.find('long'))?.grantId, 'g1');

    await again.revokeByGrantId('g1');
    const afterRevoke = await FileModelStore.open(file, () => nowMs);
    assert.equal(await afterRevoke.adapterFor('RefreshToken').find('long'), undefined);
    const left = (await readdir(dir)).filter((name) => name.startsWith('store.json'));
    assert.deepEqual(left, ['store.json'], 'no temp files left behind');
  });

  test('a damaged store file stops start-up with a message that names the fix', async () => {
    const file = path.join(dir, 'damaged.json');
    await writeFile(file, '{"version": 1, "entr');
    await assert.rejects(
      FileModelStore.open(file),
      /damaged\.json is not a logproxy provider store; move it away/,
    );
  });

  test('finds device codes by user code and sessions by uid; consume marks an entry', async () => {
    const store = await FileModelStore.open(path.join(dir, 'lookup.json'));
    await store.adapterFor('DeviceCode').upsert('dc1', { userCode: 'ABCDEFGH' }, 60);
    await store.adapterFor('Session').upsert('s1', { uid: 'u-1' }, 60);
    const codes = store.adapterFor('DeviceCode');
    assert.equal((await codes.findByUserCode('ABCDEFGH'))?.userCode, 'ABCDEFGH');
    assert.equal(await codes.findByUserCode('ZZZZZZZZ'), undefined);
    assert.equal((await store.adapterFor('Session').findByUid('u-1'))?.uid, 'u-1');

    await codes.consume('dc1');
    assert.equal(typeof (await codes.find('dc1'))?.consumed, 'number');
    await codes.destroy('dc1');
    assert.equal(await codes.find('dc1'), undefined);
  });
});
