/**
 * Networks people really have, with the real CLI: a forward proxy (Debian tinyproxy) in
 * between, a gateway whose TLS certificate comes from a private CA (made with openssl), and
 * servers that answer garbage or nothing at all.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { createCliEnv, type CliEnv } from '../helpers/cli.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { createPrivateCa, type PrivateCa } from '../helpers/private-ca.js';
import { startTinyproxy, type Tinyproxy } from '../helpers/tinyproxy.js';

describe('login through a forward proxy and to a TLS gateway from a private CA', () => {
  let proxy: Tinyproxy;
  let ca: PrivateCa;
  let plain: TestGateway;
  let tls: TestGateway;

  before(async () => {
    [proxy, ca] = await Promise.all([startTinyproxy(), createPrivateCa()]);
    [plain, tls] = await Promise.all([
      startGateway(),
      startGateway({ tls: { certFile: ca.certFile, keyFile: ca.keyFile } }),
    ]);
  });
  after(async () => {
    await Promise.all([plain.close(), tls.close()]);
    await Promise.all([proxy.stop(), ca.cleanup()]);
  });

  test('HTTP_PROXY with an empty NO_PROXY: every request goes through the proxy', async (t) => {
    const cli = await createCliEnv({ HTTP_PROXY: proxy.url, NO_PROXY: '' });
    t.after(() => cli.cleanup());
    const r = await cli.run(['login', '--gateway', plain.url, '--insecure-storage']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /Logged in to .* as alice/);

    const log = await proxy.log();
    assert.match(log, new RegExp(`GET ${plain.url}/.well-known/logproxy`));
    assert.match(log, new RegExp(`POST ${plain.issuer}/device/auth`));
    assert.match(log, new RegExp(`POST ${plain.issuer}/token`));
  });

  test('HTTPS_PROXY tunnels with CONNECT; NODE_EXTRA_CA_CERTS makes the CA trusted', async (t) => {
    assert.match(tls.url, /^https:/);
    const cli = await createCliEnv({
      HTTPS_PROXY: proxy.url,
      NO_PROXY: '',
      NODE_EXTRA_CA_CERTS: ca.caFile,
    });
    t.after(() => cli.cleanup());
    const r = await cli.run(['login', '--gateway', tls.url, '--insecure-storage']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`Logged in to ${tls.url} as alice`));
    assert.match(await proxy.log(), new RegExp(`CONNECT 127\\.0\\.0\\.1:${tls.port}`));

    const targets = await cli.run(['targets', '--json']);
    assert.equal(targets.code, 0, targets.stderr);
  });

  test('without the CA the error names the certificate problem and the fix (exit 5)', async (t) => {
    const cli = await createCliEnv();
    t.after(() => cli.cleanup());
    const r = await cli.run(['login', '--gateway', tls.url, '--insecure-storage']);
    assert.equal(r.code, 5, r.stderr);
    assert.match(
      r.stderr,
      new RegExp(
        `cannot trust the TLS certificate of the gateway at ${tls.url} ` +
          '\\(UNABLE_TO_VERIFY_LEAF_SIGNATURE\\); .*NODE_EXTRA_CA_CERTS',
      ),
    );
  });
});

describe('servers that answer garbage or nothing', () => {
  let server: Server;
  let base: string;
  let cli: CliEnv;

  before(async () => {
    server = createServer((req, res) => {
      const url = req.url ?? '/';
      if (url === '/html/.well-known/logproxy') {
        res.writeHead(200, { 'content-type': 'text/html' });
        res.end('<html><head><title>Welcome to nginx!</title></head></html>');
      } else if (url === '/fail/.well-known/logproxy') {
        res.writeHead(502, { 'content-type': 'text/html' });
        res.end('<html><head><title>502 Bad Gateway</title></head></html>');
      } else if (url === '/truncated/.well-known/logproxy') {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': '300' });
        res.write('{"api_version": 1, "issuer": "http://127.0.0.1');
        setTimeout(() => res.socket?.destroy(), 20);
      } else if (url === '/hang/.well-known/logproxy') {
        // never answers
      } else if (url === '/bad-idp/.well-known/logproxy') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            api_version: 1,
            gateway: `${base}/bad-idp`,
            issuer: `${base}/idp`,
            client_id: 'logproxy-cli',
            audience: 'https://logs.example.com',
            scopes: ['openid', 'offline_access'],
            dev: false,
          }),
        );
      } else if (url === '/idp/.well-known/openid-configuration') {
        res.writeHead(200, { 'content-type': 'text/html' });
        res.end('<html><head><title>Sign in to Corp SSO</title></head></html>');
      } else {
        res.writeHead(404, { 'content-type': 'text/plain' });
        res.end('not found');
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    cli = await createCliEnv({ LOGPROXY_HTTP_TIMEOUT: '1s' });
  });
  after(async () => {
    await cli.cleanup();
    server.closeAllConnections();
    server.close();
  });

  const login = (path: string) =>
    cli.run(['login', '--gateway', `${base}${path}`, '--insecure-storage']);

  test('HTML instead of the discovery document', async () => {
    const r = await login('/html');
    assert.equal(r.code, 5, r.stderr);
    assert.match(r.stderr, new RegExp(`${base}/html does not look like a logproxy gateway`));
    assert.match(r.stderr, /text\/html instead of JSON .*"Welcome to nginx!"/);
  });

  test('a 502 from the gateway', async () => {
    const r = await login('/fail');
    assert.equal(r.code, 5, r.stderr);
    assert.match(r.stderr, new RegExp(`the gateway at ${base} failed with HTTP 502`));
  });

  test('a truncated answer', async () => {
    const r = await login('/truncated');
    assert.equal(r.code, 5, r.stderr);
    assert.match(r.stderr, /the gateway at .* sent an incomplete answer .*cut off/);
  });

  test('a gateway that never answers: bounded by LOGPROXY_HTTP_TIMEOUT', async () => {
    const r = await login('/hang');
    assert.equal(r.code, 5, r.stderr);
    assert.match(r.stderr, new RegExp(`the gateway at ${base} did not answer within 1s`));
  });

  test('an identity provider that answers HTML is named as such', async () => {
    const r = await login('/bad-idp');
    assert.equal(r.code, 5, r.stderr);
    assert.match(r.stderr, /the identity provider/);
    assert.match(r.stderr, /text\/html/);
  });

  test('not a URL is a usage error (exit 2)', async () => {
    const r = await cli.run(['login', '--gateway', 'logs.example.com']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /did you mean https:\/\/logs\.example\.com/);
  });
});
