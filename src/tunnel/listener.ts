/**
 * The tunnel's local end: HTTP servers on loopback (127.0.0.1 and ::1 on one port) or on a
 * unix socket only its owner can open. Knows nothing of sessions; it hands requests and
 * upgrades to the forwarder after the guards passed.
 */
import { createConnection } from 'node:net';
import { chmod, lstat, stat, unlink } from 'node:fs/promises';
import http from 'node:http';
import type { Duplex } from 'node:stream';
import { ErrorCodes, LogproxyError } from '../util/errors.js';
import type { Clock } from '../util/clock.js';
import { createGuard, loopbackAddresses, type Rejection } from './guards.js';

export interface ListenOptions {
  /** Loopback address (`--address`); default both 127.0.0.1 and ::1. */
  address?: string;
  /** 0 or undefined: a free port (the same on every address). */
  port?: number;
  /** Listen here instead of TCP; the socket file is created with mode 0600. */
  unixSocket?: string;
  /** Demand this secret on every request. */
  secret?: string;
  clock: Clock;
}

export type RequestHandler = (req: http.IncomingMessage, res: http.ServerResponse) => void;
export type UpgradeHandler = (req: http.IncomingMessage, socket: Duplex, head: Buffer) => void;

export interface Listener {
  /** `http://127.0.0.1:PORT`, or `http://localhost` for a unix socket. */
  readonly url: string;
  /** Every address bound, e.g. ['127.0.0.1:41234', '[::1]:41234'] or the socket path. */
  readonly addresses: string[];
  readonly port: number | undefined;
  readonly unixSocket: string | undefined;
  /** Requests being served right now. */
  inFlight(): number;
  /**
   * Stops accepting, waits up to `graceMs` for in-flight requests, then cuts what is left.
   * Idempotent.
   */
  close(graceMs: number): Promise<void>;
}

/**
 * Read buffers of 1 MiB let large responses stream with fewer, bigger writes: measured
 * 1.3-1.6 times the throughput of the 16 KiB default (docs/benchmarks.md).
 */
const HIGH_WATER_MARK = 1024 * 1024;
/** Auto-picked ports that turn out to be taken on ::1 are retried this many times. */
const PORT_ATTEMPTS = 5;

export async function listen(
  options: ListenOptions,
  onRequest: RequestHandler,
  onUpgrade: UpgradeHandler,
): Promise<Listener> {
  if (options.unixSocket !== undefined) return listenUnix(options, onRequest, onUpgrade);
  const addresses = loopbackAddresses(options.address);
  for (let attempt = 1; ; attempt++) {
    try {
      return await listenTcp(addresses, options, onRequest, onUpgrade);
    } catch (err) {
      const retry = (err as { retryPort?: boolean }).retryPort === true;
      if (!retry || attempt >= PORT_ATTEMPTS) throw err;
    }
  }
}

async function listenTcp(
  addresses: string[],
  options: ListenOptions,
  onRequest: RequestHandler,
  onUpgrade: UpgradeHandler,
): Promise<Listener> {
  const servers: http.Server[] = [];
  const bound: string[] = [];
  let port = options.port ?? 0;
  for (const address of addresses) {
    const server = http.createServer({ highWaterMark: HIGH_WATER_MARK });
    try {
      await bindServer(server, { host: address, port, ipv6Only: address.includes(':') });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const optional = addresses.length > 1 && address === '::1';
      // No IPv6 loopback on this host (containers often lack it): IPv4 alone is fine.
      if (optional && (code === 'EADDRNOTAVAIL' || code === 'EAFNOSUPPORT')) continue;
      await Promise.all(servers.map((s) => closeServer(s)));
      if (code === 'EADDRINUSE' && servers.length > 0 && !options.port) {
        throw Object.assign(new Error('port taken on ::1'), { retryPort: true });
      }
      throw bindError(err, address, port);
    }
    port = (server.address() as { port: number }).port;
    servers.push(server);
    bound.push(address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`);
  }

  const allowedHosts = [...bound];
  if (addresses.includes('127.0.0.1') || addresses.includes('::1')) {
    allowedHosts.push(`localhost:${port}`);
  }
  const guard = createGuard({ allowedHosts, secret: options.secret });
  const url = `http://${bound[0]}`;
  return wire(servers, guard, onRequest, onUpgrade, {
    url,
    addresses: bound,
    port,
    clock: options.clock,
  });
}

async function listenUnix(
  options: ListenOptions,
  onRequest: RequestHandler,
  onUpgrade: UpgradeHandler,
): Promise<Listener> {
  const path = options.unixSocket!;
  await clearStaleSocket(path);
  const server = http.createServer({ highWaterMark: HIGH_WATER_MARK });

  // The socket file takes the umask's mode at bind time: set it so no other user can ever
  // connect, even in the instant before the chmod below.
  const previous = process.umask(0o177);
  try {
    await bindServer(server, { path });
  } catch (err) {
    throw bindError(err, path, undefined);
  } finally {
    process.umask(previous);
  }
  await chmod(path, 0o600);
  const mode = (await stat(path)).mode & 0o777;
  if (mode !== 0o600) {
    await closeServer(server);
    throw new LogproxyError(ErrorCodes.INTERNAL, `${path}: could not restrict the socket to 0600`);
  }

  const guard = createGuard({ allowedHosts: [], secret: options.secret });
  const listener = wire([server], guard, onRequest, onUpgrade, {
    url: 'http://localhost',
    addresses: [path],
    port: undefined,
    unixSocket: path,
    clock: options.clock,
  });
  return {
    ...listener,
    close: async (graceMs) => {
      await listener.close(graceMs);
      await unlink(path).catch(() => undefined);
    },
  };
}

/** Refuses to replace anything but a dead socket left behind by a crashed tunnel. */
async function clearStaleSocket(path: string): Promise<void> {
  let info;
  try {
    info = await lstat(path);
  } catch {
    return;
  }
  if (!info.isSocket()) {
    throw new LogproxyError(
      ErrorCodes.USAGE,
      `${path} exists and is not a socket; choose another --unix-socket path`,
    );
  }
  const alive = await new Promise<boolean>((resolve) => {
    const probe = createConnection({ path });
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (alive) {
    throw new LogproxyError(
      ErrorCodes.USAGE,
      `${path} is in use by another process (another tunnel?); choose another --unix-socket path`,
    );
  }
  await unlink(path);
}

interface WireFacts {
  url: string;
  addresses: string[];
  port: number | undefined;
  unixSocket?: string;
  clock: Clock;
}

function wire(
  servers: http.Server[],
  guard: (req: http.IncomingMessage) => Rejection | undefined,
  onRequest: RequestHandler,
  onUpgrade: UpgradeHandler,
  facts: WireFacts,
): Listener {
  let active = 0;
  const upgraded = new Set<Duplex>();
  let closing: Promise<void> | undefined;
  const drained: Array<() => void> = [];

  for (const server of servers) {
    // Long streams (tail -f, large exports) must not be cut by the server's own timers.
    server.requestTimeout = 0;
    server.timeout = 0;
    server.on('request', (req, res) => {
      const rejection = guard(req);
      if (rejection) return reject(res, rejection);
      active += 1;
      res.once('close', () => {
        active -= 1;
        if (active === 0) drained.splice(0).forEach((fn) => fn());
      });
      onRequest(req, res);
    });
    server.on('upgrade', (req, socket: Duplex, head: Buffer) => {
      const rejection = guard(req);
      if (rejection) return rejectUpgrade(socket, rejection);
      // Upgraded sockets leave the HTTP server's books: track them to cut them at close.
      upgraded.add(socket);
      socket.once('close', () => upgraded.delete(socket));
      onUpgrade(req, socket, head);
    });
    server.on('clientError', (_err, socket: Duplex) => {
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
      else socket.destroy();
    });
  }

  const close = async (graceMs: number): Promise<void> => {
    for (const s of servers) {
      s.close();
      s.closeIdleConnections();
    }
    if (active > 0) {
      await new Promise<void>((resolve) => {
        const timer = facts.clock.setTimeout(resolve, graceMs);
        drained.push(() => {
          timer.cancel();
          resolve();
        });
      });
    }
    for (const s of servers) s.closeAllConnections();
    for (const socket of upgraded) socket.destroy();
  };

  return {
    url: facts.url,
    addresses: facts.addresses,
    port: facts.port,
    unixSocket: facts.unixSocket,
    inFlight: () => active,
    close: (graceMs) => (closing ??= close(graceMs)),
  };
}

function reject(res: http.ServerResponse, rejection: Rejection): void {
  res.writeHead(rejection.status, {
    'content-type': 'text/plain; charset=utf-8',
    'cache-control': 'no-store',
    connection: 'close',
    ...rejection.headers,
  });
  res.end(rejection.message);
}

function rejectUpgrade(socket: Duplex, rejection: Rejection): void {
  const reason = http.STATUS_CODES[rejection.status] ?? 'Refused';
  const body = Buffer.from(rejection.message);
  socket.end(
    `HTTP/1.1 ${rejection.status} ${reason}\r\nContent-Type: text/plain; charset=utf-8\r\n` +
      `Content-Length: ${body.length}\r\nConnection: close\r\n\r\n${rejection.message}`,
  );
}

function bindServer(server: http.Server, where: Record<string, unknown>): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    server.listen(where, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

function closeServer(server: http.Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

function bindError(err: unknown, address: string, port: number | undefined): LogproxyError {
  const code = (err as NodeJS.ErrnoException).code;
  const where = port === undefined ? address : `${address} port ${port}`;
  const why =
    code === 'EADDRINUSE'
      ? 'is already in use; pick another --port, or leave it out for a free one'
      : code === 'EACCES'
        ? 'is not allowed for this user'
        : `cannot be used (${code ?? String(err)})`;
  return new LogproxyError(ErrorCodes.USAGE, `${where} ${why}`, { cause: err });
}
