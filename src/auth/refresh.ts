/**
 * Silent token refresh shared safely between processes.
 *
 * Several `logproxy` processes (a `connect` in one terminal, `tail` in another, a script) may
 * use one profile. The provider rotates refresh tokens and treats a reused one as theft,
 * revoking the whole grant: two processes refreshing with the same token would sign the
 * person out. So a refresh takes a cross-process lock (proper-lockfile) per gateway+profile,
 * re-reads the store (another process may have refreshed while we waited), refreshes only if
 * still needed, stores the rotated refresh token, and only then releases the lock.
 */
import path from 'node:path';
import type * as oidc from 'openid-client';
import { ensurePrivateDir } from '../util/atomic-file.js';
import { authTimeFromTokens, decodeJwtClaimsUnverified } from './credentials.js';
import { credentialsFileName } from './file-store.js';
import type { Fetch } from './http.js';
import type { AccessTokenSource, StoreKind, StoredCredentials, TokenStore } from './types.js';
import { systemClock, type Clock } from '../util/clock.js';
import { ErrorCodes, LogproxyError } from '../util/errors.js';
import { raceAbort } from '../util/abort.js';

/** A token must stay valid this long to be handed out: enough for a request to arrive. */
export const DEFAULT_MIN_VALIDITY_MS = 60_000;

/**
 * proper-lockfile treats a lock whose mtime is older than this as abandoned (its holder died).
 * A live holder touches it every STALE/2, so only a crashed process's lock is ever taken over.
 */
export const REFRESH_LOCK_STALE_MS = 10_000;

/**
 * Waiting for the lock: short first retries (a refresh takes ~10-50 ms), then up to 1 s apart,
 * about 75 s in all, longer than one token request may take (30 s HTTP timeout) twice over.
 */
const LOCK_RETRIES = {
  retries: 90,
  factor: 1.4,
  minTimeout: 15,
  maxTimeout: 1_000,
  randomize: true,
};

/** What the manager tells its owner; the CLI may show some of it with --verbose. */
export type TokenManagerEvent =
  | { type: 'refreshed'; accessTokenExpiresAt: number; rotated: boolean }
  /** Another process refreshed while we waited for the lock; we use its tokens. */
  | { type: 'refreshed-elsewhere'; accessTokenExpiresAt: number }
  /**
   * The new tokens could not be stored. This process goes on with them in memory, but the
   * stored refresh token was already used: other processes will have to sign in again.
   */
  | { type: 'store-write-failed'; error: Error };

export interface TokenManagerOptions {
  gateway: string;
  profile: string;
  store: TokenStore;
  /** Folder for the per-profile lock files (`ConfigPaths.locksDir`). */
  locksDir: string;
  clock?: Clock;
  /** Our HTTP client for the token request; default the global fetch. */
  fetch?: Fetch;
  /**
   * The provider's openid-client Configuration, or a function giving it. Default:
   * `getOidcConfiguration(creds.issuer, creds.clientId, { fetch, allowInsecure })`.
   */
  oidc?: oidc.Configuration | (() => Promise<oidc.Configuration>);
  /** Allow a plain-HTTP issuer on a network host (gateway in dev mode). */
  allowInsecure?: boolean;
  /** Default `minValidityMs` of `getAccessToken`. */
  refreshMarginMs?: number;
  onEvent?: (event: TokenManagerEvent) => void;
}

/** Facts about the current sign-in for `status`; no secrets. */
export interface TokenDescription {
  gateway: string;
  profile: string;
  subject: string;
  issuer: string;
  accessTokenExpiresAt: number;
  hasRefreshToken: boolean;
  refreshTokenExpiresAt?: number;
  authTime?: number;
  refreshedAt?: number;
  store: StoreKind;
  storeLocation: string;
}

export interface TokenManager extends AccessTokenSource {
  describe(): TokenDescription | undefined;
  /**
   * Runs `fn` holding this profile's refresh lock. A sign-in stores its new credentials this
   * way: a refresh of the old sign-in that is under way (here or in another process) finishes
   * first, and cannot write its tokens over the new ones afterwards.
   */
  withRefreshLock<T>(fn: () => Promise<T>): Promise<T>;
}

/**
 * Creates the AccessTokenSource of one gateway + profile.
 *
 * @example
 *   const tokens = createTokenManager({ gateway, profile, store, locksDir: paths.locksDir });
 *   const res = await http(`${gateway}/v1/targets`, {
 *     headers: { authorization: `Bearer ${await tokens.getAccessToken()}` },
 *   });
 */
export function createTokenManager(options: TokenManagerOptions): TokenManager {
  return new LockedTokenManager(options);
}

class LockedTokenManager implements TokenManager {
  private creds: StoredCredentials | undefined;
  private loaded = false;
  private inflight: Promise<string> | undefined;
  private readonly clock: Clock;

  constructor(private readonly options: TokenManagerOptions) {
    this.clock = options.clock ?? systemClock;
  }

  async getAccessToken(
    opts: { minValidityMs?: number; signal?: AbortSignal } = {},
  ): Promise<string> {
    const minValidityMs =
      opts.minValidityMs ?? this.options.refreshMarginMs ?? DEFAULT_MIN_VALIDITY_MS;
    if (!this.loaded) await this.reload();
    const creds = this.creds;
    if (!creds) throw this.notSignedIn('you are not signed in to');
    if (this.validForMs(creds) >= minValidityMs) return creds.accessToken;
    return abortable(this.shared(creds.accessToken, minValidityMs, false), opts.signal);
  }

  async refresh(signal?: AbortSignal): Promise<string> {
    if (!this.loaded) await this.reload();
    const minValidityMs = this.options.refreshMarginMs ?? DEFAULT_MIN_VALIDITY_MS;
    return abortable(this.shared(this.creds?.accessToken, minValidityMs, true), signal);
  }

  async withRefreshLock<T>(fn: () => Promise<T>): Promise<T> {
    const release = await this.lock();
    try {
      return await fn();
    } finally {
      await release();
    }
  }

  async reload(): Promise<void> {
    this.creds = await this.options.store.read(this.options.gateway, this.options.profile);
    this.loaded = true;
  }

  describe(): TokenDescription | undefined {
    const c = this.creds;
    if (!c) return undefined;
    return {
      gateway: c.gateway,
      profile: c.profile,
      subject: c.subject,
      issuer: c.issuer,
      accessTokenExpiresAt: c.accessTokenExpiresAt,
      hasRefreshToken: Boolean(c.refreshToken),
      refreshTokenExpiresAt: c.refreshTokenExpiresAt,
      authTime: c.authTime ?? authTimeFromTokens(c.idToken, c.accessToken),
      refreshedAt: c.refreshedAt,
      store: this.options.store.kind,
      storeLocation: this.options.store.location,
    };
  }

  /** One refresh at a time in this process; callers arriving meanwhile share its result. */
  private shared(previous: string | undefined, minValidityMs: number, force: boolean) {
    this.inflight ??= this.lockedRefresh(previous, minValidityMs, force).finally(() => {
      this.inflight = undefined;
    });
    return this.inflight;
  }

  private async lockedRefresh(
    previous: string | undefined,
    minValidityMs: number,
    force: boolean,
  ): Promise<string> {
    const release = await this.lock();
    try {
      // Another process may have refreshed (or logged out) while we waited for the lock.
      await this.reload();
      const latest = this.creds;
      if (!latest) throw this.notSignedIn('you are not signed in to');
      const fresh = this.validForMs(latest) >= minValidityMs;
      if (fresh && latest.accessToken !== previous) {
        this.emit({
          type: 'refreshed-elsewhere',
          accessTokenExpiresAt: latest.accessTokenExpiresAt,
        });
        return latest.accessToken;
      }
      if (fresh && !force) return latest.accessToken;
      return await this.refreshWith(latest);
    } finally {
      await release();
    }
  }

  private async refreshWith(creds: StoredCredentials): Promise<string> {
    if (!creds.refreshToken) throw this.sessionEnded('no refresh token was issued');
    const now = this.clock.now();
    if (creds.refreshTokenExpiresAt !== undefined && creds.refreshTokenExpiresAt <= now) {
      throw this.sessionEnded('refresh token expired');
    }

    const client = await import('openid-client');
    const config = await this.configuration(creds);
    let tokens: oidc.TokenEndpointResponse;
    try {
      tokens = await client.refreshTokenGrant(config, creds.refreshToken, {
        resource: creds.audience,
      });
    } catch (err) {
      throw await this.describeRefreshError(err, creds, client);
    }

    const next = this.rotated(creds, tokens, this.clock.now());
    try {
      await this.options.store.write(next);
    } catch (err) {
      this.emit({ type: 'store-write-failed', error: err as Error });
    }
    this.creds = next;
    this.emit({
      type: 'refreshed',
      accessTokenExpiresAt: next.accessTokenExpiresAt,
      rotated: next.refreshToken !== creds.refreshToken,
    });
    return next.accessToken;
  }

  private rotated(
    creds: StoredCredentials,
    tokens: oidc.TokenEndpointResponse,
    now: number,
  ): StoredCredentials {
    const expiresInS =
      typeof tokens.expires_in === 'number'
        ? tokens.expires_in
        : jwtLifetimeS(tokens.access_token, now);
    const refreshExpiresIn = (tokens as { refresh_expires_in?: unknown }).refresh_expires_in;
    const next: StoredCredentials = {
      ...creds,
      accessToken: tokens.access_token,
      accessTokenExpiresAt: now + expiresInS * 1000,
      refreshToken: tokens.refresh_token ?? creds.refreshToken,
      idToken: tokens.id_token ?? creds.idToken,
      scope: tokens.scope ?? creds.scope,
      refreshedAt: now,
    };
    if (typeof refreshExpiresIn === 'number') {
      next.refreshTokenExpiresAt = now + refreshExpiresIn * 1000;
    }
    const authTime = authTimeFromTokens(tokens.id_token, tokens.access_token);
    if (authTime !== undefined) next.authTime = authTime;
    return next;
  }

  private async configuration(creds: StoredCredentials): Promise<oidc.Configuration> {
    const given = this.options.oidc;
    if (typeof given === 'function') return given();
    if (given) return given;
    const { getOidcConfiguration } = await import('./oidc-config.js');
    return getOidcConfiguration(creds.issuer, creds.clientId, {
      fetch: this.options.fetch,
      allowInsecure: this.options.allowInsecure,
    });
  }

  /** invalid_grant and friends end the session (exit 3); anything else keeps the tokens. */
  private async describeRefreshError(
    err: unknown,
    creds: StoredCredentials,
    client: typeof oidc,
  ): Promise<LogproxyError> {
    if (err instanceof client.ResponseBodyError && TERMINAL_OAUTH_ERRORS.has(err.error)) {
      return this.sessionEnded('refresh token expired or revoked', err);
    }
    const { describeProviderError } = await import('./oidc-config.js');
    const described = describeProviderError(
      err,
      `the identity provider ${creds.issuer}`,
      'refresh the access token',
    );
    if (described.code === ErrorCodes.UNREACHABLE) {
      // Said plainly, because people fear a network blip signed them out.
      described.message += '; your sign-in is kept, try again when the network is back';
    }
    return described;
  }

  private lock(): Promise<() => Promise<void>> {
    const { gateway, profile, locksDir } = this.options;
    const target = refreshLockPath(locksDir, gateway, profile).replace(/\.lock$/, '');
    return (async () => {
      await ensurePrivateDir(locksDir, false);
      const lockfile = await import('proper-lockfile');
      try {
        return await lockfile.lock(target, {
          realpath: false,
          stale: REFRESH_LOCK_STALE_MS,
          retries: LOCK_RETRIES,
          // The default throws from a timer and kills the process. A compromised lock (our
          // mtime updates fell behind for STALE ms) only risks one extra refresh.
          onCompromised: () => undefined,
        });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ELOCKED') throw err;
        throw new LogproxyError(
          ErrorCodes.TIMEOUT,
          `another logproxy process has been refreshing the tokens of ${gateway} for over a ` +
            `minute (lock ${target}.lock); try again, or remove that folder if no logproxy ` +
            'process is running',
          { cause: err, retryable: true },
        );
      }
    })();
  }

  private validForMs(creds: StoredCredentials): number {
    return creds.accessTokenExpiresAt - this.clock.now();
  }

  private loginHint(): string {
    const { gateway, profile } = this.options;
    return `run \`logproxy login --gateway ${gateway}${profile === 'default' ? '' : ` --profile ${profile}`}\``;
  }

  private notSignedIn(what: string): LogproxyError {
    const profile = this.options.profile === 'default' ? '' : ` (profile ${this.options.profile})`;
    return new LogproxyError(
      ErrorCodes.NOT_SIGNED_IN,
      `${what} ${this.options.gateway}${profile}; ${this.loginHint()}`,
      { details: { gateway: this.options.gateway, profile: this.options.profile } },
    );
  }

  private sessionEnded(why: string, cause?: unknown): LogproxyError {
    return new LogproxyError(
      ErrorCodes.NOT_SIGNED_IN,
      `your session with ${this.options.gateway} has ended (${why}); ${this.loginHint()}`,
      {
        cause,
        details: { gateway: this.options.gateway, profile: this.options.profile, reason: why },
      },
    );
  }

  private emit(event: TokenManagerEvent): void {
    try {
      this.options.onEvent?.(event);
    } catch {
      // A listener's bug must not break token refresh.
    }
  }
}

/**
 * The lock (a folder, proper-lockfile's atomic mkdir) that one gateway + profile's refreshes
 * take. Exported for docs and tests: a leftover one older than REFRESH_LOCK_STALE_MS is
 * taken over, so nobody ever needs to delete it by hand.
 */
export function refreshLockPath(locksDir: string, gateway: string, profile: string): string {
  const name = credentialsFileName(gateway, profile).replace(/\.json$/, '');
  return path.join(locksDir, `refresh-${name}.lock`);
}

/** OAuth errors after which the refresh token will never work again. */
const TERMINAL_OAUTH_ERRORS = new Set(['invalid_grant', 'invalid_client', 'unauthorized_client']);

/** Lifetime from a JWT's `exp` when the response has no `expires_in` (5 min if neither). */
function jwtLifetimeS(token: string, now: number): number {
  const exp = decodeJwtClaimsUnverified(token).exp;
  return typeof exp === 'number' ? Math.max(0, exp - Math.floor(now / 1000)) : 300;
}

/** Lets one caller stop waiting (Ctrl-C) without cancelling a refresh others share. */
function abortable<T>(promise: Promise<T>, signal?: AbortSignal): Promise<T> {
  return raceAbort(
    promise,
    signal,
    () =>
      new LogproxyError(ErrorCodes.INTERRUPTED, 'interrupted while refreshing the access token'),
  );
}
