import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { discoverGateway, validateDiscovery } from '../../src/auth/discovery.js';
import { createHttpClient } from '../../src/auth/http.js';
import { API_VERSION } from '../../src/protocol/api.js';
import { ErrorCodes, isLogproxyError } from '../../src/util/errors.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';

describe('gateway discovery', () => {
  let gw: TestGateway;
  const http = createHttpClient({ env: {}, timeoutMs: 5000 });

  before(async () => {
    gw = await startGateway();
  });
  after(async () => {
    await http.close();
    await gw.close();
  });

  test('a real gateway tells everything a login needs', async () => {
    const doc = await discoverGateway(`${gw.url}/`, http);
    assert.equal(doc.api_version, API_VERSION);
    assert.equal(doc.issuer, gw.issuer);
    assert.equal(doc.client_id, gw.clientId);
    assert.equal(doc.audience, gw.audience);
    assert.ok(doc.scopes.includes('offline_access'));
    assert.equal(doc.dev, true);
  });

  test('a URL that is not a gateway says so', async () => {
    await assert.rejects(discoverGateway(`${gw.url}/not/here`, http), (err: unknown) => {
      assert.ok(isLogproxyError(err, ErrorCodes.BAD_RESPONSE), String(err));
      assert.match(err.message, /does not look like a logproxy gateway/);
      return true;
    });
  });

  test('documents missing fields or from a newer API are refused with the fix', () => {
    const good = {
      api_version: 1,
      issuer: 'https://idp.example.com',
      client_id: 'cli',
      audience: 'https://logs.example.com',
    };
    const doc = validateDiscovery(good, 'https://gw');
    assert.deepEqual(doc.scopes, ['openid', 'offline_access'], 'default scopes');
    assert.equal(doc.gateway, 'https://gw');

    const missing = { ...good, client_id: undefined };
    assert.throws(
      () => validateDiscovery(missing, 'https://gw'),
      /\(no client_id\); check the gateway URL/,
    );
    assert.throws(() => validateDiscovery([], 'https://gw'), /not an object/);
    assert.throws(
      () => validateDiscovery({ ...good, api_version: API_VERSION + 1 }, 'https://gw'),
      /update logproxy/,
    );
    assert.throws(
      () => validateDiscovery({ ...good, issuer: 'not a url' }, 'https://gw'),
      /issuer is not a URL/,
    );
  });
});
