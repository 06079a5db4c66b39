import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  clearOidcConfigurationCache,
  getOidcConfiguration,
  insecureAllowed,
  isLoopbackHost,
} from '../../src/auth/oidc-config.js';
import { ErrorCodes, isLogproxyError } from '../../src/util/errors.js';
import { startDevIdp } from '../helpers/dev-idp.js';

test('plain HTTP issuers are allowed on loopback or in dev mode only', () => {
  assert.equal(insecureAllowed('https://id.example.com', false), false);
  assert.equal(insecureAllowed('http://127.0.0.1:8080/oidc', false), true);
  assert.equal(insecureAllowed('http://localhost:8080/oidc', false), true);
  assert.equal(insecureAllowed('http://[::1]:8080/oidc', false), true);
  assert.equal(insecureAllowed('http://gw.internal/oidc', true), true);
  assert.throws(
    () => insecureAllowed('http://gw.internal/oidc', false),
    (err: unknown) =>
      isLogproxyError(err, ErrorCodes.BAD_RESPONSE) &&
      /tokens would travel unencrypted/.test(err.message),
  );
  assert.equal(isLoopbackHost('127.1.2.3'), true);
  assert.equal(isLoopbackHost('128.0.0.1'), false);
  assert.equal(isLoopbackHost('localhost.example.com'), false);
});

test('discovery against the real provider is cached; a failed one is not', async (t) => {
  clearOidcConfigurationCache();
  const first = await startDevIdp();
  const { port } = first.server.address() as { port: number };
  const issuer = first.issuer;
  await first.close({ keepData: true });

  await assert.rejects(getOidcConfiguration(issuer, 'logproxy-cli'), (err: unknown) => {
    assert.ok(isLogproxyError(err, ErrorCodes.UNREACHABLE), String(err));
    assert.equal(err.retryable, true);
    assert.match(
      err.message,
      /could not reach the identity provider http:\/\/127\.0\.0\.1:\d+\/oidc/,
    );
    return true;
  });

  const again = await startDevIdp({ port, dataDir: first.dataDir });
  t.after(async () => {
    await again.close();
    const { rm } = await import('node:fs/promises');
    await rm(first.dataDir, { recursive: true, force: true });
  });
  const a = getOidcConfiguration(issuer, 'logproxy-cli');
  const b = getOidcConfiguration(issuer, 'logproxy-cli');
  assert.equal(a, b, 'concurrent callers share one discovery');
  const config = await a;
  assert.equal(config.serverMetadata().issuer, issuer);
  assert.equal(config.clientMetadata().client_id, 'logproxy-cli');
  assert.ok(config.serverMetadata().token_endpoint?.startsWith(issuer));
  assert.equal(await getOidcConfiguration(issuer, 'logproxy-cli'), config);
});
