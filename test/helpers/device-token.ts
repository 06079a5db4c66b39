/**
 * Real OAuth device flows against an OIDC provider (normally the gateway's embedded one), with
 * plain fetch: no client library in between, so tests see exactly what the provider answers.
 *
 * `deviceLogin` needs a provider that approves codes without a person (`autoApprove`); for the
 * browser approval flow use `startDeviceAuthorization` + `pollDeviceToken` with
 * test/helpers/browser.ts.
 */

export interface TokenSet {
  accessToken: string;
  refreshToken: string;
  idToken?: string;
  /** Seconds, as the token endpoint said. */
  expiresIn: number;
  scope?: string;
}

export interface DeviceAuthorization {
  deviceCode: string;
  userCode: string;
  verificationUri: string;
  verificationUriComplete?: string;
  /** Seconds between polls the provider asked for (5 when it did not say). */
  intervalS: number;
  expiresInS: number;
}

export interface DeviceLoginOptions {
  /** `resource` (RFC 8707) to ask for; the embedded provider defaults to the gateway's. */
  audience?: string;
  /** Default `openid offline_access profile`. */
  scope?: string;
  /** Give up polling after this long (default: the code's own expiry). */
  timeoutMs?: number;
}

/** An OAuth error answer (`error`, `error_description`) from the provider. */
export class OAuthResponseError extends Error {
  constructor(
    readonly error: string,
    readonly description: string | undefined,
    readonly status: number,
  ) {
    super(`${error}${description ? `: ${description}` : ''} (HTTP ${status})`);
    this.name = 'OAuthResponseError';
  }
}

interface Discovery {
  issuer: string;
  token_endpoint: string;
  device_authorization_endpoint: string;
  revocation_endpoint?: string;
  introspection_endpoint?: string;
  jwks_uri: string;
}

const DEFAULT_SCOPE = 'openid offline_access profile';
const discoveries = new Map<string, Promise<Discovery>>();

/** The issuer's discovery document (cached per issuer for the test process). */
export function discover(issuer: string): Promise<Discovery> {
  let found = discoveries.get(issuer);
  if (!found) {
    found = fetchJson(`${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`).then(
      (doc) => doc as unknown as Discovery,
    );
    found.catch(() => discoveries.delete(issuer));
    discoveries.set(issuer, found);
  }
  return found;
}

export async function startDeviceAuthorization(
  issuer: string,
  clientId: string,
  opts: DeviceLoginOptions = {},
): Promise<DeviceAuthorization> {
  const { device_authorization_endpoint: endpoint } = await discover(issuer);
  const form = new URLSearchParams({ client_id: clientId, scope: opts.scope ?? DEFAULT_SCOPE });
  if (opts.audience) form.set('resource', opts.audience);
  const body = await postForm(endpoint, form);
  return {
    deviceCode: String(body.device_code),
    userCode: String(body.user_code),
    verificationUri: String(body.verification_uri),
    verificationUriComplete:
      typeof body.verification_uri_complete === 'string'
        ? body.verification_uri_complete
        : undefined,
    intervalS: typeof body.interval === 'number' ? body.interval : 5,
    expiresInS: Number(body.expires_in),
  };
}

/**
 * Polls the token endpoint until the code is approved, denied or expired, honouring
 * `interval` and `slow_down` (RFC 8628 section 3.5). Rejects with OAuthResponseError
 * (`access_denied`, `expired_token`, ...) when the provider says no.
 */
export async function pollDeviceToken(
  issuer: string,
  clientId: string,
  authorization: DeviceAuthorization,
  opts: { timeoutMs?: number; signal?: AbortSignal } = {},
): Promise<TokenSet> {
  const { token_endpoint: endpoint } = await discover(issuer);
  const deadline = Date.now() + (opts.timeoutMs ?? authorization.expiresInS * 1000);
  let intervalMs = authorization.intervalS * 1000;

  for (;;) {
    let pending: OAuthResponseError;
    try {
      const body = await postForm(
        endpoint,
        new URLSearchParams({
          grant_type: 'urn:ietf:params:oauth:grant-type:device_code',
          device_code: authorization.deviceCode,
          client_id: clientId,
        }),
      );
      return toTokenSet(body);
    } catch (err) {
      if (!(err instanceof OAuthResponseError)) throw err;
      if (err.error === 'slow_down') intervalMs += 5000;
      else if (err.error !== 'authorization_pending') throw err;
      pending = err;
    }
    if (Date.now() + intervalMs > deadline) {
      throw new Error(`device code ${authorization.userCode} was not approved in time`, {
        cause: pending,
      });
    }
    await sleep(intervalMs, opts.signal);
  }
}

/** A whole device flow against a provider that approves codes at once (`autoApprove`). */
export async function deviceLogin(
  issuer: string,
  clientId: string,
  opts: DeviceLoginOptions = {},
): Promise<TokenSet> {
  const authorization = await startDeviceAuthorization(issuer, clientId, opts);
  return pollDeviceToken(issuer, clientId, authorization, { timeoutMs: opts.timeoutMs });
}

/** The refresh_token grant; rejects with OAuthResponseError (`invalid_grant`...) on refusal. */
export async function refreshGrant(
  issuer: string,
  clientId: string,
  refreshToken: string,
): Promise<TokenSet> {
  const { token_endpoint: endpoint } = await discover(issuer);
  const body = await postForm(
    endpoint,
    new URLSearchParams({
      grant_type: 'refresh_token',
      refresh_token: refreshToken,
      client_id: clientId,
    }),
  );
  return toTokenSet(body);
}

/** RFC 7009 revocation by a public client. */
export async function revokeToken(
  issuer: string,
  clientId: string,
  token: string,
  hint: 'refresh_token' | 'access_token' = 'refresh_token',
): Promise<void> {
  const { revocation_endpoint: endpoint } = await discover(issuer);
  if (!endpoint) throw new Error(`${issuer} advertises no revocation endpoint`);
  await postForm(
    endpoint,
    new URLSearchParams({ token, token_type_hint: hint, client_id: clientId }),
    { allowEmpty: true },
  );
}

function toTokenSet(body: Record<string, unknown>): TokenSet {
  if (typeof body.access_token !== 'string') throw new Error('token response has no access_token');
  if (typeof body.refresh_token !== 'string') {
    throw new Error('token response has no refresh_token (ask for the offline_access scope)');
  }
  return {
    accessToken: body.access_token,
    refreshToken: body.refresh_token,
    idToken: typeof body.id_token === 'string' ? body.id_token : undefined,
    expiresIn: Number(body.expires_in),
    scope: typeof body.scope === 'string' ? body.scope : undefined,
  };
}

async function postForm(
  url: string,
  form: URLSearchParams,
  { allowEmpty = false } = {},
): Promise<Record<string, unknown>> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    body: form,
    signal: AbortSignal.timeout(10_000),
  });
  const text = await response.text();
  if (allowEmpty && response.ok && text === '') return {};
  let body: Record<string, unknown>;
  try {
    body = JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw new Error(`${url} answered HTTP ${response.status} with non-JSON: ${text.slice(0, 200)}`);
  }
  if (!response.ok || typeof body.error === 'string') {
    throw new OAuthResponseError(
      String(body.error ?? 'http_error'),
      typeof body.error_description === 'string' ? body.error_description : undefined,
      response.status,
    );
  }
  return body;
}

async function fetchJson(url: string): Promise<Record<string, unknown>> {
  const response = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  if (!response.ok) throw new Error(`${url} answered HTTP ${response.status}`);
  return (await response.json()) as Record<string, unknown>;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        reject(signal.reason);
      },
      { once: true },
    );
  });
}
