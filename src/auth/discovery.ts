/**
 * Gateway discovery: `GET ${gateway}/.well-known/logproxy` tells the CLI everything it needs
 * to sign in (issuer, client id, audience, scopes), so `logproxy login --gateway URL` asks
 * for nothing else.
 */
import { API_VERSION, DISCOVERY_PATH, type DiscoveryDocument } from '../protocol/api.js';
import { ErrorCodes, LogproxyError, isLogproxyError } from '../util/errors.js';
import { readJson, type Fetch } from './http.js';

/**
 * Fetches and validates the discovery document. A URL that answers but is not a logproxy
 * gateway (a web site, a 404, HTML) gets a message saying so rather than a parse error.
 */
export async function discoverGateway(
  gateway: string,
  fetch: Fetch,
  signal?: AbortSignal,
): Promise<DiscoveryDocument> {
  // Callers pass the canonical URL (cli/config.ts normalizeGatewayUrl); trim a slash anyway.
  const base = gateway.replace(/\/+$/, '');
  const url = `${base}${DISCOVERY_PATH}`;
  let body: unknown;
  try {
    const response = await fetch(url, { headers: { accept: 'application/json' }, signal });
    body = await readJson(response, 'the gateway');
  } catch (err) {
    // A 404 (plain or problem+json) or a non-JSON answer: something is there, not a gateway.
    if (
      isLogproxyError(err, ErrorCodes.BAD_RESPONSE) ||
      isLogproxyError(err, ErrorCodes.NOT_FOUND)
    ) {
      throw new LogproxyError(
        ErrorCodes.BAD_RESPONSE,
        `${base} does not look like a logproxy gateway (${url}: ${err.message}); check the URL`,
        { cause: err, details: err.details },
      );
    }
    throw err;
  }
  return validateDiscovery(body, base);
}

/** Checks the document's shape once, so everything after it can trust its types. */
export function validateDiscovery(body: unknown, base: string): DiscoveryDocument {
  const notGateway = (what: string) =>
    new LogproxyError(
      ErrorCodes.BAD_RESPONSE,
      `${base}${DISCOVERY_PATH} is not a logproxy discovery document (${what}); ` +
        'check the gateway URL',
    );
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw notGateway('not an object');
  const doc = body as Record<string, unknown>;

  if (typeof doc.api_version !== 'number') throw notGateway('no api_version');
  if (doc.api_version > API_VERSION) {
    throw new LogproxyError(
      ErrorCodes.BAD_RESPONSE,
      `the gateway at ${base} speaks API version ${doc.api_version}, this logproxy knows ` +
        `version ${API_VERSION}; update logproxy`,
    );
  }
  for (const key of ['issuer', 'client_id', 'audience'] as const) {
    if (typeof doc[key] !== 'string' || doc[key] === '') throw notGateway(`no ${key}`);
  }
  try {
    new URL(doc.issuer as string);
  } catch {
    throw notGateway('issuer is not a URL');
  }
  const scopes =
    Array.isArray(doc.scopes) && doc.scopes.every((s) => typeof s === 'string')
      ? (doc.scopes as string[])
      : ['openid', 'offline_access'];

  return {
    api_version: doc.api_version,
    gateway: typeof doc.gateway === 'string' && doc.gateway ? doc.gateway : base,
    issuer: doc.issuer as string,
    client_id: doc.client_id as string,
    audience: doc.audience as string,
    scopes,
    dev: doc.dev === true,
  };
}
