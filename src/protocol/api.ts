/**
 * The gateway's wire format, shared by the gateway and every client. Types only, plus the
 * few constants both sides must agree on; no runtime dependencies. Documented for third
 * parties in docs/api.md: change it only in a backwards-compatible way, or bump API_VERSION.
 */

export const API_VERSION = 1;

/** Path of the discovery document: everything a client needs to sign in. */
export const DISCOVERY_PATH = '/.well-known/logproxy';

/** `GET /.well-known/logproxy` */
export interface DiscoveryDocument {
  api_version: number;
  /** The gateway's own base URL as the client should use it. */
  gateway: string;
  /** OIDC issuer; `${issuer}/.well-known/openid-configuration` is its metadata. */
  issuer: string;
  /** Public client id the CLI uses (device grant, refresh tokens). */
  client_id: string;
  /** Required `aud` of access tokens; sent as the `resource` indicator (RFC 8707). */
  audience: string;
  /** Scopes to request; includes `offline_access` so a refresh token is issued. */
  scopes: string[];
  /** True when the gateway runs its embedded development provider. */
  dev: boolean;
}

/** Why a session ended. Stable strings: clients map them to exit codes. */
export type EndReason =
  | 'idle_timeout'
  | 'max_lifetime'
  | 'client_lost'
  | 'revoked'
  /** The client ended it (`DELETE /v1/sessions/{id}`). */
  | 'ended'
  /** The gateway shut down cleanly. */
  | 'gateway_shutdown';

export interface SessionPolicy {
  idle_timeout_s: number;
  max_lifetime_s: number;
  heartbeat_interval_s: number;
  /** Seconds before the end at which clients warn people, largest first. */
  warn_before_s: number[];
  /** A new session after idle/lifetime expiry does not need a fresh sign-in. */
  silent_resume: boolean;
}

/** One entry of `GET /v1/targets`. */
export interface TargetInfo {
  name: string;
  description?: string;
  /** `file`, `demo` (log stream API) or `http` (forwarding). */
  source_type: 'file' | 'demo' | 'http';
  /** What the target offers: `logs` (GET .../logs) and/or `forward` (.../forward/). */
  capabilities: Array<'logs' | 'forward'>;
  policy: SessionPolicy;
}

export interface TargetList {
  targets: TargetInfo[];
}

/**
 * A session as the gateway reports it: the answer to create, read and heartbeat. Every
 * heartbeat answer carries what a client needs to warn a person, computed by the gateway's
 * clock, never the client's.
 */
export interface SessionState {
  id: string;
  target: string;
  subject: string;
  state: 'active' | 'ended';
  /** RFC 3339 times. */
  created_at: string;
  last_activity_at: string;
  /** When the session ends if nobody uses it (moves with activity). */
  idle_expires_at: string;
  /** When the session ends whatever happens. */
  expires_at: string;
  /** Seconds since the last real traffic. */
  idle_s: number;
  seconds_to_idle_expiry: number;
  seconds_to_absolute_end: number;
  policy: SessionPolicy;
  /** Set once ended. */
  ended_at?: string;
  end_reason?: EndReason;
}

export interface SessionList {
  sessions: SessionState[];
}

export interface CreateSessionRequest {
  target: string;
}

/** Problem details (RFC 9457), `Content-Type: application/problem+json`. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail?: string;
  instance?: string;
  /** For `session-ended`: why. */
  reason?: EndReason;
  session_id?: string;
  /** For bad parameters: which one. */
  parameter?: string;
}

const PROBLEM_BASE = 'urn:logproxy:problem:';

/** Stable problem `type`s, one per reason. */
export const ProblemTypes = {
  invalidToken: `${PROBLEM_BASE}invalid-token`,
  forbidden: `${PROBLEM_BASE}forbidden`,
  notAdmin: `${PROBLEM_BASE}not-admin`,
  targetNotFound: `${PROBLEM_BASE}target-not-found`,
  sessionNotFound: `${PROBLEM_BASE}session-not-found`,
  sessionEnded: `${PROBLEM_BASE}session-ended`,
  reauthRequired: `${PROBLEM_BASE}reauth-required`,
  badRequest: `${PROBLEM_BASE}bad-request`,
  invalidParameter: `${PROBLEM_BASE}invalid-parameter`,
  notSupported: `${PROBLEM_BASE}not-supported`,
  upstreamUnavailable: `${PROBLEM_BASE}upstream-unavailable`,
  notFound: `${PROBLEM_BASE}not-found`,
  internal: `${PROBLEM_BASE}internal`,
} as const;

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

/**
 * One line of `GET /v1/sessions/{id}/logs` (NDJSON). Log records have `line`; notices have
 * `notice` instead and never `line`, so `jq 'select(.line)'` keeps only log data.
 */
export interface LogRecord {
  /** RFC 3339 with milliseconds: when the gateway read the line (or the demo made it). */
  ts: string;
  /** The file's path, or the stream's name. */
  source: string;
  /** The raw text, without its newline. */
  line: string;
  /** Opaque; pass as `cursor=` to continue with exactly the next record. */
  cursor: string;
  /** For JSON lines: the level field, lower-cased, when present. */
  level?: string;
  /** For JSON lines: the parsed object. */
  fields?: Record<string, unknown>;
}

export type NoticeKind =
  /** Data behind a cursor is gone (rotated away or truncated); `lost_bytes` when known. */
  | 'data_lost'
  /** The session ended; the stream closes after this record. */
  | 'session_ended'
  /** Sent while following and idle, so clients can tell a quiet source from a dead link. */
  | 'keepalive';

export interface LogNotice {
  notice: NoticeKind;
  ts: string;
  source?: string;
  detail?: string;
  lost_bytes?: number;
  lost_lines?: number;
  reason?: EndReason;
  /** Resume from here after this notice. */
  cursor?: string;
}

export type StreamRecord = LogRecord | LogNotice;

export function isNotice(record: StreamRecord): record is LogNotice {
  return (record as LogNotice).notice !== undefined;
}

/** Header a client sends with forwarded requests to avoid idle-activity counting (probes). */
export const HEADER_NO_ACTIVITY = 'x-logproxy-no-activity';
