/**
 * The data plane: what a live session is for. `GET .../logs` streams a file or demo source
 * as NDJSON (log-stream.ts); `.../forward/...` passes requests and WebSockets to an http
 * source (forward.ts). The server has already checked the token and found the session.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Clock } from '../util/clock.js';
import { Forwarder, sessionEndedProblem } from './forward.js';
import { parseLogQuery, streamLogs } from './log-stream.js';
import { problem, sendProblem } from './problems.js';
import {
  CursorMismatchError,
  DEFAULT_SOURCE_OPTIONS,
  openSource,
  type LogReader,
  type OpenOptions,
} from './sources/index.js';
import type { DataPlane, GatewayConfig, LiveSession, TargetConfig } from './types.js';

/** Quiet followers get a keepalive this often, so clients can tell a quiet source from a dead link. */
export const DEFAULT_KEEPALIVE_MS = 15_000;
/** After the last record of an ended session, a client that does not read is cut after this. */
const END_GRACE_MS = 5_000;

export interface DataPlaneDeps {
  clock: Clock;
  logger?: { info(o: object, m: string): void; warn(o: object, m: string): void };
  /** Tuning, mostly for tests; the defaults suit production. */
  keepaliveMs?: number;
  filePollMs?: number;
  rotateGraceMs?: number;
}

export function createDataPlane(config: GatewayConfig, deps: DataPlaneDeps): DataPlane {
  const { clock, logger } = deps;
  const keepaliveMs = deps.keepaliveMs ?? DEFAULT_KEEPALIVE_MS;
  const sourceOptions = {
    clock,
    filePollMs: deps.filePollMs ?? DEFAULT_SOURCE_OPTIONS.filePollMs,
    rotateGraceMs: deps.rotateGraceMs ?? DEFAULT_SOURCE_OPTIONS.rotateGraceMs,
  };
  const forwarder = new Forwarder(clock);
  const open = new Set<ServerResponse>();
  void config; // sources are per target and arrive with each call

  async function handleLogs(
    req: IncomingMessage,
    res: ServerResponse,
    session: LiveSession,
    target: TargetConfig,
    query: URLSearchParams,
  ): Promise<void> {
    if (target.source.type === 'http') {
      const detail = `target ${target.name} forwards to an HTTP API; use /v1/sessions/{id}/forward/`;
      return sendProblem(res, problem('notSupported', 400, detail));
    }
    const parsed = parseLogQuery(query, clock.now());
    if ('parameter' in parsed) {
      return sendProblem(
        res,
        problem('invalidParameter', 400, parsed.detail, { parameter: parsed.parameter }),
      );
    }
    if (session.signal.aborted) return sendProblem(res, sessionEndedProblem(session));
    session.recordActivity();

    // Stops the reader when the client leaves or the session ends.
    const stop = new AbortController();
    const onSessionEnd = (): void => stop.abort(session.signal.reason);
    session.signal.addEventListener('abort', onSessionEnd, { once: true });
    const onClose = (): void => stop.abort(new Error('client went away'));
    res.on('close', onClose);

    // A cursor says exactly where to start: since and limit only apply without one.
    const options: OpenOptions = { follow: parsed.follow, signal: stop.signal };
    if (parsed.cursor) options.cursor = parsed.cursor;
    else {
      if (parsed.sinceMs !== undefined) options.sinceMs = parsed.sinceMs;
      if (parsed.limit !== undefined) options.limit = parsed.limit;
    }
    if (parsed.grep) {
      const grep = parsed.grep;
      options.match = (line) => grep.test(line);
    }

    let reader: LogReader | undefined;
    try {
      reader = await openSource(target.source, options, sourceOptions);
      res.writeHead(200, {
        'content-type': 'application/x-ndjson',
        'cache-control': 'no-store',
        'x-content-type-options': 'nosniff',
      });
      res.flushHeaders();
      open.add(res);
      await streamLogs(res, {
        reader,
        session,
        clock,
        keepaliveMs,
        signal: stop.signal,
        ...(parsed.grep ? { grep: parsed.grep } : {}),
      });
      if (session.signal.aborted && !res.destroyed) {
        clock.setTimeout(() => res.destroy(), END_GRACE_MS);
      }
    } catch (err) {
      if (err instanceof CursorMismatchError) {
        const detail = `cursor does not fit target ${target.name}: ${err.message}`;
        return sendProblem(res, problem('invalidParameter', 400, detail, { parameter: 'cursor' }));
      }
      logger?.warn(
        { err: String(err), session: session.id, target: target.name },
        'log stream failed',
      );
      if (res.headersSent) res.destroy();
      else sendProblem(res, problem('internal', 500, 'the log source could not be read'));
    } finally {
      open.delete(res);
      session.signal.removeEventListener('abort', onSessionEnd);
      res.off('close', onClose);
      await reader?.close();
    }
  }

  return {
    handleLogs,
    handleForward: (req, res, session, target, rest) =>
      forwarder.handle(req, res, session, target, rest),
    handleUpgrade: (req, socket: Duplex, head, session, target, rest) =>
      forwarder.upgrade(req, socket, head, session, target, rest),
    async close() {
      for (const res of open) res.destroy();
      await forwarder.close();
    },
  };
}
