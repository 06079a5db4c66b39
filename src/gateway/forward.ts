/**
 * Forwarding to a target's `http` source: any method and path under
 * `/v1/sessions/{id}/forward/` goes to the source's `url` with the rest of the path and the
 * query appended. Bodies stream both ways with backpressure (undici `Pool.stream` writes the
 * upstream body straight into our response and pauses while it is full), so a response of
 * any size passes through a fixed amount of memory. WebSocket upgrades are passed through
 * as raw sockets once the upstream answered 101.
 *
 * What the upstream never sees: the client's Authorization and Cookie headers, hop-by-hop
 * headers and our own `x-logproxy-*` headers. What it gets instead: the source's configured
 * `headers` (credentials users never hold) and X-Forwarded-For/-Proto/-Host.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import { Writable } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { Pool } from 'undici';
import { HEADER_NO_ACTIVITY, type Problem } from '../protocol/api.js';
import type { Clock } from '../util/clock.js';
import { problem, rejectUpgrade, sendProblem } from './problems.js';
import type { LiveSession, SourceConfig, TargetConfig } from './types.js';

type HttpSource = Extract<SourceConfig, { type: 'http' }>;
type HeaderMap = Record<string, string | string[]>;

/** With `activity: bytes`, a streaming body renews the idle clock at most this often. */
const BYTES_ACTIVITY_EVERY_MS = 1000;
/** Connections kept per upstream; more requests than this queue in the pool. */
const UPSTREAM_CONNECTIONS = 64;

/** Headers that describe one hop, never the message (RFC 9110 §7.6.1), plus what we strip. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
  // undici refuses `expect`; the body streams anyway
  'expect',
]);

/** Client headers that must never reach the upstream: they are the user's, not the target's. */
const CLIENT_SECRETS = new Set(['authorization', 'cookie']);

function connectionTokens(value: string | string[] | undefined): Set<string> {
  const text = Array.isArray(value) ? value.join(',') : (value ?? '');
  return new Set(
    text
      .split(',')
      .map((t) => t.trim().toLowerCase())
      .filter(Boolean),
  );
}

/** The request headers the upstream gets. */
export function upstreamRequestHeaders(
  req: IncomingMessage,
  source: HttpSource,
  upstream: URL,
): HeaderMap {
  const listed = connectionTokens(req.headers.connection);
  const out: HeaderMap = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined) continue;
    if (HOP_BY_HOP.has(name) || listed.has(name) || CLIENT_SECRETS.has(name)) continue;
    if (name.startsWith('x-logproxy-') || name.startsWith('x-forwarded-')) continue;
    out[name] = value;
  }

  const clientIp = req.socket.remoteAddress ?? '';
  const prior = req.headers['x-forwarded-for'];
  const priorText = Array.isArray(prior) ? prior.join(', ') : prior;
  out['x-forwarded-for'] = priorText ? `${priorText}, ${clientIp}` : clientIp;
  out['x-forwarded-proto'] = (req.socket as TLSSocket).encrypted ? 'https' : 'http';
  if (req.headers.host) out['x-forwarded-host'] = req.headers.host;

  if (upstream.username || upstream.password) {
    const user = decodeURIComponent(upstream.username);
    const pass = decodeURIComponent(upstream.password);
    out.authorization = `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;
  }
  for (const [name, value] of Object.entries(source.headers)) out[name.toLowerCase()] = value;
  return out;
}

/** The response headers the client gets: hop-by-hop and Set-Cookie dropped. */
export function clientResponseHeaders(headers: HeaderMap): HeaderMap {
  const listed = connectionTokens(headers.connection);
  const out: HeaderMap = {};
  for (const [name, value] of Object.entries(headers)) {
    if (HOP_BY_HOP.has(name) || listed.has(name) || name === 'set-cookie') continue;
    out[name] = value;
  }
  return out;
}

/**
 * Joins the source's URL and the part of the path after `forward/`. Dot segments are refused:
 * `forward/../admin` must not climb out of the source's base path.
 */
export function upstreamPath(base: URL, rest: string): string | null {
  const q = rest.indexOf('?');
  const restPath = q < 0 ? rest : rest.slice(0, q);
  const query = q < 0 ? '' : rest.slice(q);
  const segments = restPath.split('/');
  for (const seg of segments) {
    let decoded: string;
    try {
      decoded = decodeURIComponent(seg);
    } catch {
      return null;
    }
    if (decoded === '.' || decoded === '..') return null;
  }
  const basePath = base.pathname.replace(/\/+$/, '');
  const tail = restPath.replace(/^\/+/, '');
  const joinedQuery =
    base.search && query ? `${base.search}&${query.slice(1)}` : base.search || query;
  return `${basePath}/${tail}${joinedQuery}`;
}

function throttled(clock: Clock, everyMs: number, fn: () => void): () => void {
  let last = -Infinity;
  return () => {
    const now = clock.now();
    if (now - last < everyMs) return;
    last = now;
    fn();
  };
}

function describeError(err: unknown): string {
  const e = err as { code?: string; message?: string; cause?: { code?: string } };
  return e.code ?? e.cause?.code ?? e.message ?? String(err);
}

/** A Writable into `res` that renews the session's idle clock while bytes flow. */
function countingWritable(res: ServerResponse, onBytes: () => void): Writable {
  return new Writable({
    write(chunk: Buffer, _enc, callback) {
      onBytes();
      if (res.write(chunk)) return callback();
      const done = (): void => {
        res.off('drain', done);
        res.off('close', done);
        callback(res.destroyed ? new Error('client went away') : null);
      };
      res.on('drain', done);
      res.on('close', done);
    },
    final(callback) {
      res.end(() => callback());
    },
    destroy(err, callback) {
      if (err) res.destroy();
      callback(err);
    },
  });
}

export class Forwarder {
  private readonly pools = new Map<string, Pool>();

  constructor(private readonly clock: Clock) {}

  private pool(target: string, source: HttpSource): Pool {
    let pool = this.pools.get(target);
    if (!pool) {
      pool = new Pool(new URL(source.url).origin, {
        connections: UPSTREAM_CONNECTIONS,
        headersTimeout: source.timeoutMs,
        // Long polls and live tails may stay quiet for long; the session's end cuts them.
        bodyTimeout: 0,
      });
      this.pools.set(target, pool);
    }
    return pool;
  }

  async handle(
    req: IncomingMessage,
    res: ServerResponse,
    session: LiveSession,
    target: TargetConfig,
    rest: string,
  ): Promise<void> {
    const source = target.source as HttpSource;
    const base = new URL(source.url);
    const path = upstreamPath(base, rest);
    if (path === null) {
      const detail = 'the forwarded path may not contain "." or ".." segments';
      return sendProblem(res, problem('badRequest', 400, detail));
    }
    if (session.signal.aborted) return sessionEnded(res, session);
    if (req.headers[HEADER_NO_ACTIVITY] === undefined) session.recordActivity();

    // One signal for everything that cuts this exchange: the session ends or the client leaves.
    const cut = new AbortController();
    const onEnd = (): void => cut.abort(session.signal.reason);
    session.signal.addEventListener('abort', onEnd, { once: true });
    const onClose = (): void => {
      if (!res.writableFinished) cut.abort(new Error('client went away'));
    };
    res.on('close', onClose);

    const hasBody =
      req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
    const onBytes =
      target.activity === 'bytes'
        ? throttled(this.clock, BYTES_ACTIVITY_EVERY_MS, () => session.recordActivity())
        : undefined;

    try {
      await this.pool(target.name, source).stream(
        {
          path,
          method: req.method as 'GET',
          headers: upstreamRequestHeaders(req, source, base),
          body: hasBody ? req : undefined,
          signal: cut.signal,
          headersTimeout: source.timeoutMs,
          bodyTimeout: 0,
        },
        ({ statusCode, headers }) => {
          res.writeHead(statusCode, clientResponseHeaders(headers as HeaderMap));
          // Headers go out now, so a client of a slow stream knows the upstream answered.
          res.flushHeaders();
          return onBytes ? countingWritable(res, onBytes) : res;
        },
      );
    } catch (err) {
      this.fail(res, session, target, err);
    } finally {
      session.signal.removeEventListener('abort', onEnd);
      res.off('close', onClose);
    }
  }

  private fail(
    res: ServerResponse,
    session: LiveSession,
    target: TargetConfig,
    err: unknown,
  ): void {
    if (res.headersSent || res.destroyed) {
      res.destroy(); // mid-body: cutting the connection is the only honest signal left
      return;
    }
    if (session.signal.aborted) return sessionEnded(res, session);
    const code = describeError(err);
    const timedOut = code === 'UND_ERR_HEADERS_TIMEOUT';
    const detail = timedOut
      ? `target ${target.name}: the upstream sent no answer in time`
      : `target ${target.name}: the upstream could not be reached (${code})`;
    sendProblem(res, problem('upstreamUnavailable', timedOut ? 504 : 502, detail));
  }

  /** Passes a WebSocket (or any) upgrade through once the upstream agrees to it. */
  upgrade(
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    session: LiveSession,
    target: TargetConfig,
    rest: string,
  ): void {
    const source = target.source as HttpSource;
    const base = new URL(source.url);
    const path = upstreamPath(base, rest);
    if (path === null) {
      const detail = 'the forwarded path may not contain "." or ".." segments';
      return rejectUpgrade(socket, problem('badRequest', 400, detail));
    }
    if (session.signal.aborted) {
      return rejectUpgrade(socket, sessionEndedProblem(session));
    }
    session.recordActivity();

    const headers = upstreamRequestHeaders(req, source, base);
    headers.connection = 'Upgrade';
    headers.upgrade = req.headers.upgrade ?? 'websocket';
    const client = base.protocol === 'https:' ? https : http;
    const upstreamReq = client.request({
      host: base.hostname,
      port: base.port || (base.protocol === 'https:' ? 443 : 80),
      method: req.method,
      path,
      headers,
      timeout: source.timeoutMs,
    });

    let upstreamSocket: Duplex | undefined;
    const cutAll = (): void => {
      upstreamReq.destroy();
      upstreamSocket?.destroy();
      socket.destroy();
    };
    session.signal.addEventListener('abort', cutAll, { once: true });
    socket.on('close', () => {
      session.signal.removeEventListener('abort', cutAll);
      upstreamReq.destroy();
    });
    socket.on('error', () => upstreamReq.destroy());

    upstreamReq.on('timeout', () => upstreamReq.destroy(new Error('UND_ERR_HEADERS_TIMEOUT')));
    upstreamReq.on('error', (err) => {
      if (!socket.writable) return;
      const detail = `target ${target.name}: the upstream could not be reached (${describeError(err)})`;
      rejectUpgrade(socket, problem('upstreamUnavailable', 502, detail));
    });
    upstreamReq.on('response', (upRes) => relayRefusal(upRes, socket));
    upstreamReq.on('upgrade', (upRes, upSocket, upHead) => {
      upstreamSocket = upSocket;
      upstreamReq.setTimeout(0);
      const lines = [`HTTP/1.1 101 ${upRes.statusMessage ?? 'Switching Protocols'}`];
      for (let i = 0; i < upRes.rawHeaders.length; i += 2) {
        const name = upRes.rawHeaders[i]!;
        if (name.toLowerCase() === 'set-cookie') continue;
        lines.push(`${name}: ${upRes.rawHeaders[i + 1]}`);
      }
      socket.write(`${lines.join('\r\n')}\r\n\r\n`);
      if (upHead.length > 0) socket.write(upHead);
      if (head.length > 0) upSocket.write(head);
      if (session.signal.aborted || socket.destroyed) return cutAll();
      this.splice(socket, upSocket, session, target);
    });
    upstreamReq.end();
  }

  /** Pipes both directions; client frames always count as activity, upstream ones in `bytes`. */
  private splice(socket: Duplex, upSocket: Duplex, session: LiveSession, target: TargetConfig) {
    const activity = throttled(this.clock, BYTES_ACTIVITY_EVERY_MS, () => session.recordActivity());
    socket.on('data', activity);
    if (target.activity === 'bytes') upSocket.on('data', activity);
    socket.pipe(upSocket);
    upSocket.pipe(socket);
    const cut = (): void => {
      socket.destroy();
      upSocket.destroy();
    };
    upSocket.on('error', cut);
    upSocket.on('close', cut);
    socket.on('error', cut);
    socket.on('close', cut);
  }

  async close(): Promise<void> {
    const pools = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(pools.map((p) => p.destroy().catch(() => undefined)));
  }
}

export function sessionEndedProblem(session: LiveSession): Problem {
  const reason = session.signal.reason as Problem['reason'];
  return problem('sessionEnded', 410, `the session ended (${reason})`, {
    ...(reason ? { reason } : {}),
    session_id: session.id,
  });
}

function sessionEnded(res: ServerResponse, session: LiveSession): void {
  sendProblem(res, sessionEndedProblem(session));
}

/** The upstream answered the upgrade with a normal response: pass it on and close. */
function relayRefusal(upRes: IncomingMessage, socket: Duplex): void {
  const lines = [`HTTP/1.1 ${upRes.statusCode} ${upRes.statusMessage ?? ''}`];
  for (let i = 0; i < upRes.rawHeaders.length; i += 2) {
    const name = upRes.rawHeaders[i]!.toLowerCase();
    if (HOP_BY_HOP.has(name) || name === 'content-length' || name === 'set-cookie') continue;
    lines.push(`${upRes.rawHeaders[i]}: ${upRes.rawHeaders[i + 1]}`);
  }
  lines.push('Connection: close');
  socket.write(`${lines.join('\r\n')}\r\n\r\n`);
  upRes.pipe(socket);
}
