/**
 * Validation and helpers for `StoredCredentials`: what a store reads back is checked once at
 * the edge, so the rest of the client trusts its types.
 */
import type { StoredCredentials } from './types.js';
import { ErrorCodes, LogproxyError } from '../util/errors.js';

/**
 * Parses a stored credentials JSON document.
 * @param where names the entry or file for the error message; never includes secrets.
 * @throws LogproxyError NOT_SIGNED_IN when the document is damaged: the fix is a new login.
 */
export function parseStoredCredentials(text: string, where: string): StoredCredentials {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw damaged(where, 'is not valid JSON');
  }
  const c = doc as Partial<StoredCredentials> | null;
  const strings = [
    'gateway',
    'profile',
    'issuer',
    'clientId',
    'audience',
    'subject',
    'accessToken',
  ];
  if (!c || typeof c !== 'object' || c.version !== 1) {
    throw damaged(where, 'is not logproxy credentials (version 1)');
  }
  for (const key of strings) {
    if (typeof (c as Record<string, unknown>)[key] !== 'string') {
      throw damaged(where, `has no valid "${key}"`);
    }
  }
  if (typeof c.accessTokenExpiresAt !== 'number' || !Number.isFinite(c.accessTokenExpiresAt)) {
    throw damaged(where, 'has no valid "accessTokenExpiresAt"');
  }
  if (c.refreshToken !== undefined && typeof c.refreshToken !== 'string') {
    throw damaged(where, 'has an invalid "refreshToken"');
  }
  return c as StoredCredentials;
}

function damaged(where: string, why: string): LogproxyError {
  return new LogproxyError(
    ErrorCodes.NOT_SIGNED_IN,
    `the stored credentials in ${where} ${why}; run \`logproxy login\` to sign in again`,
    { details: { where } },
  );
}

/**
 * Reads a JWT's claims WITHOUT verifying it: only for display and for `auth_time`. Never use
 * the result for a security decision; the gateway verifies tokens.
 */
export function decodeJwtClaimsUnverified(token: string | undefined): Record<string, unknown> {
  if (!token) return {};
  const parts = token.split('.');
  if (parts.length !== 3) return {};
  try {
    const json = Buffer.from(parts[1]!, 'base64url').toString('utf8');
    const claims = JSON.parse(json) as unknown;
    return claims && typeof claims === 'object' ? (claims as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

/** OIDC `auth_time` (epoch ms) from the id token, else the access token, when present. */
export function authTimeFromTokens(idToken?: string, accessToken?: string): number | undefined {
  for (const token of [idToken, accessToken]) {
    const authTime = decodeJwtClaimsUnverified(token).auth_time;
    if (typeof authTime === 'number' && Number.isFinite(authTime)) return authTime * 1000;
  }
  return undefined;
}
