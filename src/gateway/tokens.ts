/**
 * Who is calling: access token validation for the gateway.
 *
 * JWT access tokens (RFC 9068) are checked with jose against the issuer's JWKS: signature,
 * algorithm allow-list, `typ: at+jwt`, `iss`, `aud`, `exp`/`nbf`. Opaque tokens go to RFC 7662
 * introspection when it is configured. Every refusal is a TokenRejectedError whose `reason`
 * feeds the audit trail; the client only ever learns "invalid_token".
 *
 * When the issuer itself cannot be reached (discovery or JWKS fetch fails) that is not the
 * token's fault: verify() then rejects with a retryable LogproxyError (LP_UNREACHABLE), so the
 * gateway can answer 503 instead of telling a person to sign in again.
 */
import {
  createRemoteJWKSet,
  customFetch,
  decodeJwt,
  decodeProtectedHeader,
  errors as joseErrors,
  jwtVerify,
  type JWTPayload,
  type JWTVerifyGetKey,
} from 'jose';
import { ErrorCodes, LogproxyError } from '../util/errors.js';
import {
  TokenRejectedError,
  type IntrospectionConfig,
  type Principal,
  type TokenRejectReason,
  type TokenVerifier,
} from './types.js';

export interface TokenVerifierOptions {
  /** Expected `iss`; discovery is read from `${issuer}/.well-known/openid-configuration`. */
  issuer: string;
  /** Expected `aud` (one of, when the token carries several). */
  audience: string;
  /** JWS algorithms accepted; `none` and HMAC (HS*) are refused at construction. */
  algorithms: string[];
  /** Leeway for exp/nbf, seconds. */
  clockToleranceS: number;
  /** RFC 7662 endpoint for opaque (non-JWT) access tokens. */
  introspection?: IntrospectionConfig;
  /**
   * The CLI's client id. Only used for introspection answers that carry no `aud`: such a token
   * is accepted when it was issued to this client (then it was meant for this gateway).
   */
  clientId?: string;
  /** For discovery, JWKS and introspection requests; default the global fetch. */
  fetch?: typeof fetch;
  /** Injected clock (epoch ms) for exp/nbf checks. */
  now?: () => number;
  /**
   * Least time between two JWKS fetches caused by unknown `kid`s (default 30 s). Tests set it
   * to 0 to see a key rotation at once.
   */
  jwksRefetchCooldownMs?: number;
}

/** RFC 9068 section 2.1; `application/at+jwt` is the same media type spelled in full. */
const ACCESS_TOKEN_TYP = 'at+jwt';
const DISCOVERY_TIMEOUT_MS = 5_000;
const JWKS_TIMEOUT_MS = 5_000;
/** Introspection sits on the request path of every API call: fail fast rather than hang. */
const INTROSPECTION_TIMEOUT_MS = 3_000;
/**
 * An unknown `kid` makes jose refetch the JWKS (the issuer may have rotated keys), but at most
 * once per cooldown, so tokens with random kids cannot make us hammer the issuer.
 */
const DEFAULT_JWKS_REFETCH_COOLDOWN_MS = 30_000;
const JWKS_CACHE_MAX_AGE_MS = 10 * 60_000;

/**
 * Creates the verifier the gateway uses on every request.
 *
 * @example
 *   const verifier = createTokenVerifier({ issuer, audience, algorithms: ['ES256', 'RS256'],
 *     clockToleranceS: 30 });
 *   const principal = await verifier.verify(bearerToken); // or TokenRejectedError
 */
export function createTokenVerifier(options: TokenVerifierOptions): TokenVerifier {
  const algorithms = validateAlgorithms(options.algorithms);
  const fetchImpl = options.fetch ?? fetch;
  const now = options.now ?? Date.now;
  const keys = lazyRemoteKeys(
    options.issuer,
    fetchImpl,
    options.jwksRefetchCooldownMs ?? DEFAULT_JWKS_REFETCH_COOLDOWN_MS,
  );
  const introspect = options.introspection
    ? createIntrospector(options, options.introspection, fetchImpl, now)
    : undefined;

  return {
    async verify(token: string): Promise<Principal> {
      if (!token) throw new TokenRejectedError('missing', 'no access token');

      const header = jwsHeader(token);
      if (!header) {
        if (introspect) return introspect(token);
        throw new TokenRejectedError('malformed', 'access token is not a JWT');
      }
      checkHeader(header, algorithms);
      checkIssuerBeforeKeys(token, options.issuer);

      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(token, await keys.get(), {
          issuer: options.issuer,
          audience: options.audience,
          algorithms: [...algorithms],
          typ: ACCESS_TOKEN_TYP,
          clockTolerance: options.clockToleranceS,
          currentDate: new Date(now()),
          requiredClaims: ['exp', 'sub'],
        }));
      } catch (err) {
        throw mapJoseError(err);
      }
      return principalFromClaims(payload);
    },
  };
}

// ---------- JWT checks ----------

function validateAlgorithms(algorithms: string[]): ReadonlySet<string> {
  if (algorithms.length === 0) throw new TypeError('auth.algorithms must list at least one');
  for (const alg of algorithms) {
    if (/^none$/i.test(alg) || /^HS/i.test(alg)) {
      throw new TypeError(
        `auth.algorithms may not contain "${alg}": access tokens must be signed with the ` +
          "issuer's private key and verified with its published public keys",
      );
    }
  }
  return new Set(algorithms);
}

/** The protected header when `token` looks like a compact JWS; undefined for anything else. */
function jwsHeader(token: string): Record<string, unknown> | undefined {
  if (token.split('.').length !== 3) return undefined;
  try {
    return decodeProtectedHeader(token) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

function checkHeader(header: Record<string, unknown>, algorithms: ReadonlySet<string>): void {
  if (typeof header.alg !== 'string') {
    throw new TokenRejectedError('malformed', 'JWT header has no alg');
  }
  if (!algorithms.has(header.alg)) {
    throw new TokenRejectedError('alg_not_allowed', `alg ${header.alg} is not accepted`);
  }
  const typ = typeof header.typ === 'string' ? header.typ.toLowerCase() : '';
  if (typ !== ACCESS_TOKEN_TYP && typ !== `application/${ACCESS_TOKEN_TYP}`) {
    throw new TokenRejectedError('wrong_typ', 'token is not an RFC 9068 access token');
  }
}

/**
 * A token from another issuer is refused as such before we look for its key; otherwise it
 * would show up as "unknown kid" in the audit, which hides what actually happened. Nothing is
 * accepted on the strength of this unverified look: jwtVerify checks `iss` again.
 */
function checkIssuerBeforeKeys(token: string, issuer: string): void {
  let claims: JWTPayload;
  try {
    claims = decodeJwt(token);
  } catch {
    throw new TokenRejectedError('malformed', 'JWT payload is not a JSON object');
  }
  if (claims.iss !== issuer) {
    throw new TokenRejectedError('wrong_issuer', 'token comes from another issuer');
  }
}

const CLAIM_REASONS: Record<string, TokenRejectReason> = {
  iss: 'wrong_issuer',
  aud: 'wrong_audience',
  nbf: 'not_yet_valid',
  exp: 'expired',
  typ: 'wrong_typ',
};

function mapJoseError(err: unknown): Error {
  if (err instanceof TokenRejectedError || err instanceof LogproxyError) return err;
  if (err instanceof joseErrors.JWTExpired) return new TokenRejectedError('expired');
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    if (err.reason === 'missing') {
      return new TokenRejectedError('missing_claim', `token has no ${err.claim} claim`);
    }
    if (err.reason === 'invalid') return new TokenRejectedError('malformed', err.message);
    return new TokenRejectedError(CLAIM_REASONS[err.claim] ?? 'malformed', err.message);
  }
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) {
    return new TokenRejectedError('bad_signature');
  }
  if (err instanceof joseErrors.JWKSNoMatchingKey) {
    return new TokenRejectedError('unknown_kid', 'no key of the issuer matches the token');
  }
  if (err instanceof joseErrors.JOSEAlgNotAllowed || err instanceof joseErrors.JOSENotSupported) {
    return new TokenRejectedError('alg_not_allowed', err.message);
  }
  if (err instanceof joseErrors.JWSInvalid || err instanceof joseErrors.JWTInvalid) {
    return new TokenRejectedError('malformed', err.message);
  }
  // JWKS fetch timed out, failed, or answered garbage: the issuer's problem, not the token's.
  return new LogproxyError(
    ErrorCodes.UNREACHABLE,
    "cannot fetch the issuer's signing keys; check that the issuer is reachable from the gateway",
    { cause: err, retryable: true },
  );
}

function principalFromClaims(claims: Record<string, unknown>): Principal {
  if (typeof claims.sub !== 'string' || claims.sub === '') {
    throw new TokenRejectedError('missing_claim', 'token has no subject');
  }
  if (typeof claims.exp !== 'number') {
    throw new TokenRejectedError('missing_claim', 'token has no expiry');
  }
  return {
    subject: claims.sub,
    authTimeMs: typeof claims.auth_time === 'number' ? claims.auth_time * 1000 : undefined,
    expiresAtMs: claims.exp * 1000,
    scopes: typeof claims.scope === 'string' ? claims.scope.split(' ').filter(Boolean) : [],
    clientId: typeof claims.client_id === 'string' ? claims.client_id : undefined,
    tokenId: typeof claims.jti === 'string' ? claims.jti : undefined,
  };
}

// ---------- issuer keys ----------

interface LazyKeys {
  get(): Promise<JWTVerifyGetKey>;
}

/**
 * Reads discovery on first use (not at start: the gateway may start before its IdP) and keeps
 * jose's remote key set, which caches keys and refetches on an unknown `kid`. A failed
 * discovery is forgotten, so the next request tries again.
 */
function lazyRemoteKeys(issuer: string, fetchImpl: typeof fetch, cooldownMs: number): LazyKeys {
  let keys: Promise<JWTVerifyGetKey> | undefined;

  const load = async (): Promise<JWTVerifyGetKey> => {
    const url = `${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
    let doc: { issuer?: unknown; jwks_uri?: unknown };
    try {
      const response = await fetchImpl(url, {
        headers: { accept: 'application/json' },
        signal: AbortSignal.timeout(DISCOVERY_TIMEOUT_MS),
      });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      doc = (await response.json()) as typeof doc;
    } catch (err) {
      throw new LogproxyError(
        ErrorCodes.UNREACHABLE,
        `cannot read the issuer's discovery document at ${url}; check auth.issuer`,
        { cause: err, retryable: true },
      );
    }
    if (doc.issuer !== issuer || typeof doc.jwks_uri !== 'string') {
      throw new LogproxyError(
        ErrorCodes.BAD_RESPONSE,
        `the discovery document at ${url} names issuer ${String(doc.issuer)} (expected ` +
          `${issuer}) or has no jwks_uri; check auth.issuer`,
        { retryable: true },
      );
    }
    return createRemoteJWKSet(new URL(doc.jwks_uri), {
      timeoutDuration: JWKS_TIMEOUT_MS,
      cooldownDuration: cooldownMs,
      cacheMaxAge: JWKS_CACHE_MAX_AGE_MS,
      [customFetch]: fetchImpl,
    });
  };

  return {
    get() {
      if (!keys) {
        keys = load();
        keys.catch(() => {
          keys = undefined;
        });
      }
      return keys;
    },
  };
}

// ---------- RFC 7662 introspection ----------

type Introspect = (token: string) => Promise<Principal>;

/** Token types an introspection answer may name for something usable as a bearer token. */
const ACCESS_TOKEN_TYPES = new Set(['bearer', 'access_token', 'dpop']);

function createIntrospector(
  options: TokenVerifierOptions,
  config: IntrospectionConfig,
  fetchImpl: typeof fetch,
  now: () => number,
): Introspect {
  // RFC 6749 section 2.3.1: form-encode id and secret before base64.
  const basic = Buffer.from(
    `${encodeURIComponent(config.clientId)}:${encodeURIComponent(config.clientSecret)}`,
  ).toString('base64');
  const toleranceMs = options.clockToleranceS * 1000;

  return async (token) => {
    const answer = await postIntrospection(config.url, basic, token, fetchImpl);
    if (answer.active !== true) throw new TokenRejectedError('inactive');

    if (answer.iss !== undefined && answer.iss !== options.issuer) {
      throw new TokenRejectedError('wrong_issuer', 'introspected token comes from another issuer');
    }
    checkIntrospectedAudience(answer, options);

    const nowMs = now();
    if (typeof answer.exp === 'number' && answer.exp * 1000 + toleranceMs <= nowMs) {
      throw new TokenRejectedError('expired');
    }
    if (typeof answer.nbf === 'number' && answer.nbf * 1000 - toleranceMs > nowMs) {
      throw new TokenRejectedError('not_yet_valid');
    }
    return principalFromClaims(answer);
  };
}

function checkIntrospectedAudience(
  answer: Record<string, unknown>,
  options: TokenVerifierOptions,
): void {
  const { aud } = answer;
  if (aud !== undefined) {
    const audiences = Array.isArray(aud) ? aud : [aud];
    if (!audiences.includes(options.audience)) {
      throw new TokenRejectedError('wrong_audience', 'introspected token is for another audience');
    }
    return;
  }
  // No audience in the answer: accept only an access token issued to our own client, so a
  // refresh token or another application's token cannot pass for one of ours.
  const type = typeof answer.token_type === 'string' ? answer.token_type.toLowerCase() : '';
  const ownClient = options.clientId === undefined || answer.client_id === options.clientId;
  if (!ACCESS_TOKEN_TYPES.has(type) || !ownClient) {
    throw new TokenRejectedError('wrong_audience', 'introspected token names no audience');
  }
}

async function postIntrospection(
  url: string,
  basic: string,
  token: string,
  fetchImpl: typeof fetch,
): Promise<Record<string, unknown>> {
  let response: Response;
  try {
    response = await fetchImpl(url, {
      method: 'POST',
      headers: {
        authorization: `Basic ${basic}`,
        'content-type': 'application/x-www-form-urlencoded',
        accept: 'application/json',
      },
      body: new URLSearchParams({ token, token_type_hint: 'access_token' }).toString(),
      signal: AbortSignal.timeout(INTROSPECTION_TIMEOUT_MS),
    });
  } catch {
    throw new TokenRejectedError('introspection_failed', 'introspection endpoint unreachable');
  }
  if (!response.ok) {
    await response.body?.cancel();
    throw new TokenRejectedError(
      'introspection_failed',
      `introspection endpoint answered HTTP ${response.status}`,
    );
  }
  try {
    const body = (await response.json()) as unknown;
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new Error();
    return body as Record<string, unknown>;
  } catch {
    throw new TokenRejectedError('introspection_failed', 'introspection answer is not JSON');
  }
}
