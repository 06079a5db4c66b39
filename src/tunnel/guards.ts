/**
 * Who may use a tunnel's local port. The tunnel adds the person's access token to every
 * request, so anything that can reach the port acts as that person: it listens on loopback
 * only, and refuses requests that a web page (DNS rebinding, cross-site requests) or, with
 * `--require-secret`, another local user could make.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import { ErrorCodes, LogproxyError } from '../util/errors.js';

/** Header carrying the per-tunnel secret (alternatively `Authorization: Bearer <secret>`). */
export const SECRET_HEADER = 'x-logproxy-secret';

/**
 * Resolves `--address` to the loopback addresses to bind. `localhost` means both 127.0.0.1
 * and ::1; any non-loopback address is a usage error that says why.
 */
export function loopbackAddresses(address: string | undefined): string[] {
  if (address === undefined || address === 'localhost') return ['127.0.0.1', '::1'];
  const bare = address.replace(/^\[(.*)\]$/, '$1');
  if (isLoopback(bare)) return [bare];
  throw new LogproxyError(
    ErrorCodes.USAGE,
    `--address ${address} is not a loopback address. The tunnel adds your access token to ` +
      'every request it receives, so listening on a network address would give everyone who ' +
      'can reach it your access. Use 127.0.0.1 (or another 127.x.y.z), ::1 or localhost; to ' +
      'share a tunnel on this host with other users, use --unix-socket or --require-secret.',
  );
}

export function isLoopback(address: string): boolean {
  const kind = isIP(address);
  if (kind === 4) return address.startsWith('127.');
  if (kind === 6)
    return /^(0{0,4}:){7}0{0,3}1$|^::1$/i.test(address) || address === '::ffff:127.0.0.1';
  return false;
}

/** A random secret for `--require-secret`: 32 bytes, base64url. */
export function generateSecret(): string {
  return randomBytes(32).toString('base64url');
}

export interface GuardOptions {
  /** `host:port` values the Host header may carry; empty for a unix socket (no DNS there). */
  allowedHosts: string[];
  /** When set, every request must present it. */
  secret?: string;
}

export interface Rejection {
  status: number;
  /** Plain text, for the person reading curl's output. */
  message: string;
  headers?: Record<string, string>;
}

/**
 * Builds the check run on every request before it is forwarded. Returns undefined to let the
 * request through, or why it is refused.
 */
export function createGuard(
  options: GuardOptions,
): (req: IncomingMessage) => Rejection | undefined {
  const hosts = new Set(options.allowedHosts.map((h) => h.toLowerCase()));
  const origins = new Set([...hosts].map((h) => `http://${h}`));
  const secret = options.secret === undefined ? undefined : Buffer.from(options.secret);

  return (req) => {
    if (req.url === undefined || !req.url.startsWith('/')) {
      return {
        status: 400,
        message:
          'logproxy tunnel: only origin-form request targets ("/path") are accepted; ' +
          'this is not a general-purpose proxy\n',
      };
    }
    if (hosts.size > 0) {
      const host = (req.headers.host ?? '').toLowerCase();
      if (!hosts.has(host)) {
        return {
          status: 421,
          message:
            `logproxy tunnel: Host "${req.headers.host ?? ''}" is not this tunnel's address ` +
            `(${[...hosts].join(', ')}); refused to protect against DNS rebinding\n`,
        };
      }
    }
    const origin = req.headers.origin;
    if (origin !== undefined && !origins.has(origin.toLowerCase())) {
      return {
        status: 403,
        message: `logproxy tunnel: requests from web pages at ${origin} are refused\n`,
      };
    }
    // Browsers send no Origin on simple cross-site GETs (an <img> tag), but they do send
    // Sec-Fetch-Site: such a request would still act with the person's access.
    const site = req.headers['sec-fetch-site'];
    if (site === 'cross-site' || site === 'same-site') {
      return {
        status: 403,
        message: 'logproxy tunnel: cross-site requests from web pages are refused\n',
      };
    }
    if (secret && !presentsSecret(req, secret)) {
      return {
        status: 401,
        message:
          'logproxy tunnel: this tunnel requires its secret; send it as the X-Logproxy-Secret ' +
          'header (or Authorization: Bearer <secret>)\n',
        headers: { 'www-authenticate': 'Bearer realm="logproxy tunnel"' },
      };
    }
    return undefined;
  };
}

function presentsSecret(req: IncomingMessage, secret: Buffer): boolean {
  const header = req.headers[SECRET_HEADER];
  const auth = req.headers.authorization;
  const bearer = auth?.match(/^Bearer\s+(.+)$/i)?.[1];
  for (const candidate of [typeof header === 'string' ? header : undefined, bearer]) {
    if (candidate === undefined) continue;
    const given = Buffer.from(candidate.trim());
    if (given.length === secret.length && timingSafeEqual(given, secret)) return true;
  }
  return false;
}
