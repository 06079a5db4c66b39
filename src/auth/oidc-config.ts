/**
 * openid-client Configurations for the identity provider, discovered once per process and
 * cached. The CLI is a public client (`None()` authentication); plain-HTTP issuers are
 * allowed only on loopback or when the gateway says it runs its development provider.
 */
import * as oidc from 'openid-client';
import { describeOidcError } from './device-flow.js';
import type { Fetch } from './http.js';
import { ErrorCodes, LogproxyError, isLogproxyError } from '../util/errors.js';

export interface OidcConfigOptions {
  /** Our HTTP client (proxy, CA, timeouts, tracing); default: the global fetch. */
  fetch?: Fetch;
  /**
   * Allow a plain-HTTP issuer on a non-loopback host (the gateway's discovery says `dev`).
   * Loopback http:// issuers are always allowed; https:// needs nothing.
   */
  allowInsecure?: boolean;
}

const cache = new Map<Fetch | undefined, Map<string, Promise<oidc.Configuration>>>();

/**
 * The provider's Configuration for `clientId`, from `${issuer}/.well-known/openid-configuration`.
 * Concurrent and later calls with the same issuer, client and fetch share one discovery; a
 * failed discovery is not cached.
 *
 * @throws LogproxyError BAD_RESPONSE for a plain-HTTP issuer that is not allowed, or whatever
 *   discovery failed with (UNREACHABLE, BAD_RESPONSE...), naming the provider.
 * @example
 *   const config = await getOidcConfiguration(doc.issuer, doc.client_id, { fetch: http });
 *   const tokens = await oidc.refreshTokenGrant(config, refreshToken, { resource: audience });
 */
export function getOidcConfiguration(
  issuer: string,
  clientId: string,
  options: OidcConfigOptions = {},
): Promise<oidc.Configuration> {
  const insecure = insecureAllowed(issuer, options.allowInsecure === true);
  const key = `${issuer}\n${clientId}\n${insecure}`;
  let byKey = cache.get(options.fetch);
  if (!byKey) {
    byKey = new Map();
    cache.set(options.fetch, byKey);
  }
  const cached = byKey.get(key);
  if (cached) return cached;

  const created = discover(issuer, clientId, insecure, options.fetch);
  byKey.set(key, created);
  created.catch(() => byKey.delete(key));
  return created;
}

/** Forgets every cached Configuration (tests; a long-lived process after a provider change). */
export function clearOidcConfigurationCache(): void {
  cache.clear();
}

async function discover(
  issuer: string,
  clientId: string,
  insecure: boolean,
  fetch: Fetch | undefined,
): Promise<oidc.Configuration> {
  const options: oidc.DiscoveryRequestOptions = {};
  if (fetch) options[oidc.customFetch] = fetch as oidc.CustomFetch;
  if (insecure) options.execute = [oidc.allowInsecureRequests];
  try {
    return await oidc.discovery(new URL(issuer), clientId, undefined, oidc.None(), options);
  } catch (err) {
    throw describeProviderError(err, `the identity provider ${issuer}`, 'read its metadata');
  }
}

/**
 * A LogproxyError for whatever an openid-client call threw. Network failures of the global
 * fetch (a TypeError "fetch failed") become a retryable UNREACHABLE; our own fetch's errors
 * and OAuth answers are described by device-flow's `describeOidcError`.
 *
 * @param step what we were doing, for the message: "refresh the access token".
 */
export function describeProviderError(err: unknown, server: string, step: string): LogproxyError {
  if (err instanceof TypeError && !isLogproxyError(err)) {
    const cause = (err as { cause?: { code?: string } }).cause;
    return new LogproxyError(
      ErrorCodes.UNREACHABLE,
      `could not reach ${server} to ${step} (${cause?.code ?? err.message})`,
      { cause: err, retryable: true },
    );
  }
  return describeOidcError(err, server);
}

/**
 * Whether openid-client may use plain HTTP for this issuer.
 * @throws LogproxyError BAD_RESPONSE for http:// on a network host without `allowInsecure`.
 */
export function insecureAllowed(issuer: string, allowInsecure: boolean): boolean {
  const url = new URL(issuer);
  if (url.protocol === 'https:') return false;
  if (url.protocol !== 'http:') {
    throw new TypeError(`issuer ${issuer} must be an https:// URL`);
  }
  if (allowInsecure || isLoopbackHost(url.hostname)) return true;
  // Refusing here, before any request, keeps refresh tokens off unencrypted networks.
  throw new LogproxyError(
    ErrorCodes.BAD_RESPONSE,
    `the identity provider ${issuer} uses plain http:// on a network host, so tokens would ` +
      'travel unencrypted; configure the gateway with an https:// issuer',
    { details: { issuer } },
  );
}

/** 127.0.0.0/8, ::1 and localhost. */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  return host === 'localhost' || host === '::1' || /^127(\.\d{1,3}){3}$/.test(host);
}
