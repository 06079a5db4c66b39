/**
 * The OAuth 2.0 Device Authorization Grant (RFC 8628): ask the identity provider for a code,
 * let the person approve it in any browser, poll until they do. The core prints nothing: the
 * code reaches the person through `callbacks.onCode`, progress through `callbacks.onPoll`.
 */
import * as oidc from 'openid-client';
import type { Clock } from '../util/clock.js';
import { ErrorCodes, LogproxyError, isLogproxyError } from '../util/errors.js';
import type { DeviceCodePrompt, DeviceLoginCallbacks } from './types.js';
import { findLogproxyError, readJson, type Fetch } from './http.js';
import { raceAbort } from '../util/abort.js';

const DEVICE_CODE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

/** RFC 8628 §3.2: when the provider names no interval, clients wait 5 s between polls. */
export const DEFAULT_POLL_INTERVAL_MS = 5_000;
/** RFC 8628 §3.5: every `slow_down` adds 5 s to the interval, for the rest of the flow. */
export const SLOW_DOWN_STEP_MS = 5_000;
/**
 * A poll that fails on the network (not an OAuth answer) is retried with a doubled interval,
 * up to this cap, as §3.5 suggests; the person may be on a train. After
 * MAX_CONSECUTIVE_POLL_FAILURES in a row we stop: the provider is not coming back soon.
 */
const MAX_BACKOFF_INTERVAL_MS = 60_000;
const MAX_CONSECUTIVE_POLL_FAILURES = 5;

export interface DeviceLoginOptions {
  /** openid-client configuration of the provider (issuer metadata, client id, our fetch). */
  config: oidc.Configuration;
  /** Our HTTP client, for the device authorization request (see `requestDeviceCode`). */
  fetch: Fetch;
  /** Scopes to ask for, from discovery (`openid offline_access`). */
  scopes: string[];
  /** Sent as the RFC 8707 `resource`, so the access token is for the gateway. */
  audience: string;
  clock: Clock;
  /** Aborting stops the flow at once, mid-sleep or mid-request (Ctrl-C). */
  signal?: AbortSignal;
  callbacks: DeviceLoginCallbacks;
}

/** The tokens of a completed sign-in; times are epoch ms by the injected clock. */
export interface DeviceTokens {
  accessToken: string;
  accessTokenExpiresAt: number;
  refreshToken?: string;
  /** When the provider says (non-standard `refresh_expires_in`). */
  refreshTokenExpiresAt?: number;
  idToken?: string;
  scope?: string;
}

/** What the device authorization endpoint answered, after tolerating known variations. */
export interface DeviceAuthorization {
  deviceCode: string;
  prompt: DeviceCodePrompt;
  /** The provider's interval, or DEFAULT_POLL_INTERVAL_MS. */
  intervalMs: number;
}

/**
 * Runs the whole flow: request a code, show it, poll until approved, denied or expired.
 *
 * @throws LogproxyError ACCESS_DENIED (denied in the browser), DEVICE_CODE_EXPIRED (nobody
 *   approved in time), INTERRUPTED (the signal aborted), UNREACHABLE / BAD_RESPONSE /
 *   TIMEOUT (the provider failed).
 */
export async function runDeviceLogin(options: DeviceLoginOptions): Promise<DeviceTokens> {
  const { clock, signal, callbacks } = options;
  const authorization = await interruptible(requestDeviceCode(options), signal);
  callbacks.onCode(authorization.prompt);
  return pollForTokens(options, authorization, clock);
}

/**
 * POSTs to the device authorization endpoint ourselves rather than with openid-client's
 * `initiateDeviceAuthorization`: that one rejects answers without `verification_uri`, and
 * some large providers send `verification_url` (the draft's name) instead. The answer is
 * validated here, once.
 */
export async function requestDeviceCode(options: DeviceLoginOptions): Promise<DeviceAuthorization> {
  const { config, fetch, clock } = options;
  const metadata = config.serverMetadata();
  const endpoint = metadata.device_authorization_endpoint;
  if (!endpoint) {
    throw new LogproxyError(
      ErrorCodes.BAD_RESPONSE,
      `the identity provider ${metadata.issuer} does not offer the device flow ` +
        '(its metadata has no device_authorization_endpoint); ask the gateway operator',
    );
  }

  const body = new URLSearchParams({
    client_id: config.clientMetadata().client_id,
    scope: options.scopes.join(' '),
    resource: options.audience,
  });
  const response = await fetch(endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    body,
    signal: options.signal,
  });
  if (!response.ok) throw await oauthErrorFromResponse(response, 'device authorization');
  const json = await readJson<Record<string, unknown>>(response, 'the identity provider');
  const requestedAt = clock.now();

  const invalid = (what: string) =>
    new LogproxyError(
      ErrorCodes.BAD_RESPONSE,
      `the identity provider at ${new URL(endpoint).origin} sent a device authorization ` +
        `answer without ${what}`,
    );
  const deviceCode = json.device_code;
  const userCode = json.user_code;
  const verificationUri = json.verification_uri ?? json.verification_url;
  const expiresInS = Number(json.expires_in);
  if (typeof deviceCode !== 'string' || !deviceCode) throw invalid('a device_code');
  if (typeof userCode !== 'string' || !userCode) throw invalid('a user_code');
  if (typeof verificationUri !== 'string' || !verificationUri) throw invalid('a verification_uri');
  if (!Number.isFinite(expiresInS) || expiresInS <= 0) throw invalid('a valid expires_in');
  const intervalS = Number(json.interval);
  const complete = json.verification_uri_complete ?? json.verification_url_complete;

  return {
    deviceCode,
    intervalMs:
      Number.isFinite(intervalS) && intervalS > 0 ? intervalS * 1000 : DEFAULT_POLL_INTERVAL_MS,
    prompt: {
      userCode,
      verificationUri,
      ...(typeof complete === 'string' && complete ? { verificationUriComplete: complete } : {}),
      expiresAt: requestedAt + expiresInS * 1000,
      ...(typeof json.message === 'string' && json.message ? { message: json.message } : {}),
    },
  };
}

/**
 * The poll loop. Why the timing is what it is: RFC 8628 asks clients to wait `interval`
 * between token requests (5 s when absent) and to add 5 s on each `slow_down`, keeping the
 * larger interval from then on. We sleep on the injected clock so tests can run a ten-minute
 * wait in milliseconds, and every wait and request races the abort signal, so Ctrl-C ends
 * the flow at once instead of at the end of a sleep.
 */
async function pollForTokens(
  options: DeviceLoginOptions,
  authorization: DeviceAuthorization,
  clock: Clock,
): Promise<DeviceTokens> {
  const { signal, callbacks } = options;
  const { expiresAt } = authorization.prompt;
  let intervalMs = authorization.intervalMs;
  let failures = 0;

  for (;;) {
    await sleepOrInterrupt(clock, intervalMs, signal);
    if (clock.now() >= expiresAt) throw deviceCodeExpired(authorization);

    try {
      const tokens = await interruptible(
        oidc.genericGrantRequest(options.config, DEVICE_CODE_GRANT, {
          device_code: authorization.deviceCode,
          resource: options.audience,
        }),
        signal,
      );
      return toDeviceTokens(tokens, clock.now());
    } catch (err) {
      if (isLogproxyError(err, ErrorCodes.INTERRUPTED)) throw err;
      const oauthError = err instanceof oidc.ResponseBodyError ? err.error : undefined;

      if (oauthError === 'authorization_pending') {
        failures = 0;
        callbacks.onPoll?.({ kind: 'pending', nextPollInMs: intervalMs });
        continue;
      }
      if (oauthError === 'slow_down') {
        failures = 0;
        intervalMs += SLOW_DOWN_STEP_MS;
        callbacks.onPoll?.({ kind: 'slow_down', nextPollInMs: intervalMs });
        continue;
      }
      if (oauthError === 'access_denied') {
        throw new LogproxyError(
          ErrorCodes.ACCESS_DENIED,
          'the sign-in was denied in the browser; run `logproxy login` to try again',
          { cause: err },
        );
      }
      if (oauthError === 'expired_token') throw deviceCodeExpired(authorization, err);

      const failure = describeOidcError(err, 'the identity provider');
      failures += 1;
      if (!failure.retryable || failures >= MAX_CONSECUTIVE_POLL_FAILURES) throw failure;
      intervalMs = Math.min(intervalMs * 2, MAX_BACKOFF_INTERVAL_MS);
    }
  }
}

function deviceCodeExpired(authorization: DeviceAuthorization, cause?: unknown): LogproxyError {
  return new LogproxyError(
    ErrorCodes.DEVICE_CODE_EXPIRED,
    `the code ${authorization.prompt.userCode} expired before it was approved; ` +
      'run `logproxy login` again and approve the new code in time',
    { cause },
  );
}

function toDeviceTokens(tokens: oidc.TokenEndpointResponse, nowMs: number): DeviceTokens {
  // A provider that leaves out expires_in gets a conservative five minutes: the token is
  // refreshed early rather than presented after it expired.
  const expiresInS = typeof tokens.expires_in === 'number' ? tokens.expires_in : 300;
  const refreshExpiresIn = Number(tokens.refresh_expires_in);
  return {
    accessToken: tokens.access_token,
    accessTokenExpiresAt: nowMs + expiresInS * 1000,
    ...(tokens.refresh_token ? { refreshToken: tokens.refresh_token } : {}),
    ...(Number.isFinite(refreshExpiresIn) && refreshExpiresIn > 0
      ? { refreshTokenExpiresAt: nowMs + refreshExpiresIn * 1000 }
      : {}),
    ...(tokens.id_token ? { idToken: tokens.id_token } : {}),
    ...(tokens.scope ? { scope: tokens.scope } : {}),
  };
}

/** Rejects with INTERRUPTED as soon as `signal` aborts, whatever `promise` is doing. */
export function interruptible<T>(promise: Promise<T>, signal?: AbortSignal): Promise<T> {
  return raceAbort(promise, signal, () => interrupted(signal!));
}

async function sleepOrInterrupt(clock: Clock, ms: number, signal?: AbortSignal): Promise<void> {
  try {
    await clock.sleep(ms, signal);
  } catch (err) {
    if (signal?.aborted) throw interrupted(signal);
    throw err;
  }
}

function interrupted(signal: AbortSignal): LogproxyError {
  const reason = typeof signal.reason === 'string' ? ` (${signal.reason})` : '';
  return new LogproxyError(
    ErrorCodes.INTERRUPTED,
    `sign-in interrupted${reason}; nothing was stored`,
  );
}

/**
 * Reads an OAuth error answer (`{"error": ...}`) from a non-2xx response; anything else is
 * described by `readJson`'s rules.
 */
async function oauthErrorFromResponse(response: Response, step: string): Promise<LogproxyError> {
  const where = `the identity provider at ${new URL(response.url).origin}`;
  const type = response.headers.get('content-type') ?? '';
  if (type.includes('json')) {
    const text = await response.text().catch(() => '');
    try {
      const body = JSON.parse(text) as { error?: unknown; error_description?: unknown };
      if (typeof body.error === 'string') {
        const description =
          typeof body.error_description === 'string' ? `: ${body.error_description}` : '';
        return new LogproxyError(
          body.error === 'access_denied' || body.error === 'unauthorized_client'
            ? ErrorCodes.ACCESS_DENIED
            : ErrorCodes.BAD_RESPONSE,
          `${where} refused the ${step} request (${body.error}${description})`,
          { details: { oauthError: body.error, status: response.status } },
        );
      }
    } catch {
      // fall through: described by status below
    }
    return new LogproxyError(
      response.status >= 500 ? ErrorCodes.UNREACHABLE : ErrorCodes.BAD_RESPONSE,
      `${where} answered the ${step} request with HTTP ${response.status}`,
      { retryable: response.status >= 500, details: { status: response.status } },
    );
  }
  try {
    await readJson(response, 'the identity provider');
  } catch (err) {
    if (isLogproxyError(err)) return err;
  }
  return new LogproxyError(
    ErrorCodes.BAD_RESPONSE,
    `${where} answered the ${step} request with HTTP ${response.status}`,
  );
}

/**
 * Turns what openid-client throws into a LogproxyError naming the provider: our own network
 * errors come back wrapped, OAuth errors carry `error`, and a few of its checks deserve words
 * (a JWT timestamp check failing usually means this machine's clock is wrong).
 */
export function describeOidcError(err: unknown, server: string): LogproxyError {
  const ours = findLogproxyError(err);
  if (ours) return ours;
  if (err instanceof oidc.ResponseBodyError) {
    const description = err.error_description ? `: ${err.error_description}` : '';
    return new LogproxyError(
      err.status >= 500 ? ErrorCodes.UNREACHABLE : ErrorCodes.BAD_RESPONSE,
      `${server} answered ${err.error}${description} (HTTP ${err.status})`,
      { cause: err, retryable: err.status >= 500, details: { oauthError: err.error } },
    );
  }
  const code = (err as { code?: string }).code;
  const cause = (err as { cause?: unknown }).cause;
  if (code === 'OAUTH_JWT_TIMESTAMP_CHECK_FAILED') {
    return new LogproxyError(
      ErrorCodes.BAD_RESPONSE,
      `${server} issued a token whose times (iat/exp) do not fit this machine's clock; ` +
        'check the clock (`timedatectl status`, enable NTP) and retry',
      { cause: err },
    );
  }
  if (code === 'OAUTH_RESPONSE_IS_NOT_JSON' || code === 'OAUTH_RESPONSE_IS_NOT_CONFORM') {
    // Duck-typed: undici's Response is not the global Response class.
    const response = looksLikeResponse(cause) ? cause : undefined;
    if (!response) {
      return new LogproxyError(
        ErrorCodes.BAD_RESPONSE,
        `${server} did not answer with OAuth JSON (${(err as Error).message})`,
        { cause: err },
      );
    }
    const where = server.includes('://') ? server : `${server} at ${new URL(response.url).origin}`;
    const type = response.headers.get('content-type')?.split(';')[0] ?? 'no content type';
    return new LogproxyError(
      response.status >= 500 ? ErrorCodes.UNREACHABLE : ErrorCodes.BAD_RESPONSE,
      `${where} answered HTTP ${response.status} ${type} instead of OAuth JSON; check the ` +
        'issuer URL, and any proxy or sign-in page in between',
      { cause: err, retryable: response.status >= 500 },
    );
  }
  if (code === 'OAUTH_PARSE_ERROR' || code === 'OAUTH_INVALID_RESPONSE') {
    return new LogproxyError(
      ErrorCodes.BAD_RESPONSE,
      `${server} sent an invalid answer (${(err as Error).message})`,
      { cause: err },
    );
  }
  return new LogproxyError(
    ErrorCodes.INTERNAL,
    `talking to ${server} failed: ${err instanceof Error ? err.message : String(err)}`,
    { cause: err },
  );
}

function looksLikeResponse(value: unknown): value is Response {
  const r = value as Partial<Response> | null;
  return !!r && typeof r.status === 'number' && typeof r.headers?.get === 'function' && 'url' in r;
}
