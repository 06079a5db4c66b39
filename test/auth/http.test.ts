import assert from 'node:assert/strict';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import {
  createHttpClient,
  problemToError,
  readJson,
  redact,
  expectOk,
  findLogproxyError,
} from '../../src/auth/http.js';
import { ProblemTypes, type Problem } from '../../src/protocol/api.js';
import { ErrorCodes, LogproxyError, isLogproxyError } from '../../src/util/errors.js';
import { createPrivateCa, type PrivateCa } from '../helpers/private-ca.js';
import { startTinyproxy, type Tinyproxy } from '../helpers/tinyproxy.js';

/** A server that misbehaves in the ways real gateways, proxies and IdPs do. */
function startGarbageServer(): Promise<{ url: string; server: Server }> {
  const server = createHttpServer((req, res) => {
    switch (req.url) {
      case '/html':
        res.writeHead(200, { 'content-type': 'text/html' });
        res.end('<html><head><title>Corporate proxy login</title></head><body></body></html>');
        return;
      case '/truncated':
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': '200' });
        res.write('{"api_version": 1, "gate');
        setTimeout(() => res.socket?.destroy(), 20);
        return;
      case '/stall':
        res.writeHead(200, { 'content-type': 'application/json' });
        res.write('{"api_version": 1, ');
        return; // never finishes
      case '/500':
        res.writeHead(500, { 'content-type': 'text/plain' });
        res.end('Internal Server Error');
        return;
      case '/hang':
        return; // never answers
      case '/bad-json':
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"a": ');
        return;
      case '/problem':
        res.writeHead(410, { 'content-type': 'application/problem+json' });
        res.end(
          JSON.stringify({
            type: ProblemTypes.sessionEnded,
            title: 'Session ended',
            status: 410,
            reason: 'idle_timeout',
            session_id: 's1',
          }),
        );
        return;
      case '/echo':
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ access_token: 'eyJhbGciOi.secret.sig', ok: true }));
        return;
      default:
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ ok: true, path: req.url }));
    }
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      resolve({ url: `http://127.0.0.1:${port}`, server });
    }),
  );
}

async function rejection(promise: Promise<unknown>): Promise<LogproxyError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(isLogproxyError(err), `expected a LogproxyError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected a rejection');
}

describe('http client against a misbehaving server', () => {
  let base: string;
  let server: Server;
  const http = createHttpClient({ timeoutMs: 500, env: {} });

  before(async () => {
    ({ url: base, server } = await startGarbageServer());
    http.nameServer(base, 'the gateway');
  });
  after(async () => {
    await http.close();
    server.closeAllConnections();
    server.close();
  });

  test('HTML instead of JSON names the server, the type and the page title', async () => {
    const err = await rejection(readJson(await http(`${base}/html`), 'the gateway'));
    assert.equal(err.code, ErrorCodes.BAD_RESPONSE);
    assert.match(err.message, new RegExp(`the gateway at ${base}`));
    assert.match(err.message, /text\/html instead of JSON/);
    assert.match(err.message, /Corporate proxy login/);
  });

  test('a truncated body is reported as cut off', async () => {
    const err = await rejection(readJson(await http(`${base}/truncated`), 'the gateway'));
    assert.equal(err.code, ErrorCodes.BAD_RESPONSE);
    assert.match(err.message, /cut off/);
  });

  test('JSON that does not parse', async () => {
    const err = await rejection(readJson(await http(`${base}/bad-json`), 'the gateway'));
    assert.equal(err.code, ErrorCodes.BAD_RESPONSE);
    assert.match(err.message, /does not parse/);
  });

  test('a 500 is UNREACHABLE, retryable, with the status', async () => {
    const err = await rejection(readJson(await http(`${base}/500`), 'the gateway'));
    assert.equal(err.code, ErrorCodes.UNREACHABLE);
    assert.equal(err.retryable, true);
    assert.match(err.message, /HTTP 500/);
  });

  test('a server that never answers gives TIMEOUT within the bound', async () => {
    const err = await rejection(http(`${base}/hang`));
    assert.equal(err.code, ErrorCodes.TIMEOUT);
    assert.match(err.message, new RegExp(`the gateway at ${base} did not answer within 500ms`));
  });

  test('a body that stalls half-way gives TIMEOUT', async () => {
    const err = await rejection(readJson(await http(`${base}/stall`), 'the gateway'));
    assert.equal(err.code, ErrorCodes.TIMEOUT);
    assert.match(err.message, /stopped sending/);
  });

  test('problem+json becomes its typed error', async () => {
    const err = await rejection(readJson(await http(`${base}/problem`), 'the gateway'));
    assert.equal(err.code, ErrorCodes.SESSION_IDLE_TIMEOUT);
    assert.equal(err.details.reason, 'idle_timeout');
    assert.equal(err.details.sessionId, 's1');
  });

  test('expectOk passes a 2xx and rejects the rest', async () => {
    await expectOk(await http(`${base}/ok`), 'the gateway');
    const err = await rejection(expectOk(await http(`${base}/500`), 'the gateway'));
    assert.equal(err.code, ErrorCodes.UNREACHABLE);
  });

  test('connection refused names the server', async () => {
    const closed = createHttpServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const { port } = closed.address() as AddressInfo;
    await new Promise((resolve) => closed.close(resolve));
    const client = createHttpClient({ timeoutMs: 2000, env: {} });
    client.nameServer(`http://127.0.0.1:${port}/oidc`, 'the identity provider');
    const err = await rejection(client(`http://127.0.0.1:${port}/oidc/token`));
    assert.equal(err.code, ErrorCodes.UNREACHABLE);
    assert.match(err.message, /cannot reach the identity provider at .*: connection refused/);
    await client.close();
  });

  test('a caller abort stays an abort, not a timeout', async () => {
    const controller = new AbortController();
    const pending = http(`${base}/hang`, { signal: controller.signal });
    controller.abort();
    await assert.rejects(pending, (err: Error) => err.name === 'AbortError');
  });

  test('--verbose traces requests and answers with secrets redacted', async () => {
    const lines: string[] = [];
    const traced = createHttpClient({ verbose: true, trace: (l) => lines.push(l), env: {} });
    const form = new URLSearchParams({
      grant_type: 'refresh_token',
      refresh_token: 'rt-very-secret',
      client_id: 'logproxy-cli',
    });
    const response = await traced(`${base}/echo`, {
      method: 'POST',
      headers: { authorization: 'Bearer at-very-secret', 'content-type': 'x' },
      body: form,
    });
    await readJson(response, 'the gateway');
    await new Promise((resolve) => setTimeout(resolve, 50)); // the body trace is async
    await traced.close();
    const text = lines.join('\n');
    assert.match(text, new RegExp(`\u2192 POST ${base}/echo`));
    assert.match(text, /\u2190 200 \(\d+ ms\)/);
    assert.match(text, /authorization: Bearer \[REDACTED\]/);
    assert.match(text, /refresh_token=\[REDACTED\]/);
    assert.match(text, /client_id=logproxy-cli/);
    assert.doesNotMatch(text, /very-secret|secret\.sig/);
  });
});

describe('redaction and problem mapping', () => {
  test('redact handles JSON, forms and free text', () => {
    assert.equal(
      redact('{"device_code":"dc","user_code":"AB","interval":5}'),
      '{"device_code":"[REDACTED]","user_code":"[REDACTED]","interval":5}',
    );
    assert.equal(redact('code=abc&state=x'), 'code=[REDACTED]&state=x');
    assert.doesNotMatch(redact('Bearer abc.def'), /abc/);
  });

  const cases: Array<[Partial<Problem>, string]> = [
    [{ type: ProblemTypes.invalidToken, status: 401 }, ErrorCodes.NOT_SIGNED_IN],
    [{ type: ProblemTypes.reauthRequired, status: 401 }, ErrorCodes.REAUTH_REQUIRED],
    [{ type: ProblemTypes.forbidden, status: 403 }, ErrorCodes.ACCESS_DENIED],
    [{ type: ProblemTypes.notAdmin, status: 403 }, ErrorCodes.ACCESS_DENIED],
    [{ type: ProblemTypes.targetNotFound, status: 404 }, ErrorCodes.NOT_FOUND],
    [{ type: ProblemTypes.sessionNotFound, status: 404 }, ErrorCodes.NOT_FOUND],
    [
      { type: ProblemTypes.sessionEnded, status: 410, reason: 'max_lifetime' },
      ErrorCodes.SESSION_MAX_LIFETIME,
    ],
    [
      { type: ProblemTypes.sessionEnded, status: 410, reason: 'revoked' },
      ErrorCodes.SESSION_REVOKED,
    ],
    [
      { type: ProblemTypes.sessionEnded, status: 410, reason: 'client_lost' },
      ErrorCodes.UNREACHABLE,
    ],
    [{ type: ProblemTypes.invalidParameter, status: 400 }, ErrorCodes.USAGE],
    [{ type: ProblemTypes.upstreamUnavailable, status: 502 }, ErrorCodes.UNREACHABLE],
    [{ type: 'urn:other', status: 503 }, ErrorCodes.UNREACHABLE],
    [{ type: 'urn:other', status: 418 }, ErrorCodes.BAD_RESPONSE],
  ];
  for (const [problem, code] of cases) {
    test(`${problem.type} ${problem.reason ?? problem.status} -> ${code}`, () => {
      const err = problemToError({ title: 't', ...problem } as Problem);
      assert.equal(err.code, code);
    });
  }

  test('findLogproxyError digs through wrappers', () => {
    const inner = new LogproxyError(ErrorCodes.TIMEOUT, 'x');
    const wrapped = new Error('something went wrong', { cause: inner });
    assert.equal(findLogproxyError(wrapped), inner);
    assert.equal(findLogproxyError(new Error('plain')), undefined);
  });
});

describe('proxies and private CAs', () => {
  let proxy: Tinyproxy;
  let ca: PrivateCa;
  let plain: { url: string; server: Server };
  let tlsServer: Server;
  let tlsUrl: string;

  before(async () => {
    [proxy, ca, plain] = await Promise.all([
      startTinyproxy(),
      createPrivateCa(),
      startGarbageServer(),
    ]);
    tlsServer = createHttpsServer(
      { cert: readFileSync(ca.certFile), key: readFileSync(ca.keyFile) },
      (_req, res) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"tls":true}');
      },
    );
    await new Promise<void>((resolve) => tlsServer.listen(0, '127.0.0.1', resolve));
    tlsUrl = `https://127.0.0.1:${(tlsServer.address() as AddressInfo).port}`;
  });
  after(async () => {
    plain.server.closeAllConnections();
    plain.server.close();
    tlsServer.close();
    await Promise.all([proxy.stop(), ca.cleanup()]);
  });

  test('HTTP_PROXY with an empty NO_PROXY proxies loopback too (absolute-form request)', async () => {
    const client = createHttpClient({ env: { HTTP_PROXY: proxy.url, NO_PROXY: '' } });
    const body = await readJson<{ path: string }>(
      await client(`${plain.url}/via-proxy`),
      'the gateway',
    );
    await client.close();
    assert.equal(body.path, '/via-proxy');
    assert.match(await proxy.log(), new RegExp(`GET ${plain.url}/via-proxy`));
  });

  test('NO_PROXY naming the host bypasses the proxy', async () => {
    const client = createHttpClient({ env: { HTTP_PROXY: proxy.url, NO_PROXY: '127.0.0.1' } });
    await readJson(await client(`${plain.url}/direct`), 'the gateway');
    await client.close();
    assert.doesNotMatch(await proxy.log(), /\/direct/);
  });

  test('HTTPS through the proxy uses CONNECT and trusts NODE_EXTRA_CA_CERTS', async () => {
    const client = createHttpClient({
      env: { HTTPS_PROXY: proxy.url, NO_PROXY: '', NODE_EXTRA_CA_CERTS: ca.caFile },
    });
    const body = await readJson<{ tls: boolean }>(await client(`${tlsUrl}/`), 'the gateway');
    await client.close();
    assert.equal(body.tls, true);
    assert.match(await proxy.log(), new RegExp(`CONNECT 127\\.0\\.0\\.1:${tlsUrl.split(':')[2]}`));
  });

  test('a private CA that is not trusted gives a message naming the certificate problem', async () => {
    const client = createHttpClient({ env: {} });
    client.nameServer(tlsUrl, 'the gateway');
    const err = await rejection(client(`${tlsUrl}/`));
    await client.close();
    assert.equal(err.code, ErrorCodes.UNREACHABLE);
    assert.match(err.message, /cannot trust the TLS certificate of the gateway/);
    assert.match(err.message, /NODE_EXTRA_CA_CERTS/);
  });
});
