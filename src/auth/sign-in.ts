/**
 * The whole sign-in, as `logproxy login` and `connect`'s inline re-authentication need it:
 * gateway discovery -> device flow -> credentials in the store -> the profiles index.
 * Prints nothing; the person hears about the code through `callbacks`.
 */
import type { DiscoveryDocument } from '../protocol/api.js';
import { systemClock, type Clock } from '../util/clock.js';
import { ErrorCodes, LogproxyError } from '../util/errors.js';
import { authTimeFromTokens, decodeJwtClaimsUnverified } from './credentials.js';
import { runDeviceLogin, type DeviceTokens } from './device-flow.js';
import { discoverGateway } from './discovery.js';
import type { Fetch, HttpClient } from './http.js';
import { getOidcConfiguration } from './oidc-config.js';
import { findProfileRecord, upsertProfileRecord } from './profiles.js';
import {
  chooseLoginStore,
  openTokenStore,
  type StorePaths,
  type StoreOptions,
} from './token-store.js';
import type { DeviceLoginCallbacks, StoreKind, StoredCredentials, TokenStore } from './types.js';

/** The paths sign-in writes to (a subset of cli/config.ts's ConfigPaths). */
export interface SignInPaths extends StorePaths {
  /** Lock files (the profiles index is updated under a lock). */
  locksDir: string;
}

export interface SignInCallbacks extends DeviceLoginCallbacks {
  /** The gateway answered its discovery document (before the code is requested). */
  onDiscovered?(doc: DiscoveryDocument): void;
}

export interface SignInOptions {
  /** Canonical gateway URL (cli/config.ts `normalizeGatewayUrl`). */
  gateway: string;
  profile: string;
  paths: SignInPaths;
  /**
   * `file` for --insecure-storage / `token_store: file`; `keychain` or undefined probes the
   * OS keychain and fails with KEYCHAIN_UNAVAILABLE (offering the file) when there is none.
   * Ignored when `store` is given.
   */
  storeKind?: StoreKind;
  /** Write to this store (connect's re-authentication keeps the store it already uses). */
  store?: TokenStore;
  storeOptions?: StoreOptions;
  /** Our HTTP client; when it is an HttpClient, errors name the gateway and the provider. */
  fetch: Fetch | HttpClient;
  clock?: Clock;
  signal?: AbortSignal;
  callbacks: SignInCallbacks;
}

export interface SignInResult {
  gateway: string;
  profile: string;
  subject: string;
  issuer: string;
  /** Epoch ms. */
  accessTokenExpiresAt: number;
  hasRefreshToken: boolean;
  /** OIDC auth_time, epoch ms, when the tokens carry it. */
  authTime?: number;
  store: TokenStore;
  discovery: DiscoveryDocument;
}

/**
 * Signs a person in to a gateway and stores the result.
 *
 * The store is chosen before the device code is requested: a machine without a keychain
 * hears so at once, not after the person approved a code in the browser.
 *
 * @throws LogproxyError: KEYCHAIN_UNAVAILABLE, ACCESS_DENIED, DEVICE_CODE_EXPIRED,
 *   INTERRUPTED, UNREACHABLE / BAD_RESPONSE / TIMEOUT (naming the server), or
 *   NOT_SIGNED_IN when the provider's tokens name nobody.
 * @example
 *   const result = await signIn({ gateway, profile: 'default', paths, fetch: http,
 *     callbacks: { onCode: (p) => show(p) }, signal: io.signal });
 *   console.log(`Logged in to ${result.gateway} as ${result.subject}`);
 */
export async function signIn(options: SignInOptions): Promise<SignInResult> {
  const { gateway, profile, paths, fetch, signal, callbacks } = options;
  const clock = options.clock ?? systemClock;

  nameServer(fetch, gateway, 'the gateway');
  const discovery = await discoverGateway(gateway, fetch, signal);
  nameServer(fetch, discovery.issuer, 'the identity provider');
  callbacks.onDiscovered?.(discovery);

  const store =
    options.store ?? (await chooseLoginStore(paths, options.storeKind, options.storeOptions));
  const config = await getOidcConfiguration(discovery.issuer, discovery.client_id, {
    fetch,
    allowInsecure: discovery.dev,
  });
  const tokens = await runDeviceLogin({
    config,
    fetch,
    scopes: discovery.scopes,
    audience: discovery.audience,
    clock,
    signal,
    callbacks,
  });

  const creds = toCredentials(gateway, profile, discovery, tokens);
  await store.write(creds);
  await forgetOtherStore(gateway, profile, paths, store, options.storeOptions);
  await upsertProfileRecord(paths.profilesFile, paths.locksDir, {
    gateway,
    profile,
    subject: creds.subject,
    store: store.kind,
    location: storeLocation(store, gateway, profile),
    issuer: discovery.issuer,
    lastLoginAt: new Date(clock.now()).toISOString(),
  });

  return {
    gateway,
    profile,
    subject: creds.subject,
    issuer: discovery.issuer,
    accessTokenExpiresAt: creds.accessTokenExpiresAt,
    hasRefreshToken: Boolean(creds.refreshToken),
    ...(creds.authTime !== undefined ? { authTime: creds.authTime } : {}),
    store,
    discovery,
  };
}

function nameServer(fetch: Fetch | HttpClient, url: string, name: string): void {
  if ('nameServer' in fetch) fetch.nameServer(url, name);
}

/**
 * The subject comes from the ID token, else the access token. The claims are read without
 * verification: they are shown to the person and used as a label, never to decide access
 * (the gateway verifies every token).
 */
function toCredentials(
  gateway: string,
  profile: string,
  discovery: DiscoveryDocument,
  tokens: DeviceTokens,
): StoredCredentials {
  const idClaims = decodeJwtClaimsUnverified(tokens.idToken);
  const atClaims = decodeJwtClaimsUnverified(tokens.accessToken);
  const subject = [idClaims.sub, atClaims.sub].find(
    (s): s is string => typeof s === 'string' && s !== '',
  );
  if (!subject) {
    throw new LogproxyError(
      ErrorCodes.BAD_RESPONSE,
      `the identity provider ${discovery.issuer} issued tokens without a subject (sub); ` +
        'the gateway could not tell who you are',
    );
  }
  const authTime = authTimeFromTokens(tokens.idToken, tokens.accessToken);
  return {
    version: 1,
    gateway,
    profile,
    issuer: discovery.issuer,
    clientId: discovery.client_id,
    audience: discovery.audience,
    subject,
    accessToken: tokens.accessToken,
    accessTokenExpiresAt: tokens.accessTokenExpiresAt,
    ...(tokens.refreshToken ? { refreshToken: tokens.refreshToken } : {}),
    ...(tokens.refreshTokenExpiresAt
      ? { refreshTokenExpiresAt: tokens.refreshTokenExpiresAt }
      : {}),
    ...(tokens.idToken ? { idToken: tokens.idToken } : {}),
    ...(tokens.scope ? { scope: tokens.scope } : {}),
    ...(authTime !== undefined ? { authTime } : {}),
  };
}

/**
 * A profile that moves between stores (keychain -> --insecure-storage or back) must not leave
 * its old tokens behind. Best effort: a keychain that cannot be reached now keeps its entry,
 * which `logout` later removes.
 */
async function forgetOtherStore(
  gateway: string,
  profile: string,
  paths: SignInPaths,
  current: TokenStore,
  storeOptions?: StoreOptions,
): Promise<void> {
  const record = await findProfileRecord(paths.profilesFile, gateway, profile).catch(
    () => undefined,
  );
  if (!record || record.store === current.kind) return;
  await openTokenStore(record.store, paths, storeOptions)
    .delete(gateway, profile)
    .catch(() => undefined);
}

/** Where the credentials are, for `status`: the file itself, or the keychain's name. */
export function storeLocation(store: TokenStore, gateway: string, profile: string): string {
  const withPath = store as TokenStore & { pathFor?: (g: string, p: string) => string };
  return typeof withPath.pathFor === 'function'
    ? withPath.pathFor(gateway, profile)
    : store.location;
}
