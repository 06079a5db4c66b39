/**
 * Contracts of the client side's auth core, used by the tunnel and tail: stored credentials,
 * a source of fresh access tokens, the device login and the gateway's sessions API.
 */
import type { DiscoveryDocument, SessionList, SessionState, TargetList } from '../protocol/api.js';

/** What one profile keeps in the store (keychain entry or 0600 file). */
export interface StoredCredentials {
  version: 1;
  gateway: string;
  profile: string;
  issuer: string;
  clientId: string;
  audience: string;
  subject: string;
  accessToken: string;
  /** Epoch ms. */
  accessTokenExpiresAt: number;
  refreshToken?: string;
  /** Epoch ms, when the provider told us. */
  refreshTokenExpiresAt?: number;
  idToken?: string;
  scope?: string;
  /** When the person signed in (OIDC auth_time), epoch ms. */
  authTime?: number;
  /** Epoch ms of the last successful refresh. */
  refreshedAt?: number;
}

/** Where credentials live: `keychain` (OS Secret Service etc.) or `file` (0600, fallback). */
export type StoreKind = 'keychain' | 'file';

export interface TokenStore {
  readonly kind: StoreKind;
  /** Human description for `status`: "Secret Service (login keychain)" or the file path. */
  readonly location: string;
  read(gateway: string, profile: string): Promise<StoredCredentials | undefined>;
  /** Atomic: a reader never sees half a write. */
  write(creds: StoredCredentials): Promise<void>;
  delete(gateway: string, profile: string): Promise<boolean>;
}

/** Gives callers a valid access token; refreshes silently (cross-process locked). */
export interface AccessTokenSource {
  /**
   * A token valid for at least `minValidityMs` (default 60 s), refreshing first if needed.
   * Rejects with LogproxyError NOT_SIGNED_IN (exit 3) when refresh fails for good.
   */
  getAccessToken(options?: { minValidityMs?: number; signal?: AbortSignal }): Promise<string>;
  /** Refresh now (after a 401 invalid_token); concurrent callers share one refresh. */
  refresh(signal?: AbortSignal): Promise<string>;
  /** Re-reads the store (after an inline re-authentication stored new credentials). */
  reload(): Promise<void>;
  /** Facts about the current credentials, no secrets. */
  describe():
    { subject: string; accessTokenExpiresAt: number; hasRefreshToken: boolean } | undefined;
}

/** What the device flow tells the person (the core never prints; the CLI does). */
export interface DeviceCodePrompt {
  userCode: string;
  verificationUri: string;
  verificationUriComplete?: string;
  /** Epoch ms when the code stops working. */
  expiresAt: number;
  /** The provider's own message, when it sent one. */
  message?: string;
}

export interface DeviceLoginCallbacks {
  /** Show the code. Called once, before polling starts. */
  onCode(prompt: DeviceCodePrompt): void;
  /** Each poll's outcome, for spinners and --verbose. */
  onPoll?(event: { kind: 'pending' | 'slow_down'; nextPollInMs: number }): void;
}

/** The gateway's sessions API, authenticated with an AccessTokenSource. */
export interface GatewayApi {
  readonly baseUrl: string;
  discovery(): Promise<DiscoveryDocument>;
  listTargets(signal?: AbortSignal): Promise<TargetList>;
  createSession(target: string, signal?: AbortSignal): Promise<SessionState>;
  getSession(id: string, signal?: AbortSignal): Promise<SessionState>;
  heartbeat(id: string, signal?: AbortSignal): Promise<SessionState>;
  endSession(id: string, signal?: AbortSignal): Promise<void>;
  listSessions(all?: boolean, signal?: AbortSignal): Promise<SessionList>;
  revokeSession(id: string, signal?: AbortSignal): Promise<SessionState>;
}
