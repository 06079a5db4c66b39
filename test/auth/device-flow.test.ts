/**
 * Timing and error handling of the device flow against a real HTTP server that plays a
 * provider. A scripted provider is needed here because oidc-provider never sends `slow_down`,
 * `verification_url` or a `message`, and always advertises the same interval; the real
 * provider is exercised by the login tests (test/cli/login*.test.ts).
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, afterEach, before, describe, test } from 'node:test';
import * as oidc from 'openid-client';
import {
  DEFAULT_POLL_INTERVAL_MS,
  runDeviceLogin,
  type DeviceLoginOptions,
} from '../../src/auth/device-flow.js';
import { createHttpClient, type HttpClient } from '../../src/auth/http.js';
import type { DeviceCodePrompt } from '../../src/auth/types.js';
import { ManualClock } from '../../src/util/clock.js';
import { ErrorCodes, isLogproxyError, type LogproxyError } from '../../src/util/errors.js';

interface Script {
  /** Extra or replaced fields of the device authorization answer. */
  authorization: Record<string, unknown>;
  /** One OAuth error (or 'ok') per token request, in order; the last one repeats. */
  polls: Array<string>;
  /** When set, token requests never get an answer. */
  hangPolls?: boolean;
}

interface Seen {
  authorizationForm?: URLSearchParams;
  /** ManualClock time of each token request. */
  pollTimes: number[];
  tokenForms: URLSearchParams[];
}

async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  let body = '';
  for await (const chunk of req) body += String(chunk);
  return new URLSearchParams(body);
}

function json(res: import('node:http').ServerResponse, status: number, body: unknown) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

describe('device flow timing and outcomes (scripted provider)', () => {
  let server: Server;
  let issuer: string;
  let http: HttpClient;
  let script: Script;
  let seen: Seen;
  let clock: ManualClock;

  before(async () => {
    server = createServer((req, res) => {
      void (async () => {
        if (req.url === '/device') {
          seen.authorizationForm = await readForm(req);
          json(res, 200, {
            device_code: 'dev-code-1',
            user_code: 'WDJB-MJHT',
            verification_uri: `${issuer}/activate`,
            expires_in: 600,
            ...script.authorization,
          });
          return;
        }
        if (req.url === '/token') {
          seen.tokenForms.push(await readForm(req));
          seen.pollTimes.push(clock.now());
          if (script.hangPolls) return;
          const outcome =
            script.polls[Math.min(seen.pollTimes.length - 1, script.polls.length - 1)]!;
          if (outcome === 'ok') {
            json(res, 200, {
              access_token: 'at-1',
              token_type: 'Bearer',
              expires_in: 300,
              refresh_token: 'rt-1',
              scope: 'openid offline_access',
            });
          } else {
            json(res, 400, { error: outcome });
          }
          return;
        }
        res.writeHead(404).end();
      })();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    http = createHttpClient({ env: {}, timeoutMs: 5000 });
  });
  after(async () => {
    await http.close();
    server.closeAllConnections();
    server.close();
  });
  afterEach(() => {
    script = { authorization: {}, polls: ['ok'] };
  });

  function setup(next: Script) {
    script = next;
    seen = { pollTimes: [], tokenForms: [] };
    clock = new ManualClock();
    const config = new oidc.Configuration(
      {
        issuer,
        token_endpoint: `${issuer}/token`,
        device_authorization_endpoint: `${issuer}/device`,
      },
      'logproxy-cli',
      undefined,
      oidc.None(),
    );
    oidc.allowInsecureRequests(config);
    config[oidc.customFetch] = http as unknown as oidc.CustomFetch;
    const prompts: DeviceCodePrompt[] = [];
    const polls: Array<{ kind: string; nextPollInMs: number }> = [];
    const waiters: Array<() => void> = [];
    const controller = new AbortController();
    const options: DeviceLoginOptions = {
      config,
      fetch: http,
      scopes: ['openid', 'offline_access'],
      audience: 'https://logs.example.com',
      clock,
      signal: controller.signal,
      callbacks: {
        onCode: (p) => {
          prompts.push(p);
          waiters.splice(0).forEach((w) => w());
        },
        onPoll: (e) => {
          polls.push(e);
          waiters.splice(0).forEach((w) => w());
        },
      },
    };
    /** Resolves once the flow reported something new (a code or a poll outcome). */
    const nextEvent = () => new Promise<void>((resolve) => waiters.push(resolve));
    return { options, prompts, polls, nextEvent, controller };
  }

  /**
   * Advances the clock in steps until the server saw `count` token requests. Before each step
   * it waits until the flow sleeps on the clock again (or has finished), so a poll's real
   * HTTP round trip never overlaps the clock moving.
   */
  async function advanceUntilPolls(count: number, stepMs = 1000, limitMs = 60_000) {
    for (let spent = 0; ; spent += stepMs) {
      while (clock.pendingTimers() === 0 && !settled) {
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
      if (seen.pollTimes.length >= count) return;
      assert.ok(spent <= limitMs, `no poll #${count} within ${limitMs} ms of clock time`);
      await clock.advanceAsync(stepMs);
    }
  }

  let settled = false;
  /** Starts the flow and remembers when it settles; the rejection is handled by the caller. */
  function start(options: DeviceLoginOptions) {
    settled = false;
    const result = runDeviceLogin(options);
    result.then(
      () => (settled = true),
      () => (settled = true),
    );
    return result;
  }

  test('no interval: 5 s polls; slow_down adds 5 s and keeps it; then tokens', async () => {
    const { options, prompts, polls, nextEvent } = setup({
      authorization: {},
      polls: ['authorization_pending', 'slow_down', 'authorization_pending', 'ok'],
    });
    const codeShown = nextEvent();
    const result = start(options);
    await codeShown;
    const t0 = clock.now();
    assert.equal(prompts[0]!.expiresAt, t0 + 600_000);

    await advanceUntilPolls(4, 1000);
    const tokens = await result;

    const gaps = seen.pollTimes.map((t, i) => t - (i === 0 ? t0 : seen.pollTimes[i - 1]!));
    assert.deepEqual(gaps, [
      DEFAULT_POLL_INTERVAL_MS,
      DEFAULT_POLL_INTERVAL_MS,
      DEFAULT_POLL_INTERVAL_MS + 5000,
      DEFAULT_POLL_INTERVAL_MS + 5000,
    ]);
    assert.deepEqual(
      polls.map((p) => [p.kind, p.nextPollInMs]),
      [
        ['pending', 5000],
        ['slow_down', 10000],
        ['pending', 10000],
      ],
    );
    assert.equal(tokens.accessToken, 'at-1');
    assert.equal(tokens.refreshToken, 'rt-1');
    assert.equal(tokens.accessTokenExpiresAt, seen.pollTimes[3]! + 300_000);
  });

  test('asks for the scopes and the audience as resource, polls with the device code', async () => {
    const { options, nextEvent } = setup({ authorization: { interval: 1 }, polls: ['ok'] });
    const codeShown = nextEvent();
    const result = start(options);
    await codeShown;
    await advanceUntilPolls(1, 1000);
    await result;
    assert.equal(seen.authorizationForm?.get('client_id'), 'logproxy-cli');
    assert.equal(seen.authorizationForm?.get('scope'), 'openid offline_access');
    assert.equal(seen.authorizationForm?.get('resource'), 'https://logs.example.com');
    const poll = seen.tokenForms[0]!;
    assert.equal(poll.get('grant_type'), 'urn:ietf:params:oauth:grant-type:device_code');
    assert.equal(poll.get('device_code'), 'dev-code-1');
  });

  test('honours the server interval, verification_url and a provider message', async () => {
    const { options, prompts, nextEvent } = setup({
      authorization: {
        interval: 2,
        verification_uri: undefined,
        verification_url: 'https://idp.example.com/device',
        verification_uri_complete: 'https://idp.example.com/device?code=WDJB-MJHT',
        message: 'Go to https://idp.example.com/device and enter WDJB-MJHT',
      },
      polls: ['ok'],
    });
    const codeShown = nextEvent();
    const result = start(options);
    await codeShown;
    const t0 = clock.now();
    await advanceUntilPolls(1, 500);
    await result;
    assert.equal(seen.pollTimes[0]! - t0, 2000);
    assert.equal(prompts[0]!.verificationUri, 'https://idp.example.com/device');
    assert.equal(
      prompts[0]!.verificationUriComplete,
      'https://idp.example.com/device?code=WDJB-MJHT',
    );
    assert.match(prompts[0]!.message ?? '', /enter WDJB-MJHT/);
    assert.equal(prompts[0]!.userCode, 'WDJB-MJHT');
  });

  async function failure(promise: Promise<unknown>): Promise<LogproxyError> {
    const err = await promise.then(
      () => assert.fail('expected the flow to fail'),
      (e: unknown) => e,
    );
    assert.ok(isLogproxyError(err), String(err));
    return err;
  }

  test('access_denied stops with ACCESS_DENIED and names the next step', async () => {
    const { options, nextEvent } = setup({
      authorization: { interval: 1 },
      polls: ['authorization_pending', 'access_denied'],
    });
    const codeShown = nextEvent();
    const result = start(options);
    await codeShown;
    await advanceUntilPolls(2, 1000);
    const err = await failure(result);
    assert.equal(err.code, ErrorCodes.ACCESS_DENIED);
    assert.match(err.message, /denied in the browser; run `logproxy login`/);
  });

  test('expired_token stops with DEVICE_CODE_EXPIRED', async () => {
    const { options, nextEvent } = setup({
      authorization: { interval: 1 },
      polls: ['expired_token'],
    });
    const codeShown = nextEvent();
    const result = start(options);
    await codeShown;
    await advanceUntilPolls(1, 1000);
    const err = await failure(result);
    assert.equal(err.code, ErrorCodes.DEVICE_CODE_EXPIRED);
    assert.match(err.message, /run `logproxy login` again/);
  });

  test('a code that expires locally stops polling without asking again', async () => {
    const { options, nextEvent } = setup({
      authorization: { interval: 5, expires_in: 12 },
      polls: ['authorization_pending'],
    });
    const codeShown = nextEvent();
    const result = start(options);
    const outcome = failure(result);
    await codeShown;
    await advanceUntilPolls(2, 1000);
    await clock.advanceAsync(5000);
    const err = await outcome;
    assert.equal(err.code, ErrorCodes.DEVICE_CODE_EXPIRED);
    assert.equal(seen.pollTimes.length, 2);
  });

  test('an abort during the sleep ends the flow without waiting for the clock', async () => {
    const { options, nextEvent, controller } = setup({ authorization: {}, polls: ['ok'] });
    const codeShown = nextEvent();
    const result = start(options);
    await codeShown;
    controller.abort('SIGINT');
    const err = await failure(result);
    assert.equal(err.code, ErrorCodes.INTERRUPTED);
    assert.equal(seen.pollTimes.length, 0);
  });

  test('an abort during a poll that hangs ends the flow', async () => {
    const { options, nextEvent, controller } = setup({
      authorization: { interval: 1 },
      polls: ['ok'],
      hangPolls: true,
    });
    const codeShown = nextEvent();
    const result = start(options);
    await codeShown;
    await advanceUntilPolls(1, 1000);
    controller.abort('SIGINT');
    const err = await failure(result);
    assert.equal(err.code, ErrorCodes.INTERRUPTED);
  });

  test('an answer without a user code is a BAD_RESPONSE naming the provider', async () => {
    const { options } = setup({ authorization: { user_code: undefined }, polls: ['ok'] });
    const err = await failure(start(options));
    assert.equal(err.code, ErrorCodes.BAD_RESPONSE);
    assert.match(err.message, /identity provider at http:\/\/127\.0\.0\.1:\d+ .* user_code/);
  });
});
