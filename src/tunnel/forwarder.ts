/**
 * Sends each local request to the gateway's data plane for the current session, with the
 * person's access token, streaming both bodies with backpressure over keep-alive connections
 * (undici). The local client's own credentials never leave the machine.
 *
 * A request never fails because of a token refresh or a session switch when it can be sent
 * again: bodies up to REPLAY_BODY_LIMIT_BYTES are buffered so they can be, a 401
 * invalid_token is retried once after a refresh, and a 410 session-ended during a re-auth
 * waits for the new session.
 */
import http from 'node:http';
import https from 'node:https';
import { EventEmitter } from 'node:events';
import type { Duplex, Readable } from 'node:stream';
import { Writable } from 'node:stream';
import { EnvHttpProxyAgent, Pool, type Dispatcher } from 'undici';
import {
  PROBLEM_CONTENT_TYPE,
  ProblemTypes,
  type EndReason,
  type Problem,
  type SessionState,
} from '../protocol/api.js';
import { isLogproxyError } from '../util/errors.js';
import { SECRET_HEADER } from './guards.js';
import type { SessionKeeper } from './session-keeper.js';

export interface ForwarderOptions {
  /** The gateway's base URL (may carry a path prefix). */
  gateway: string;
  keeper: SessionKeeper;
  /** How long a request waits for a session during a re-auth before it gets 503. */
  holdMs?: number;
  /** Keep-alive connections to the gateway. */
  connections?: number;
  env?: NodeJS.ProcessEnv;
}

export interface Forwarder {
  handleRequest(req: http.IncomingMessage, res: http.ServerResponse): void;
  handleUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void;
  close(): Promise<void>;
}

/** Requests wait this long for a new session (a person signing in) before a 503. */
export const DEFAULT_HOLD_MS = 30_000;
/** Bodies up to this size are read first so the request can be replayed. */
const REPLAY_BODY_LIMIT_BYTES = 256 * 1024;
/** Largest gateway problem document we read to decide on a retry. */
const PROBLEM_LIMIT_BYTES = 64 * 1024;
/** What a client is told to wait after a 503 while the tunnel switches sessions. */
const RETRY_AFTER_S = 5;
/**
 * Enough parallel connections for a dashboard's burst of queries; more would only queue at
 * the gateway.
 */
const DEFAULT_CONNECTIONS = 32;

/** Headers that describe one connection, not the message (RFC 9110 7.6.1), and credentials. */
const DROPPED_REQUEST_HEADERS = new Set([
  'host',
  'connection',
  'keep-alive',
  'proxy-authorization',
  'proxy-authenticate',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'expect',
  'authorization',
  'cookie',
  'origin',
  SECRET_HEADER,
]);
const DROPPED_RESPONSE_HEADERS = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

type Headers = Record<string, string | string[]>;

/** The local client went away: undici listens for `abort` and reads `aborted`. */
class CancelSignal extends EventEmitter {
  aborted = false;
  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    this.emit('abort');
  }
}

/** What one attempt did: delivered to the client, or needs another try. */
type Outcome =
  | { kind: 'done' }
  | { kind: 'token_refused'; status: number; headers: Headers; body: Buffer }
  | { kind: 'session_ended'; reason?: EndReason; status: number; headers: Headers; body: Buffer };

export function createForwarder(options: ForwarderOptions): Forwarder {
  const gateway = new URL(options.gateway);
  const basePath = gateway.pathname.replace(/\/+$/, '');
  // URL getters are not free; this is read on every request.
  const origin = gateway.origin;
  const holdMs = options.holdMs ?? DEFAULT_HOLD_MS;
  const dispatcher = createDispatcher(gateway, options);
  const keeper = options.keeper;

  async function forward(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    // undici takes an EventEmitter as its abort signal: much cheaper per request than an
    // AbortController, which showed up in CPU profiles of small requests.
    const cancel = new CancelSignal();
    res.once('close', () => {
      if (!res.writableFinished) cancel.abort();
    });
    const headers = requestHeaders(req);
    const body = await readReplayableBody(req);
    const replayable = body !== undefined;
    let refreshed = false;

    for (let attempt = 0; attempt < 4; attempt++) {
      const session = await sessionFor(res);
      if (!session) return;
      const token = await keeper.accessToken();
      const outcome = await send(session, token, req, res, headers, body ?? req, cancel);
      if (outcome.kind === 'done') return;

      if (outcome.kind === 'token_refused' && replayable && !refreshed) {
        refreshed = true;
        if (
          await keeper.refreshToken().then(
            () => true,
            () => false,
          )
        )
          continue;
        if (!keeper.isOver()) continue; // re-authenticating: wait for it above
      }
      if (outcome.kind === 'session_ended') {
        keeper.reportSessionEnded(session.id, outcome.reason);
        if (replayable && !keeper.isOver()) continue;
        if (!keeper.isOver()) return unavailable(res, 'the session is being renewed');
      }
      return relay(res, outcome.status, outcome.headers, outcome.body);
    }
    unavailable(res, 'the session could not be renewed');
  }

  /** The active session, or undefined after answering 503 (re-auth took too long, or over). */
  async function sessionFor(res: http.ServerResponse): Promise<SessionState | undefined> {
    const current = keeper.current();
    if (current) return current;
    try {
      return await keeper.waitForSession(holdMs);
    } catch (err) {
      const closing = isLogproxyError(err) && keeper.isOver();
      unavailable(res, closing ? 'the tunnel is closing' : 'still waiting for a new session');
      return undefined;
    }
  }

  function send(
    session: SessionState,
    token: string,
    req: http.IncomingMessage,
    res: http.ServerResponse,
    baseHeaders: Headers,
    body: Buffer | Readable,
    signal: CancelSignal,
  ): Promise<Outcome> {
    let outcome: Outcome = { kind: 'done' };
    const path = `${basePath}/v1/sessions/${encodeURIComponent(session.id)}/forward${req.url!}`;
    const headers = { ...baseHeaders, authorization: `Bearer ${token}` };
    const method = req.method as Dispatcher.HttpMethod;
    const reqBody = method === 'GET' || method === 'HEAD' ? null : body;
    return new Promise<Outcome>((resolve) => {
      dispatcher.stream(
        { origin, path, method, headers, body: reqBody, signal, opaque: res },
        ({ statusCode, headers: upstream }) => {
          const h = upstream as Headers;
          const retry = retryKind(statusCode, h);
          if (retry) {
            return collect(PROBLEM_LIMIT_BYTES, (buf) => {
              outcome =
                retry === 'token'
                  ? { kind: 'token_refused', status: statusCode, headers: h, body: buf }
                  : sessionEndedOutcome(statusCode, h, buf);
            });
          }
          res.writeHead(statusCode, responseHeaders(h));
          return res;
        },
        (err) => {
          if (err) failed(res, err, signal);
          resolve(outcome);
        },
      );
    });
  }

  function handleRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    forward(req, res).catch((err: unknown) => failed(res, err, undefined));
  }

  function handleUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    upgrade(req, socket, head).catch(() => socket.destroy());
  }

  async function upgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    socket.on('error', () => undefined);
    let session = keeper.current();
    if (!session) session = await keeper.waitForSession(holdMs).catch(() => undefined);
    if (!session) {
      socket.end(rawResponse(503, 'the tunnel has no session right now; try again shortly'));
      return;
    }
    const token = await keeper.accessToken();
    const headers: Headers = { ...requestHeaders(req), authorization: `Bearer ${token}` };
    headers.connection = 'Upgrade';
    headers.upgrade = req.headers.upgrade ?? 'websocket';
    headers.host = gateway.host;
    const path = `${basePath}/v1/sessions/${encodeURIComponent(session.id)}/forward${req.url!}`;
    const lib = gateway.protocol === 'https:' ? https : http;
    const upstreamReq = lib.request({
      host: gateway.hostname.replace(/^\[(.*)\]$/, '$1'),
      port: gateway.port || (gateway.protocol === 'https:' ? 443 : 80),
      method: req.method,
      path,
      headers,
      agent: false,
    });
    upstreamReq.on('upgrade', (answer, upstream, upstreamHead) => {
      socket.write(rawHead(101, answer.rawHeaders));
      if (upstreamHead.length) socket.write(upstreamHead);
      if (head.length) upstream.write(head);
      upstream.pipe(socket).pipe(upstream);
      upstream.on('error', () => socket.destroy());
      socket.on('close', () => upstream.destroy());
      upstream.on('close', () => socket.destroy());
    });
    upstreamReq.on('response', (answer) => {
      socket.write(rawHead(answer.statusCode ?? 502, answer.rawHeaders, true));
      answer.pipe(socket);
    });
    upstreamReq.on('error', () => socket.end(rawResponse(502, 'the gateway could not be reached')));
    upstreamReq.end();
  }

  return {
    handleRequest,
    handleUpgrade,
    close: () => dispatcher.close(),
  };
}

/**
 * A pool straight to the gateway, unless HTTPS_PROXY/HTTP_PROXY apply to it (NO_PROXY
 * honoured), in which case undici's proxy agent carries the traffic.
 */
function createDispatcher(gateway: URL, options: ForwarderOptions): Dispatcher {
  const env = options.env ?? process.env;
  const timeouts = {
    // Long streams (tail -f) pause for as long as the logs are quiet.
    bodyTimeout: 0,
    // Slow queries behind the gateway may take a while before their first byte.
    headersTimeout: 300_000,
    keepAliveTimeout: 30_000,
  };
  const proxied =
    (gateway.protocol === 'https:' ? (env.HTTPS_PROXY ?? env.https_proxy) : undefined) ??
    env.HTTP_PROXY ??
    env.http_proxy;
  if (proxied) return new EnvHttpProxyAgent(timeouts);
  return new Pool(gateway.origin, {
    ...timeouts,
    connections: options.connections ?? DEFAULT_CONNECTIONS,
  });
}

function requestHeaders(req: http.IncomingMessage): Headers {
  const listed = new Set(
    (req.headers.connection ?? '')
      .split(',')
      .map((s) => s.trim().toLowerCase())
      .filter(Boolean),
  );
  const out: Headers = {};
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    if (DROPPED_REQUEST_HEADERS.has(name) || listed.has(name)) continue;
    const prev = out[name];
    out[name] = prev === undefined ? raw[i + 1]! : [...[prev].flat(), raw[i + 1]!];
  }
  return out;
}

function responseHeaders(h: Headers): Headers {
  const listed = new Set(
    String(h.connection ?? '')
      .split(',')
      .map((s) => s.trim().toLowerCase()),
  );
  const out: Headers = {};
  for (const [name, value] of Object.entries(h)) {
    if (DROPPED_RESPONSE_HEADERS.has(name) || listed.has(name)) continue;
    out[name] = value;
  }
  return out;
}

/**
 * Reads a small body so the request can be sent again; undefined when it is too large or of
 * unknown length (streamed, not replayable). A request with no body is replayable as is.
 */
async function readReplayableBody(req: http.IncomingMessage): Promise<Buffer | undefined> {
  if (req.method === 'GET' || req.method === 'HEAD') return Buffer.alloc(0);
  const length = req.headers['content-length'];
  if (length === undefined) {
    return req.headers['transfer-encoding'] === undefined ? Buffer.alloc(0) : undefined;
  }
  const bytes = Number(length);
  if (!Number.isFinite(bytes) || bytes > REPLAY_BODY_LIMIT_BYTES) return undefined;
  if (bytes === 0) return Buffer.alloc(0);
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Whether a gateway answer calls for a retry: a refused token, or an ended session. */
function retryKind(status: number, h: Headers): 'token' | 'session' | undefined {
  if (status === 401 && String(h['www-authenticate'] ?? '').includes('invalid_token')) {
    return 'token';
  }
  const type = String(h['content-type'] ?? '');
  if (status === 410 && type.startsWith(PROBLEM_CONTENT_TYPE)) return 'session';
  return undefined;
}

function sessionEndedOutcome(status: number, headers: Headers, body: Buffer): Outcome {
  let problem: Partial<Problem> = {};
  try {
    problem = JSON.parse(body.toString('utf8')) as Partial<Problem>;
  } catch {
    // Not the gateway's own problem document: relay it as it is.
  }
  if (problem.type !== ProblemTypes.sessionEnded) {
    return { kind: 'token_refused', status, headers, body };
  }
  return { kind: 'session_ended', reason: problem.reason, status, headers, body };
}

function collect(limit: number, done: (buf: Buffer) => void): Writable {
  const chunks: Buffer[] = [];
  let size = 0;
  return new Writable({
    write(chunk: Buffer, _enc, cb) {
      if (size < limit) chunks.push(chunk);
      size += chunk.length;
      cb();
    },
    final(cb) {
      done(Buffer.concat(chunks));
      cb();
    },
  });
}

function relay(res: http.ServerResponse, status: number, headers: Headers, body: Buffer): void {
  const h = responseHeaders(headers);
  delete h['content-length'];
  res.writeHead(status, { ...h, 'content-length': String(body.length) });
  res.end(body);
}

function unavailable(res: http.ServerResponse, why: string): void {
  if (res.headersSent) return void res.destroy();
  res.writeHead(503, {
    'content-type': 'text/plain; charset=utf-8',
    'retry-after': String(RETRY_AFTER_S),
  });
  res.end(`logproxy tunnel: ${why}; retry in ${RETRY_AFTER_S}s\n`);
}

function failed(res: http.ServerResponse, err: unknown, signal: CancelSignal | undefined): void {
  if (signal?.aborted) return; // the local client went away
  if (res.headersSent) {
    res.destroy(err instanceof Error ? err : undefined);
    return;
  }
  const code = (err as { code?: string }).code;
  res.writeHead(502, { 'content-type': 'text/plain; charset=utf-8' });
  res.end(`logproxy tunnel: the gateway could not be reached${code ? ` (${code})` : ''}\n`);
}

function rawHead(status: number, rawHeaders: string[], close = false): string {
  let head = `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? ''}\r\n`;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!.toLowerCase();
    if (close && (name === 'connection' || name === 'keep-alive')) continue;
    head += `${rawHeaders[i]}: ${rawHeaders[i + 1]}\r\n`;
  }
  if (close) head += 'Connection: close\r\n';
  return `${head}\r\n`;
}

function rawResponse(status: number, message: string): string {
  const body = `logproxy tunnel: ${message}\n`;
  return (
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? ''}\r\nContent-Type: text/plain\r\n` +
    `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`
  );
}
