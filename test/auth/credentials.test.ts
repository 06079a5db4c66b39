import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  authTimeFromTokens,
  decodeJwtClaimsUnverified,
  parseStoredCredentials,
} from '../../src/auth/credentials.js';
import { ErrorCodes, isLogproxyError } from '../../src/util/errors.js';

function jwt(claims: object): string {
  const part = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${part({ alg: 'ES256', typ: 'at+jwt' })}.${part(claims)}.c2ln`;
}

test('auth_time comes from the id token first, then the access token, in epoch ms', () => {
  const id = jwt({ sub: 'alice', auth_time: 1_700_000_000 });
  const at = jwt({ sub: 'alice', auth_time: 1_700_000_500 });
  assert.equal(authTimeFromTokens(id, at), 1_700_000_000_000);
  assert.equal(authTimeFromTokens(undefined, at), 1_700_000_500_000);
  assert.equal(authTimeFromTokens('opaque-token', 'also.not-json.x'), undefined);
  assert.deepEqual(decodeJwtClaimsUnverified('a.b'), {});
  assert.equal(decodeJwtClaimsUnverified(at).sub, 'alice');
});

test('stored credentials are validated field by field without echoing secrets', () => {
  const good = {
    version: 1,
    gateway: 'https://g.example',
    profile: 'default',
    issuer: 'https://g.example/oidc',
    clientId: 'logproxy-cli',
    audience: 'https://g.example',
    subject: 'alice',
    accessToken: 'secret-access',
    accessTokenExpiresAt: 1,
    refreshToken: 'secret-refresh',
  };
  assert.deepEqual(parseStoredCredentials(JSON.stringify(good), 'X'), good);
  const bad: Array<[object, RegExp]> = [
    [{ ...good, version: 2 }, /not logproxy credentials/],
    [{ ...good, subject: 5 }, /no valid "subject"/],
    [{ ...good, accessTokenExpiresAt: 'soon' }, /no valid "accessTokenExpiresAt"/],
    [{ ...good, refreshToken: 7 }, /invalid "refreshToken"/],
  ];
  for (const [doc, message] of bad) {
    assert.throws(
      () => parseStoredCredentials(JSON.stringify(doc), 'the entry E'),
      (err: unknown) =>
        isLogproxyError(err, ErrorCodes.NOT_SIGNED_IN) &&
        message.test(err.message) &&
        err.message.includes('the entry E') &&
        !err.message.includes('secret-'),
    );
  }
});
