/**
 * HTTP answers of the gateway's API: JSON bodies and RFC 9457 problem details with a stable
 * `type` per reason (src/protocol/api.ts `ProblemTypes`; table in docs/api.md).
 */
import type { ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { PROBLEM_CONTENT_TYPE, ProblemTypes } from '../protocol/api.js';
import type { Problem } from '../protocol/api.js';

export type ProblemKind = keyof typeof ProblemTypes;

const TITLES: Record<ProblemKind, string> = {
  invalidToken: 'Missing or invalid access token',
  forbidden: 'Not allowed',
  notAdmin: 'Administrators only',
  targetNotFound: 'No such target',
  sessionNotFound: 'No such session',
  sessionEnded: 'Session ended',
  reauthRequired: 'Sign in again',
  badRequest: 'Bad request',
  invalidParameter: 'Invalid parameter',
  notSupported: 'Not supported',
  upstreamUnavailable: 'Unavailable',
  notFound: 'Not found',
  internal: 'Internal error',
};

/** Realm of every Bearer challenge the gateway sends. */
export const REALM = 'logproxy';

export function problem(
  kind: ProblemKind,
  status: number,
  detail?: string,
  extra: Partial<Problem> = {},
): Problem {
  const p: Problem = { type: ProblemTypes[kind], title: TITLES[kind], status };
  if (detail) p.detail = detail;
  return { ...p, ...extra };
}

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(text);
}

export function sendProblem(
  res: ServerResponse,
  p: Problem,
  headers: Record<string, string> = {},
): void {
  sendJson(res, p.status, p, { 'content-type': PROBLEM_CONTENT_TYPE, ...headers });
}

/**
 * The RFC 6750 challenge: no `error` attribute when the request carried no token (§3.1),
 * `invalid_token` otherwise, and never a hint of what exactly was wrong.
 */
export function bearerChallenge(tokenPresent: boolean): string {
  return tokenPresent
    ? `Bearer realm="${REALM}", error="invalid_token"`
    : `Bearer realm="${REALM}"`;
}

/** Answers a refused WebSocket upgrade with a plain HTTP problem response and closes. */
export function rejectUpgrade(
  socket: Duplex,
  p: Problem,
  headers: Record<string, string> = {},
): void {
  const body = JSON.stringify(p);
  const lines = [
    `HTTP/1.1 ${p.status} ${p.title}`,
    `Content-Type: ${PROBLEM_CONTENT_TYPE}`,
    `Content-Length: ${Buffer.byteLength(body)}`,
    'Connection: close',
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
  ];
  socket.end(`${lines.join('\r\n')}\r\n\r\n${body}`);
}
