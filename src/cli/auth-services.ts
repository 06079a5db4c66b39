/**
 * What every command that talks to a gateway needs, opened in one place: resolved settings,
 * the HTTP client (proxies, CA, timeouts, --verbose traces to stderr), the profile's token
 * store, a refreshing token source, the gateway API and an inline sign-in that writes to the
 * same store. Heavy: load it with `await import('./auth-services.js')` inside an action.
 */
import type { IO } from './io.js';
import { requireGateway, resolveClientSettings, type ClientSettings } from './config.js';
import { createGatewayApi, type GatewayClient } from '../auth/gateway-api.js';
import { createHttpClient, type HttpClient } from '../auth/http.js';
import { findProfileRecord } from '../auth/profiles.js';
import { createTokenManager, type TokenManager, type TokenManagerEvent } from '../auth/refresh.js';
import type { SignInCallbacks, SignInResult } from '../auth/sign-in.js';
import { storeForProfile } from '../auth/token-store.js';
import type { TokenStore } from '../auth/types.js';
import { discoverGateway } from '../auth/discovery.js';
import { isLoopbackHost } from '../auth/oidc-config.js';
import { formatDuration } from '../util/durations.js';
import { systemClock, type Clock } from '../util/clock.js';

export interface AuthServicesOptions {
  gateway?: string;
  profile?: string;
  verbose: boolean;
  clock?: Clock;
  /** Pause allowed between body chunks (0 for long streams with keepalives); see http.ts. */
  bodyTimeoutMs?: number;
}

export interface AuthServices {
  settings: ClientSettings;
  gateway: string;
  profile: string;
  /** `<stateDir>`: tunnel records live in its `tunnels/` folder. */
  stateDir: string;
  http: HttpClient;
  store: TokenStore;
  tokens: TokenManager;
  api: GatewayClient;
  /** A device login for this gateway and profile into the same store; reloads `tokens`. */
  signIn(callbacks: SignInCallbacks, signal: AbortSignal): Promise<SignInResult>;
  /** Closes pooled connections. */
  close(): Promise<void>;
}

/** Writes a `--verbose` line to stderr. */
export function verboseWriter(io: IO, verbose: boolean): ((line: string) => void) | undefined {
  return verbose ? (line: string) => void io.stderr.write(`${line}\n`) : undefined;
}

/**
 * Opens the services of the gateway + profile that flags, environment and config name.
 * Reads no secret and makes no request (except discovery for a plain-HTTP issuer on a
 * network host, see below); the first token use may refresh.
 */
export async function openAuthServices(
  options: AuthServicesOptions,
  io: IO,
): Promise<AuthServices> {
  const settings = await resolveClientSettings(
    { gateway: options.gateway, profile: options.profile },
    io.env,
  );
  const gateway = await requireGateway(settings);
  const { profile, paths } = settings;
  const clock = options.clock ?? systemClock;
  const trace = verboseWriter(io, options.verbose);
  const http = createHttpClient({
    verbose: options.verbose,
    ...(trace ? { trace } : {}),
    env: io.env,
    ...(options.bodyTimeoutMs !== undefined ? { bodyTimeoutMs: options.bodyTimeoutMs } : {}),
  });
  http.nameServer(gateway, 'the gateway');

  const record = await findProfileRecord(paths.profilesFile, gateway, profile).catch(
    () => undefined,
  );
  if (record) http.nameServer(record.issuer, 'the identity provider');
  const store = await storeForProfile(gateway, profile, paths, settings.tokenStore);
  const tokens = createTokenManager({
    gateway,
    profile,
    store,
    locksDir: paths.locksDir,
    clock,
    fetch: http,
    allowInsecure: record ? await plainHttpAllowed(gateway, record.issuer, http) : false,
    onEvent: (event) => {
      // A failed store write matters without --verbose: other processes must sign in again.
      if (event.type === 'store-write-failed')
        io.stderr.write(`logproxy: ${describeTokenEvent(event, clock)}\n`);
      else trace?.(describeTokenEvent(event, clock));
    },
  });
  const api = createGatewayApi({ baseUrl: gateway, tokens, fetch: http });

  return {
    settings,
    gateway,
    profile,
    stateDir: paths.stateDir,
    http,
    store,
    tokens,
    api,
    async signIn(callbacks, signal) {
      // Loaded on first use: openid-client is memory that a long-running tunnel which never
      // re-authenticates does not need.
      const { signIn } = await import('../auth/sign-in.js');
      // The new credentials are written under the refresh lock, so a refresh of the old
      // sign-in still under way cannot overwrite them with tokens of the old auth_time.
      const lockedStore: TokenStore = {
        kind: store.kind,
        location: store.location,
        read: (g, p) => store.read(g, p),
        delete: (g, p) => store.delete(g, p),
        write: (creds) => tokens.withRefreshLock(() => store.write(creds)),
      };
      const result = await signIn({
        gateway,
        profile,
        paths,
        store: lockedStore,
        fetch: http,
        clock,
        signal,
        callbacks,
      });
      await tokens.reload();
      return result;
    },
    close: () => http.close(),
  };
}

/**
 * openid-client refuses plain-HTTP issuers unless told otherwise. Loopback is always allowed
 * (oidc-config.ts); for a network host we allow it only when the gateway's discovery says it
 * runs its development provider, the same rule `login` applied. That costs one request, and
 * only in this rare development setup.
 */
async function plainHttpAllowed(
  gateway: string,
  issuer: string,
  http: HttpClient,
): Promise<boolean> {
  const url = new URL(issuer);
  if (url.protocol !== 'http:' || isLoopbackHost(url.hostname)) return false;
  const doc = await discoverGateway(gateway, http).catch(() => undefined);
  return doc?.dev === true;
}

function describeTokenEvent(event: TokenManagerEvent, clock: Clock): string {
  switch (event.type) {
    case 'refreshed':
      return (
        `refreshed the access token (valid for ${formatDuration(event.accessTokenExpiresAt - clock.now())}` +
        `${event.rotated ? ', refresh token rotated' : ''})`
      );
    case 'refreshed-elsewhere':
      return 'another logproxy process refreshed the access token; using its tokens';
    case 'store-write-failed':
      return (
        `warning: could not store the refreshed tokens (${event.error.message}); other ` +
        'logproxy processes of this profile will have to sign in again'
      );
  }
}
