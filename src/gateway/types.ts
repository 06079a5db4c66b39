/**
 * Contracts between the gateway's parts: the validated config, who a token belongs to, and
 * what the data plane sees of a session. Types only.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { EndReason } from '../protocol/api.js';

// ---------- config (produced by config.ts, already validated; durations in ms) ----------

export interface SessionPolicyConfig {
  idleTimeoutMs: number;
  maxLifetimeMs: number;
  heartbeatIntervalMs: number;
  /** Largest first. */
  warnBeforeMs: number[];
  /** Heartbeats missed for this many intervals end the session as client_lost. */
  heartbeatMissesAllowed: number;
  /** After idle/lifetime expiry, allow a new session without a fresh sign-in. */
  silentResume: boolean;
}

export interface DevAuthConfig {
  users: string[];
  /** Approve every device code as this user, at once (scripts, demo, tests). */
  autoApprove?: string;
  accessTokenTtlMs: number;
  refreshTokenTtlMs: number;
  deviceCodeTtlMs: number;
  /** Poll interval the device authorization response advertises, in seconds. */
  pollIntervalS: number;
  /** Absolute path; keys and grants survive restarts. */
  dataDir: string;
}

export interface IntrospectionConfig {
  url: string;
  clientId: string;
  clientSecret: string;
}

export interface AuthConfig {
  /** External issuer; undefined when `dev` is set (the embedded provider is the issuer). */
  issuer?: string;
  audience: string;
  clientId: string;
  /** JWS algorithms accepted for access tokens. */
  algorithms: string[];
  /** Leeway for exp/nbf, seconds. */
  clockToleranceS: number;
  introspection?: IntrospectionConfig;
  dev?: DevAuthConfig;
}

export type SourceConfig =
  | { type: 'file'; paths: string[] }
  | { type: 'http'; url: string; headers: Record<string, string>; timeoutMs: number }
  | { type: 'demo'; ratePerSec: number; historyLines: number; seed: number };

export interface TargetConfig {
  name: string;
  description?: string;
  source: SourceConfig;
  /** Subjects allowed to open sessions; `*` allows every signed-in user. */
  allow: string[];
  /** Only fields that tighten the defaults; merged by policy.ts. */
  session: Partial<SessionPolicyConfig>;
  /**
   * What counts as activity for the idle timeout on forwarded traffic: `requests` (each
   * request, once) or `bytes` (also every chunk while a long response streams).
   */
  activity: 'requests' | 'bytes';
}

export interface GatewayConfig {
  listen: { host: string; port: number };
  /** Base URL clients use; defaults to http(s)://host:port. */
  publicUrl?: string;
  tls?: { certFile: string; keyFile: string };
  auth: AuthConfig;
  admins: string[];
  session: SessionPolicyConfig;
  /** Absolute path, or '-' for stdout. */
  audit: { file: string };
  log: { level: 'debug' | 'info' | 'warn' | 'error' };
  targets: Record<string, TargetConfig>;
}

// ---------- tokens (tokens.ts) ----------

/** Who made a request, from a validated access token. */
export interface Principal {
  subject: string;
  /** When the person last signed in (OIDC auth_time), epoch ms; undefined if the token lacks it. */
  authTimeMs?: number;
  expiresAtMs: number;
  scopes: string[];
  clientId?: string;
  /** `jti`, for audit correlation; never the token itself. */
  tokenId?: string;
}

/** Why a token was refused; goes into the audit trail, never to the client. */
export type TokenRejectReason =
  | 'missing'
  | 'malformed'
  | 'alg_not_allowed'
  | 'unknown_kid'
  | 'bad_signature'
  | 'wrong_issuer'
  | 'wrong_audience'
  | 'expired'
  | 'not_yet_valid'
  | 'wrong_typ'
  | 'missing_claim'
  | 'inactive'
  | 'introspection_failed';

export class TokenRejectedError extends Error {
  constructor(
    readonly reason: TokenRejectReason,
    message: string = reason,
  ) {
    super(message);
    this.name = 'TokenRejectedError';
  }
}

export interface TokenVerifier {
  /** Resolves to the principal, or rejects with TokenRejectedError. */
  verify(token: string): Promise<Principal>;
}

// ---------- embedded provider (dev-provider.ts) ----------

export interface DevProvider {
  /** Issuer URL, e.g. http://127.0.0.1:7480/oidc */
  issuer: string;
  /** Path prefix the gateway routes to `handle`, e.g. /oidc */
  mountPath: string;
  /** Node request handler for everything under mountPath (req.url still carries the prefix). */
  handle(req: IncomingMessage, res: ServerResponse): void;
  close(): Promise<void>;
}

// ---------- what the data plane sees of a session ----------

export interface LiveSession {
  readonly id: string;
  readonly subject: string;
  readonly target: string;
  /** Aborted the moment the session ends; `signal.reason` is the EndReason. */
  readonly signal: AbortSignal;
  /** Real traffic: resets the idle timer. Heartbeats never call this. */
  recordActivity(): void;
}

export interface DataPlane {
  /** GET /v1/sessions/{id}/logs for file and demo targets. */
  handleLogs(
    req: IncomingMessage,
    res: ServerResponse,
    session: LiveSession,
    target: TargetConfig,
    query: URLSearchParams,
  ): Promise<void>;
  /** Any method under /v1/sessions/{id}/forward/ for http targets. `rest` keeps its query. */
  handleForward(
    req: IncomingMessage,
    res: ServerResponse,
    session: LiveSession,
    target: TargetConfig,
    rest: string,
  ): Promise<void>;
  /** WebSocket upgrade under /v1/sessions/{id}/forward/. */
  handleUpgrade(
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    session: LiveSession,
    target: TargetConfig,
    rest: string,
  ): void;
  close(): Promise<void>;
}

export type { EndReason };
