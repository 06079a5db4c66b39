/**
 * The client's HTTP layer: one `fetch` for the gateway and the identity provider that honours
 * HTTPS_PROXY / HTTP_PROXY / NO_PROXY, trusts NODE_EXTRA_CA_CERTS, never waits without bound,
 * traces redacted requests for `--verbose`, and turns network failures and garbage answers
 * into LogproxyErrors that say which server failed and how.
 *
 * This module imports undici at the top: commands load it with `await import(...)` inside
 * their action, so `logproxy --help` never pays for it.
 */
import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import { performance } from 'node:perf_hooks';
import { EnvHttpProxyAgent, Pool, fetch as undiciFetch, type Dispatcher } from 'undici';
import { PROBLEM_CONTENT_TYPE, ProblemTypes, type Problem } from '../protocol/api.js';
import { parseDuration, formatDuration } from '../util/durations.js';
import { ErrorCodes, LogproxyError, isAbortError, isLogproxyError } from '../util/errors.js';

/** A `fetch` with the global types; undici's Response is what actually comes back. */
export type Fetch = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

/** What `createHttpClient` returns: a fetch, plus names for the servers it talks to. */
export interface HttpClient extends Fetch {
  /**
   * Names the server behind a URL prefix in error messages ("the identity provider at ...").
   * The longest matching prefix wins, so an issuer mounted under the gateway gets its own name.
   */
  nameServer(urlPrefix: string, name: string): void;
  /** The name registered for a URL, or "the server". */
  serverName(url: string | URL): string;
  /** Closes pooled connections (keep-alive sockets would otherwise hold the process). */
  close(): Promise<void>;
  readonly timeoutMs: number;
}

export interface HttpClientOptions {
  /** Trace each request and answer through `trace`, redacted. */
  verbose?: boolean;
  /** Where trace lines go (the CLI passes a stderr writer). The core never prints. */
  trace?: (line: string) => void;
  /**
   * Bound for connecting and for the answer's headers, and the longest pause allowed between
   * two chunks of a body. Default: LOGPROXY_HTTP_TIMEOUT from `env`, else 30 s.
   */
  timeoutMs?: number;
  /** Pause allowed between body chunks; 0 disables (long-lived streams that send keepalives). */
  bodyTimeoutMs?: number;
  /** Environment for proxies, the timeout and NODE_EXTRA_CA_CERTS (default process.env). */
  env?: NodeJS.ProcessEnv;
}

/**
 * 30 s: a person waits that long for a sign-in page; a proxy that has not connected by then
 * is not going to. Tests and impatient scripts lower it with LOGPROXY_HTTP_TIMEOUT.
 */
export const DEFAULT_HTTP_TIMEOUT_MS = 30_000;

/** Response bodies longer than this are not traced (they are logs, not protocol). */
const TRACE_BODY_LIMIT_CHARS = 2_000;

/** Field and header names whose values never reach a trace, an error or a log. */
const SECRET_NAMES = new Set([
  'access_token',
  'refresh_token',
  'id_token',
  'device_code',
  'user_code',
  'code',
  'code_verifier',
  'client_secret',
  'client_assertion',
  'assertion',
  'token',
  'subject_token',
  'actor_token',
  'password',
  'secret',
]);
const SECRET_HEADER = /authorization|cookie|token|secret|api-key/i;
const REDACTED = '[REDACTED]';

/**
 * Builds the client. Proxies follow the environment the way curl does: HTTPS_PROXY for
 * https URLs, HTTP_PROXY for http URLs (sent as absolute-form requests, not CONNECT, which
 * many corporate proxies only allow to port 443), NO_PROXY to skip. An empty NO_PROXY
 * proxies everything, loopback included.
 */
export function createHttpClient(options: HttpClientOptions = {}): HttpClient {
  const env = options.env ?? process.env;
  const timeoutMs = options.timeoutMs ?? timeoutFromEnv(env);
  const bodyTimeoutMs = options.bodyTimeoutMs ?? timeoutMs;
  const trace = options.verbose && options.trace ? options.trace : undefined;
  const names: Array<{ prefix: string; name: string }> = [];
  const dispatcher = createDispatcher(env, timeoutMs, bodyTimeoutMs);
  const proxied = Boolean(proxyFromEnv(env, 'https') || proxyFromEnv(env, 'http'));

  const serverName = (url: string | URL): string => {
    const href = String(url);
    let best: { prefix: string; name: string } | undefined;
    for (const entry of names) {
      if (href.startsWith(entry.prefix) && (!best || entry.prefix.length > best.prefix.length)) {
        best = entry;
      }
    }
    return best?.name ?? 'the server';
  };

  const fetchImpl = async (input: string | URL | Request, init: RequestInit = {}) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    const method = (init.method ?? (input instanceof Request ? input.method : 'GET')).toUpperCase();
    const where = `${serverName(url)} at ${url.origin}`;
    if (trace) traceRequest(trace, method, url, init);

    // undici bounds connect and headers itself; this deadline also covers DNS and a proxy
    // that accepts the connection but never answers the CONNECT.
    const deadline = new AbortController();
    const timer = setTimeout(() => deadline.abort(), timeoutMs);
    timer.unref();
    const signals = [deadline.signal, init.signal].filter((s): s is AbortSignal => Boolean(s));
    const started = performance.now();
    try {
      const response = (await undiciFetch(url, {
        ...(init as object),
        method,
        signal: AbortSignal.any(signals),
        dispatcher,
      } as Parameters<typeof undiciFetch>[1])) as unknown as Response;
      if (trace) traceResponse(trace, response, performance.now() - started);
      return response;
    } catch (err) {
      if (init.signal?.aborted) throw init.signal.reason ?? err;
      if (deadline.signal.aborted) {
        throw new LogproxyError(
          ErrorCodes.TIMEOUT,
          `${where} did not answer within ${formatDuration(timeoutMs)}` +
            (proxied ? ' (through the proxy from HTTPS_PROXY/HTTP_PROXY)' : ''),
          { retryable: true, details: { url: url.origin } },
        );
      }
      throw networkError(err, where, url, timeoutMs, proxied);
    } finally {
      clearTimeout(timer);
    }
  };

  return Object.assign(fetchImpl, {
    nameServer(urlPrefix: string, name: string) {
      names.push({ prefix: urlPrefix.replace(/\/+$/, ''), name });
    },
    serverName,
    close: () => dispatcher.close(),
    timeoutMs,
  });
}

function timeoutFromEnv(env: NodeJS.ProcessEnv): number {
  const raw = env.LOGPROXY_HTTP_TIMEOUT;
  if (!raw) return DEFAULT_HTTP_TIMEOUT_MS;
  try {
    const ms = parseDuration(raw);
    if (ms > 0) return ms;
  } catch {
    // fall through to the error below
  }
  throw new LogproxyError(
    ErrorCodes.USAGE,
    `LOGPROXY_HTTP_TIMEOUT="${raw}" is not a duration; write for example 10s or 2m`,
  );
}

function proxyFromEnv(env: NodeJS.ProcessEnv, scheme: 'http' | 'https'): string | undefined {
  const value =
    scheme === 'https'
      ? (env.https_proxy ?? env.HTTPS_PROXY ?? env.http_proxy ?? env.HTTP_PROXY)
      : (env.http_proxy ?? env.HTTP_PROXY);
  return value || undefined;
}

/**
 * NODE_EXTRA_CA_CERTS is read by Node once at start and added to the default trust store,
 * which undici's TLS connections use. We still load the file ourselves when `env` names a
 * file the process was not started with (tests, and callers that pass their own env): then
 * `ca` must list the public roots too, because an explicit `ca` replaces them.
 */
function extraCa(env: NodeJS.ProcessEnv): string[] | undefined {
  const file = env.NODE_EXTRA_CA_CERTS;
  if (!file || file === process.env.NODE_EXTRA_CA_CERTS) return undefined;
  try {
    return [...rootCertificates, readFileSync(file, 'utf8')];
  } catch (err) {
    throw new LogproxyError(
      ErrorCodes.USAGE,
      `NODE_EXTRA_CA_CERTS names ${file}, which cannot be read: ${(err as Error).message}`,
      { cause: err },
    );
  }
}

/**
 * An undici dispatcher with the environment's proxies (HTTPS_PROXY, HTTP_PROXY, NO_PROXY), the
 * extra CA and our timeouts: the one way every client request of ours reaches a server.
 */
export function createDispatcher(
  env: NodeJS.ProcessEnv,
  timeoutMs: number,
  bodyTimeoutMs: number,
): Dispatcher {
  const ca = extraCa(env);
  const tls = ca ? { ca } : {};
  const timeouts = { headersTimeout: timeoutMs, bodyTimeout: bodyTimeoutMs };
  // Every pool, including the one undici makes for absolute-form requests through an HTTP
  // proxy, gets our timeouts (undici's own default is five minutes).
  const factory = (origin: string | URL, opts: object): Dispatcher =>
    new Pool(origin, { ...opts, ...timeouts });
  return new EnvHttpProxyAgent({
    ...timeouts,
    connect: { timeout: timeoutMs, ...tls },
    requestTls: tls,
    factory,
    proxyTunnel: false,
    httpProxy: proxyFromEnv(env, 'http') ?? '',
    httpsProxy: proxyFromEnv(env, 'https') ?? '',
    noProxy: env.no_proxy ?? env.NO_PROXY ?? '',
  } as EnvHttpProxyAgent.Options);
}

// ---------- errors ----------

const TLS_TRUST_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_GET_ISSUER_CERT',
]);

/** Walks `cause` links (fetch wraps the real reason in "fetch failed"). */
function causes(err: unknown): Array<Error & { code?: string }> {
  const chain: Array<Error & { code?: string }> = [];
  let current: unknown = err;
  while (current instanceof Error && chain.length < 8) {
    chain.push(current as Error & { code?: string });
    current = (current as { cause?: unknown }).cause;
  }
  return chain;
}

function networkError(
  err: unknown,
  where: string,
  url: URL,
  timeoutMs: number,
  proxied: boolean,
): LogproxyError {
  const chain = causes(err);
  const code = chain.map((e) => e.code).find((c) => c !== undefined);
  const via = proxied ? ' through the proxy from HTTPS_PROXY/HTTP_PROXY' : '';
  const details = { url: url.origin, ...(code ? { cause_code: code } : {}) };
  const fail = (errorCode: typeof ErrorCodes.UNREACHABLE, text: string, retryable = true) =>
    new LogproxyError(errorCode, text, { cause: err, retryable, details });

  if (code && TLS_TRUST_CODES.has(code)) {
    return fail(
      ErrorCodes.UNREACHABLE,
      `cannot trust the TLS certificate of ${where} (${code}); if it comes from a private ` +
        'CA, point NODE_EXTRA_CA_CERTS at that CA certificate (PEM)',
      false,
    );
  }
  if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID') {
    return fail(
      ErrorCodes.UNREACHABLE,
      `the TLS certificate of ${where} is ${code === 'CERT_HAS_EXPIRED' ? 'expired' : 'not yet valid'}` +
        ' (check this machine\u2019s clock, then the server\u2019s certificate)',
      false,
    );
  }
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return fail(
      ErrorCodes.UNREACHABLE,
      `the TLS certificate of ${where} is not valid for ${url.hostname}`,
      false,
    );
  }
  const message = chain.map((e) => e.message).join(': ');
  if (/Proxy response \((\d+)\)/.test(message) || /Proxy Authentication Required/.test(message)) {
    return fail(
      ErrorCodes.UNREACHABLE,
      `the proxy from HTTPS_PROXY/HTTP_PROXY refused to connect to ${where} ` +
        `(${/\((\d+)\)/.exec(message)?.[1] ?? 'no status'}); check the proxy, or list the host ` +
        'in NO_PROXY',
    );
  }
  const reasons: Record<string, string> = {
    ECONNREFUSED: 'connection refused',
    ENOTFOUND: 'host name not found',
    EAI_AGAIN: 'host name lookup failed (DNS)',
    ECONNRESET: 'connection reset',
    EHOSTUNREACH: 'host unreachable',
    ENETUNREACH: 'network unreachable',
    UND_ERR_SOCKET: 'connection closed before the answer was complete',
    UND_ERR_CONNECT_TIMEOUT: `could not connect within ${formatDuration(timeoutMs)}`,
    UND_ERR_HEADERS_TIMEOUT: `no answer within ${formatDuration(timeoutMs)}`,
    UND_ERR_BODY_TIMEOUT: `the answer stalled for ${formatDuration(timeoutMs)}`,
  };
  const reason = (code && reasons[code]) ?? chain.at(-1)?.message ?? 'request failed';
  const isTimeout = code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT';
  return new LogproxyError(
    isTimeout || code === 'UND_ERR_CONNECT_TIMEOUT' ? ErrorCodes.TIMEOUT : ErrorCodes.UNREACHABLE,
    `cannot reach ${where}${via}: ${reason}`,
    { cause: err, retryable: true, details },
  );
}

/** "the gateway at 127.0.0.1:7480" from a response and a server name. */
function describe(response: Response, server: string): string {
  try {
    return `${server} at ${new URL(response.url).origin}`;
  } catch {
    return server;
  }
}

/**
 * Reads a JSON answer, or throws a LogproxyError that names the server and what was wrong:
 * problem+json becomes its typed error (see `problemToError`), a 5xx or a body that is not
 * JSON (an HTML login page of a proxy, a truncated body) becomes UNREACHABLE / BAD_RESPONSE.
 *
 * `server` is how people know it: "the gateway", "the identity provider".
 */
export async function readJson<T = unknown>(response: Response, server: string): Promise<T> {
  const where = describe(response, server);
  const type = (response.headers.get('content-type') ?? '').toLowerCase();
  let text: string;
  try {
    text = await response.text();
  } catch (err) {
    if (isAbortError(err)) throw err;
    if (isLogproxyError(err)) throw err;
    if (causes(err).some((e) => e.code === 'UND_ERR_BODY_TIMEOUT')) {
      throw new LogproxyError(
        ErrorCodes.TIMEOUT,
        `${where} stopped sending its answer half-way (HTTP ${response.status})`,
        { cause: err, retryable: true, details: { status: response.status } },
      );
    }
    throw new LogproxyError(
      ErrorCodes.BAD_RESPONSE,
      `${where} sent an incomplete answer (HTTP ${response.status}): the body was cut off`,
      { cause: err, retryable: true, details: { status: response.status } },
    );
  }

  if (!response.ok) throw errorForStatus(response, where, type, text);

  if (!isJsonType(type)) {
    throw new LogproxyError(
      ErrorCodes.BAD_RESPONSE,
      `${where} answered ${type.split(';')[0] || 'without a content type'} instead of JSON` +
        `${htmlTitle(text)}; check the URL, and any proxy or login page in between`,
      { details: { status: response.status, contentType: type } },
    );
  }
  try {
    return JSON.parse(text) as T;
  } catch (err) {
    throw new LogproxyError(
      ErrorCodes.BAD_RESPONSE,
      `${where} sent JSON that does not parse (${text.length} bytes; cut off?)`,
      { cause: err, retryable: true, details: { status: response.status } },
    );
  }
}

/**
 * Turns a non-2xx answer into a LogproxyError without expecting a body (for DELETE and
 * other calls that answer 204). Reads and discards the body.
 */
export async function expectOk(response: Response, server: string): Promise<void> {
  const where = describe(response, server);
  const type = (response.headers.get('content-type') ?? '').toLowerCase();
  const text = await response.text().catch(() => '');
  if (!response.ok) throw errorForStatus(response, where, type, text);
}

function isJsonType(type: string): boolean {
  return /^application\/([\w.+-]+\+)?json\b/.test(type);
}

function htmlTitle(text: string): string {
  const title = /<title[^>]*>([^<]{1,80})/i.exec(text)?.[1]?.trim();
  return title ? ` (an HTML page titled "${title}")` : '';
}

function errorForStatus(
  response: Response,
  where: string,
  type: string,
  text: string,
): LogproxyError {
  if (type.startsWith(PROBLEM_CONTENT_TYPE) || type.startsWith('application/json')) {
    try {
      const body = JSON.parse(text) as Partial<Problem>;
      if (typeof body.type === 'string' && typeof body.title === 'string') {
        return problemToError({ status: response.status, ...body } as Problem, where);
      }
    } catch {
      // not a problem document; described by status below
    }
  }
  const status = `HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ''}`;
  if (response.status >= 500) {
    return new LogproxyError(
      ErrorCodes.UNREACHABLE,
      `${where} failed with ${status}${htmlTitle(text)}; try again later`,
      { retryable: true, details: { status: response.status } },
    );
  }
  if (response.status === 401) {
    return new LogproxyError(
      ErrorCodes.NOT_SIGNED_IN,
      `${where} refused the credentials (${status}); run \`logproxy login\``,
      { details: { status: response.status } },
    );
  }
  if (response.status === 403) {
    return new LogproxyError(ErrorCodes.ACCESS_DENIED, `${where} denied access (${status})`, {
      details: { status: response.status },
    });
  }
  if (response.status === 404) {
    return new LogproxyError(
      ErrorCodes.BAD_RESPONSE,
      `${where} has no such resource (${status}); is this a logproxy gateway of a ` +
        'compatible version?',
      { details: { status: response.status } },
    );
  }
  return new LogproxyError(ErrorCodes.BAD_RESPONSE, `${where} answered ${status}`, {
    details: { status: response.status },
  });
}

type ProblemHandler = (p: Problem, where: string) => LogproxyError;

const END_REASON_HANDLERS: Record<string, ProblemHandler> = {
  idle_timeout: (p) =>
    new LogproxyError(
      ErrorCodes.SESSION_IDLE_TIMEOUT,
      `the session ended after its idle timeout${detail(p)}`,
      problemDetails(p),
    ),
  max_lifetime: (p) =>
    new LogproxyError(
      ErrorCodes.SESSION_MAX_LIFETIME,
      `the session reached its maximum lifetime${detail(p)}`,
      problemDetails(p),
    ),
  revoked: (p) =>
    new LogproxyError(
      ErrorCodes.SESSION_REVOKED,
      `the session was revoked by an administrator${detail(p)}`,
      problemDetails(p),
    ),
  client_lost: (p) =>
    new LogproxyError(
      ErrorCodes.UNREACHABLE,
      `the gateway ended the session because it stopped hearing from this client${detail(p)}`,
      problemDetails(p),
    ),
  gateway_shutdown: (p) =>
    new LogproxyError(
      ErrorCodes.UNREACHABLE,
      `the gateway shut down and ended the session${detail(p)}`,
      { ...problemDetails(p), retryable: true },
    ),
  ended: (p) =>
    new LogproxyError(ErrorCodes.SESSION_ENDED, `the session has ended${detail(p)}`, {
      ...problemDetails(p),
    }),
};

/**
 * How the gateway's problem types become error codes (and so exit codes). Documented in
 * docs/exit-codes.md; tunnels and tail rely on `details.reason` for session endings.
 */
const PROBLEM_HANDLERS: Record<string, ProblemHandler> = {
  [ProblemTypes.invalidToken]: (p, where) =>
    new LogproxyError(
      ErrorCodes.NOT_SIGNED_IN,
      `${where} refused the access token; run \`logproxy login\``,
      problemDetails(p),
    ),
  [ProblemTypes.reauthRequired]: (p) =>
    new LogproxyError(
      ErrorCodes.REAUTH_REQUIRED,
      `the gateway needs a fresh sign-in before a new session${detail(p)}; ` +
        'run `logproxy login`',
      problemDetails(p),
    ),
  [ProblemTypes.forbidden]: (p) =>
    new LogproxyError(ErrorCodes.ACCESS_DENIED, `access denied${detail(p)}`, problemDetails(p)),
  [ProblemTypes.notAdmin]: (p) =>
    new LogproxyError(
      ErrorCodes.ACCESS_DENIED,
      `only gateway administrators may do that${detail(p)}`,
      problemDetails(p),
    ),
  [ProblemTypes.targetNotFound]: (p) =>
    new LogproxyError(
      ErrorCodes.NOT_FOUND,
      `no such target${detail(p)}; run \`logproxy targets\` to list yours`,
      problemDetails(p),
    ),
  [ProblemTypes.sessionNotFound]: (p) =>
    new LogproxyError(ErrorCodes.NOT_FOUND, `no such session${detail(p)}`, problemDetails(p)),
  [ProblemTypes.notFound]: (p) =>
    new LogproxyError(ErrorCodes.NOT_FOUND, `not found${detail(p)}`, problemDetails(p)),
  [ProblemTypes.sessionEnded]: (p, where) =>
    (END_REASON_HANDLERS[p.reason ?? 'ended'] ?? END_REASON_HANDLERS.ended!)(p, where),
  [ProblemTypes.badRequest]: (p) =>
    new LogproxyError(ErrorCodes.USAGE, `bad request${detail(p)}`, problemDetails(p)),
  [ProblemTypes.invalidParameter]: (p) =>
    new LogproxyError(
      ErrorCodes.USAGE,
      `invalid ${p.parameter ?? 'parameter'}${detail(p)}`,
      problemDetails(p),
    ),
  [ProblemTypes.notSupported]: (p) =>
    new LogproxyError(ErrorCodes.USAGE, `not supported${detail(p)}`, problemDetails(p)),
  [ProblemTypes.upstreamUnavailable]: (p) =>
    new LogproxyError(
      ErrorCodes.UNREACHABLE,
      `the log source behind the gateway is unavailable${detail(p)}`,
      { ...problemDetails(p), retryable: true },
    ),
  [ProblemTypes.internal]: (p, where) =>
    new LogproxyError(ErrorCodes.UNREACHABLE, `${where} failed${detail(p)}; try again later`, {
      ...problemDetails(p),
      retryable: true,
    }),
};

/** Maps a problem+json document to a LogproxyError; unknown types fall back to the status. */
export function problemToError(problem: Problem, where = 'the gateway'): LogproxyError {
  const handler = PROBLEM_HANDLERS[problem.type];
  if (handler) return handler(problem, where);
  const code =
    problem.status === 401
      ? ErrorCodes.NOT_SIGNED_IN
      : problem.status === 403
        ? ErrorCodes.ACCESS_DENIED
        : problem.status === 404
          ? ErrorCodes.NOT_FOUND
          : problem.status >= 500
            ? ErrorCodes.UNREACHABLE
            : ErrorCodes.BAD_RESPONSE;
  return new LogproxyError(code, `${where}: ${problem.title}${detail(problem)}`, {
    ...problemDetails(problem),
    retryable: problem.status >= 500,
  });
}

function detail(p: Problem): string {
  return p.detail ? ` (${p.detail})` : '';
}

function problemDetails(p: Problem): { details: Record<string, unknown> } {
  const details: Record<string, unknown> = { problemType: p.type, status: p.status };
  if (p.reason) details.reason = p.reason;
  if (p.session_id) details.sessionId = p.session_id;
  if (p.parameter) details.parameter = p.parameter;
  return { details };
}

/**
 * openid-client wraps whatever our fetch threw in its own ClientError. This finds our
 * LogproxyError (or the abort) inside, so callers can rethrow the error that names the server.
 */
export function findLogproxyError(err: unknown): LogproxyError | undefined {
  return causes(err).find((e): e is LogproxyError => isLogproxyError(e));
}

// ---------- tracing (redacted) ----------

/** Replaces secret values in a form body, a query string or a JSON text. */
export function redact(text: string): string {
  const trimmed = text.trim();
  if (trimmed.startsWith('{') || trimmed.startsWith('[')) {
    try {
      return JSON.stringify(redactJson(JSON.parse(trimmed)));
    } catch {
      // not JSON after all; treat as a form body
    }
  }
  if (/^[\w.%+~-]+=/.test(trimmed)) {
    const params = new URLSearchParams(trimmed);
    for (const key of new Set(params.keys())) {
      if (isSecretName(key)) params.set(key, REDACTED);
    }
    return decodeURIComponent(params.toString()).replace(/%5BREDACTED%5D/g, REDACTED);
  }
  // Free text: strip anything shaped like a bearer token or a JWT.
  return trimmed
    .replace(/(bearer\s+)[\w.~+/=-]+/gi, `$1${REDACTED}`)
    .replace(/eyJ[\w-]+\.[\w-]+\.[\w-]*/g, REDACTED);
}

function redactJson(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(redactJson);
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      out[k] = isSecretName(k) && v !== undefined ? REDACTED : redactJson(v);
    }
    return out;
  }
  return value;
}

function isSecretName(name: string): boolean {
  return SECRET_NAMES.has(name.toLowerCase());
}

export function redactUrl(url: URL): string {
  const copy = new URL(url.href);
  if (copy.username || copy.password) {
    copy.username = REDACTED;
    copy.password = '';
  }
  for (const key of [...copy.searchParams.keys()]) {
    if (isSecretName(key)) copy.searchParams.set(key, REDACTED);
  }
  return decodeURIComponent(copy.href);
}

function traceRequest(trace: (line: string) => void, method: string, url: URL, init: RequestInit) {
  trace(`\u2192 ${method} ${redactUrl(url)}`);
  const headers = new Headers(init.headers);
  for (const [name, value] of headers) {
    trace(`  ${name}: ${SECRET_HEADER.test(name) ? redactHeader(value) : value}`);
  }
  const body = init.body;
  if (body instanceof URLSearchParams || typeof body === 'string') {
    trace(`  body: ${redact(String(body))}`);
  } else if (body !== undefined && body !== null) {
    trace('  body: (binary or stream, not shown)');
  }
}

function redactHeader(value: string): string {
  const scheme = /^(\w+)\s/.exec(value)?.[1];
  return scheme ? `${scheme} ${REDACTED}` : REDACTED;
}

function traceResponse(trace: (line: string) => void, response: Response, elapsedMs: number) {
  const type = response.headers.get('content-type') ?? '';
  trace(`\u2190 ${response.status} (${Math.round(elapsedMs)} ms) ${type}`.trimEnd());
  // Only small protocol answers: a log stream would be read twice and held in memory.
  const length = Number(response.headers.get('content-length') ?? 'NaN');
  if (!isJsonType(type) || !(length <= TRACE_BODY_LIMIT_CHARS * 4)) return;
  response
    .clone()
    .text()
    .then((text) => {
      const shown = redact(text);
      trace(
        `  body: ${shown.length > TRACE_BODY_LIMIT_CHARS ? `${shown.slice(0, TRACE_BODY_LIMIT_CHARS)}...` : shown}`,
      );
    })
    .catch(() => undefined);
}
