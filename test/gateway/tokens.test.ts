/**
 * The token verifier against the real embedded provider: real tokens from real device logins,
 * and forgeries built from the provider's own keys (read from its data directory) so that each
 * one fails exactly one check.
 */
import assert from 'node:assert/strict';
import { createPublicKey, randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  SignJWT,
  base64url,
  decodeJwt,
  decodeProtectedHeader,
  exportJWK,
  generateKeyPair,
  importJWK,
  type JWK,
  type JWTPayload,
} from 'jose';
import { createTokenVerifier, type TokenVerifierOptions } from '../../src/gateway/tokens.js';
import { TokenRejectedError, type TokenRejectReason } from '../../src/gateway/types.js';
import { isLogproxyError } from '../../src/util/errors.js';
import { startDevIdp, type DevIdp } from '../helpers/dev-idp.js';
import { deviceLogin, discover, revokeToken, type TokenSet } from '../helpers/device-token.js';

const ALGORITHMS = ['ES256', 'RS256'];
const TOLERANCE_S = 30;

type SigningKey = Awaited<ReturnType<typeof importJWK>>;

async function rejects(
  promise: Promise<unknown>,
  reason: TokenRejectReason,
): Promise<TokenRejectedError> {
  const err = await promise.then(
    () => assert.fail(`expected rejection with ${reason}, but the token was accepted`),
    (e: unknown) => e,
  );
  assert.ok(err instanceof TokenRejectedError, `expected TokenRejectedError, got ${String(err)}`);
  assert.equal(err.reason, reason);
  return err;
}

/** The provider's private signing key for `alg`, read from its data directory. */
async function providerKey(idp: DevIdp, alg: string): Promise<{ key: SigningKey; jwk: JWK }> {
  const file = path.join(idp.dataDir, 'signing-keys.json');
  const { keys } = JSON.parse(await readFile(file, 'utf8')) as { keys: JWK[] };
  const jwk = keys.find((k) => k.alg === alg);
  assert.ok(jwk, `no ${alg} key in ${file}`);
  return { key: await importJWK(jwk, alg), jwk };
}

describe('token verifier with JWT access tokens from the embedded provider', () => {
  let idp: DevIdp;
  let other: DevIdp;
  let tokens: TokenSet;
  let loginStartedMs: number;
  let loginEndedMs: number;
  let signingKey: { key: SigningKey; jwk: JWK };

  const verifierFor = (overrides: Partial<TokenVerifierOptions> = {}) =>
    createTokenVerifier({
      issuer: idp.issuer,
      audience: idp.audience,
      algorithms: ALGORITHMS,
      clockToleranceS: TOLERANCE_S,
      ...overrides,
    });

  /** Claims of a token the verifier would accept, for forgeries to spoil one at a time. */
  const goodClaims = (): JWTPayload => ({
    iss: idp.issuer,
    aud: idp.audience,
    sub: 'alice',
    client_id: idp.clientId,
    scope: 'openid profile',
    auth_time: Math.floor(Date.now() / 1000),
    jti: randomUUID(),
  });

  const forge = async (
    claims: JWTPayload,
    header: Record<string, unknown> = {},
    key: { key: SigningKey; jwk: JWK } = signingKey,
  ): Promise<string> => {
    const jwt = new SignJWT(claims)
      .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: key.jwk.kid, ...header })
      .setIssuedAt();
    if (claims.exp === undefined) jwt.setExpirationTime('5m');
    return jwt.sign(key.key);
  };

  before(async () => {
    idp = await startDevIdp();
    other = await startDevIdp();
    loginStartedMs = Date.now();
    tokens = await deviceLogin(idp.issuer, idp.clientId);
    loginEndedMs = Date.now();
    signingKey = await providerKey(idp, 'ES256');
  });
  after(async () => {
    await idp?.close();
    await other?.close();
  });

  test('a real access token verifies, with subject, auth_time and expiry', async () => {
    const principal = await verifierFor().verify(tokens.accessToken);
    const claims = decodeJwt(tokens.accessToken);

    assert.equal(principal.subject, 'alice');
    assert.equal(principal.clientId, idp.clientId);
    assert.equal(principal.tokenId, claims.jti);
    assert.equal(principal.expiresAtMs, (claims.exp as number) * 1000);
    assert.deepEqual(principal.scopes, ['openid', 'offline_access', 'profile']);
    assert.ok(principal.authTimeMs !== undefined, 'auth_time is missing');
    // auth_time has whole seconds: the approval happened during the login.
    assert.ok(principal.authTimeMs >= Math.floor(loginStartedMs / 1000) * 1000);
    assert.ok(principal.authTimeMs <= loginEndedMs);
  });

  test('a token forged with alg none is refused', async () => {
    const header = base64url.encode(JSON.stringify({ alg: 'none', typ: 'at+jwt' }));
    const body = base64url.encode(JSON.stringify({ ...goodClaims(), exp: 4102444800 }));
    await rejects(verifierFor().verify(`${header}.${body}.`), 'alg_not_allowed');
  });

  test('a token signed with HS256 using the public key as the secret is refused', async () => {
    const pem = createPublicKey({ key: signingKey.jwk as never, format: 'jwk' }).export({
      type: 'spki',
      format: 'pem',
    });
    const token = await new SignJWT(goodClaims())
      .setProtectedHeader({ alg: 'HS256', typ: 'at+jwt', kid: signingKey.jwk.kid })
      .setIssuedAt()
      .setExpirationTime('5m')
      .sign(Buffer.from(pem));
    await rejects(verifierFor().verify(token), 'alg_not_allowed');
  });

  test("another provider's real token is refused as the wrong issuer", async () => {
    const foreign = await deviceLogin(other.issuer, other.clientId);
    await rejects(verifierFor().verify(foreign.accessToken), 'wrong_issuer');
  });

  test('a token with our key but another issuer is refused as the wrong issuer', async () => {
    const token = await forge({ ...goodClaims(), iss: 'https://idp.evil.example' });
    await rejects(verifierFor().verify(token), 'wrong_issuer');
  });

  test('a token for another audience is refused', async () => {
    const token = await forge({ ...goodClaims(), aud: 'https://other-service.example' });
    await rejects(verifierFor().verify(token), 'wrong_audience');
    // The real token, presented to a gateway with another audience.
    const elsewhere = verifierFor({ audience: 'https://other-service.example' });
    await rejects(elsewhere.verify(tokens.accessToken), 'wrong_audience');
  });

  test('a real token past exp (plus leeway) is refused as expired', async () => {
    const { exp } = decodeJwt(tokens.accessToken) as { exp: number };
    const justInside = verifierFor({ now: () => (exp + TOLERANCE_S - 1) * 1000 });
    assert.equal((await justInside.verify(tokens.accessToken)).subject, 'alice');

    const late = verifierFor({ now: () => (exp + TOLERANCE_S + 1) * 1000 });
    await rejects(late.verify(tokens.accessToken), 'expired');
  });

  test('a token whose nbf is in the future is refused as not yet valid', async () => {
    const nbf = Math.floor(Date.now() / 1000) + 3600;
    const token = await forge({ ...goodClaims(), nbf, exp: nbf + 300 });
    await rejects(verifierFor().verify(token), 'not_yet_valid');
    // Once the clock reaches nbf, the same token is fine.
    assert.equal((await verifierFor({ now: () => nbf * 1000 }).verify(token)).subject, 'alice');
  });

  test('a token of another type is refused, including a real ID token', async () => {
    await rejects(verifierFor().verify(await forge(goodClaims(), { typ: 'JWT' })), 'wrong_typ');
    assert.ok(tokens.idToken, 'the provider issued no ID token');
    await rejects(verifierFor().verify(tokens.idToken), 'wrong_typ');
  });

  test('typ is matched without case and with the application/ prefix', async () => {
    const token = await forge(goodClaims(), { typ: 'application/AT+JWT' });
    assert.equal((await verifierFor().verify(token)).subject, 'alice');
  });

  test('a token signed by a key the issuer never published is refused as unknown kid', async () => {
    const { privateKey } = await generateKeyPair('ES256', { extractable: true });
    const stranger = { key: privateKey, jwk: { ...(await exportJWK(privateKey)), kid: 'k-x' } };
    await rejects(verifierFor().verify(await forge(goodClaims(), {}, stranger)), 'unknown_kid');
  });

  test("a token signed by another key under the issuer's kid has a bad signature", async () => {
    const { privateKey } = await generateKeyPair('ES256', { extractable: true });
    const impostor = { key: privateKey, jwk: { kid: signingKey.jwk.kid } };
    await rejects(verifierFor().verify(await forge(goodClaims(), {}, impostor)), 'bad_signature');
  });

  test('a real token with an edited payload has a bad signature', async () => {
    const [header, , signature] = tokens.accessToken.split('.');
    const claims = { ...decodeJwt(tokens.accessToken), sub: 'bob' };
    const edited = `${header}.${base64url.encode(JSON.stringify(claims))}.${signature}`;
    await rejects(verifierFor().verify(edited), 'bad_signature');
  });

  test('a token without a subject is refused', async () => {
    const { sub: _sub, ...claims } = goodClaims();
    await rejects(verifierFor().verify(await forge(claims)), 'missing_claim');
  });

  test('garbage and empty tokens are refused without introspection', async () => {
    await rejects(verifierFor().verify('not-a-token'), 'malformed');
    await rejects(verifierFor().verify('a.b.c'), 'malformed');
    await rejects(verifierFor().verify(''), 'missing');
  });

  test('none and HMAC algorithms cannot be configured', () => {
    assert.throws(() => verifierFor({ algorithms: ['ES256', 'HS256'] }), /HS256/);
    assert.throws(() => verifierFor({ algorithms: ['none'] }), /none/);
  });

  test('an unreachable issuer is an outage, not a bad token', async () => {
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const { port } = closed.address() as AddressInfo;
    await new Promise<void>((resolve) => closed.close(() => resolve()));

    const verifier = verifierFor({ issuer: `http://127.0.0.1:${port}/oidc` });
    const token = await forge({ ...goodClaims(), iss: `http://127.0.0.1:${port}/oidc` });
    const err = await verifier.verify(token).then(
      () => assert.fail('accepted a token while the issuer was down'),
      (e: unknown) => e,
    );
    assert.ok(isLogproxyError(err, 'LP_UNREACHABLE'), `got ${String(err)}`);
    assert.equal(err.retryable, true);
  });
});

describe('token verifier with opaque tokens and RFC 7662 introspection', () => {
  const gatewayClient = { clientId: 'logproxy-gateway', clientSecret: `s-${randomUUID()}` };
  let idp: DevIdp;
  let tokens: TokenSet;
  let introspectionUrl: string;

  const verifierFor = (overrides: Partial<TokenVerifierOptions> = {}) =>
    createTokenVerifier({
      issuer: idp.issuer,
      audience: idp.audience,
      algorithms: ALGORITHMS,
      clockToleranceS: TOLERANCE_S,
      clientId: idp.clientId,
      introspection: { url: introspectionUrl, ...gatewayClient },
      ...overrides,
    });

  before(async () => {
    idp = await startDevIdp({
      accessTokenFormat: 'opaque',
      introspectionClients: [gatewayClient],
    });
    const discovery = await discover(idp.issuer);
    assert.ok(discovery.introspection_endpoint);
    introspectionUrl = discovery.introspection_endpoint;
    tokens = await deviceLogin(idp.issuer, idp.clientId);
  });
  after(async () => {
    await idp?.close();
  });

  test('a real opaque token is introspected into a principal', async () => {
    assert.equal(tokens.accessToken.split('.').length, 1, 'expected an opaque token');
    const principal = await verifierFor().verify(tokens.accessToken);
    assert.equal(principal.subject, 'alice');
    assert.equal(principal.clientId, idp.clientId);
    assert.ok(principal.authTimeMs !== undefined, 'auth_time missing from introspection');
    assert.ok(principal.expiresAtMs > Date.now());
  });

  test('an unknown or revoked token is inactive', async () => {
    await rejects(verifierFor().verify('no-such-token-0123456789'), 'inactive');

    const second = await deviceLogin(idp.issuer, idp.clientId);
    assert.equal((await verifierFor().verify(second.accessToken)).subject, 'alice');
    await revokeToken(idp.issuer, idp.clientId, second.accessToken, 'access_token');
    await rejects(verifierFor().verify(second.accessToken), 'inactive');
  });

  test('a refresh token presented as an access token is refused', async () => {
    await rejects(verifierFor().verify(tokens.refreshToken), 'wrong_audience');
  });

  test('a gateway with another audience refuses the token', async () => {
    const elsewhere = verifierFor({ audience: 'https://other-service.example' });
    await rejects(elsewhere.verify(tokens.accessToken), 'wrong_audience');
  });

  test('an introspected token past its exp is refused by our own clock too', async () => {
    const { expiresAtMs } = await verifierFor().verify(tokens.accessToken);
    const late = verifierFor({ now: () => expiresAtMs + (TOLERANCE_S + 1) * 1000 });
    await rejects(late.verify(tokens.accessToken), 'expired');
  });

  test('wrong gateway credentials or an unreachable endpoint fail introspection', async () => {
    const wrongSecret = verifierFor({
      introspection: { url: introspectionUrl, clientId: gatewayClient.clientId, clientSecret: 'x' },
    });
    await rejects(wrongSecret.verify(tokens.accessToken), 'introspection_failed');

    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const { port } = closed.address() as AddressInfo;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const down = verifierFor({
      introspection: { url: `http://127.0.0.1:${port}/introspect`, ...gatewayClient },
    });
    await rejects(down.verify(tokens.accessToken), 'introspection_failed');
  });
});

describe('token verifier across a key rotation', () => {
  test('after the issuer rotates its keys, tokens with the new kid verify', async (t) => {
    const dirs = await Promise.all([1, 2].map(() => mkdtemp(path.join(os.tmpdir(), 'lp-rotate-'))));
    t.after(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

    const before = await startDevIdp({ dataDir: dirs[0] });
    const { port } = before.server.address() as AddressInfo;
    const verifier = createTokenVerifier({
      issuer: before.issuer,
      audience: before.audience,
      algorithms: ALGORITHMS,
      clockToleranceS: TOLERANCE_S,
      jwksRefetchCooldownMs: 0,
    });
    const old = await deviceLogin(before.issuer, before.clientId);
    assert.equal((await verifier.verify(old.accessToken)).subject, 'alice');
    await before.close({ keepData: true });

    // Same issuer URL, fresh keys: the verifier's cached key set no longer has the kid.
    const rotated = await startDevIdp({ dataDir: dirs[1], port });
    t.after(() => rotated.close({ keepData: true }));
    const fresh = await deviceLogin(rotated.issuer, rotated.clientId);
    assert.notEqual(
      decodeProtectedHeader(fresh.accessToken).kid,
      decodeProtectedHeader(old.accessToken).kid,
    );
    assert.equal((await verifier.verify(fresh.accessToken)).subject, 'alice');
    // The old key is gone from the issuer: its tokens now fail.
    await rejects(verifier.verify(old.accessToken), 'unknown_kid');
  });
});
