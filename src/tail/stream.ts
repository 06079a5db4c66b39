/**
 * Reads `GET /v1/sessions/{id}/logs` and hands formatted batches to a writer, resuming after
 * every interruption from the cursor of the last record it handed over: a dropped connection,
 * a gateway restart, a refreshed token or a new session. Nothing is written twice, nothing is
 * skipped; when the gateway says data is gone, that comes out as an event.
 *
 * Silent like every core: it emits events and throws LogproxyErrors; the CLI prints.
 * Backpressure: the next chunk is read from the gateway only after `write` resolved, so a slow
 * reader of stdout slows the gateway's stream instead of growing this process.
 */
import type { Readable } from 'node:stream';
import type { EndReason, LogNotice } from '../protocol/api.js';
import type { StreamRequest } from './transport.js';
import type { Clock } from '../util/clock.js';
import { ErrorCodes, LogproxyError, isAbortError } from '../util/errors.js';
import {
  formatBatch,
  formatBytes,
  StreamSyntaxError,
  type ByteBatch,
  type FormatOptions,
  type FormattedBatch,
} from './format.js';
import {
  ReconnectPolicy,
  classifyFailure,
  gaveUpError,
  resumeParams,
  type LogQuery,
  type ReconnectOptions,
} from './resume.js';

/** The `fetch` of src/auth/http.ts (or any WHATWG fetch). */
export type FetchLike = (input: string, init?: RequestInit) => Promise<Response>;

/** Where the session to read comes from: a running tunnel's, or one tail opens itself. */
export interface SessionSource {
  /** The gateway's base URL and the session to read now; may wait while one is set up. */
  acquire(signal: AbortSignal): Promise<{ baseUrl: string; sessionId: string }>;
  token(signal: AbortSignal): Promise<string>;
  /** After a 401: a fresh access token. */
  refreshToken(signal: AbortSignal): Promise<string>;
  /**
   * The gateway says `sessionId` is over or unknown (`error` says why). Resolves once a new
   * session may be acquired; rejects with the final error when reading must stop.
   */
  lost(sessionId: string, error: LogproxyError, signal: AbortSignal): Promise<void>;
}

export type TailEvent =
  | { type: 'connected'; sessionId: string; resumed: boolean }
  | { type: 'reconnecting'; attempt: number; delayMs: number; error: unknown }
  | { type: 'data_lost'; notice: LogNotice }
  | { type: 'session_lost'; sessionId: string; error: LogproxyError };

export interface TailOptions {
  fetch: FetchLike;
  /**
   * The faster transport for the stream (transport.ts: undici `request()`, Node stream body);
   * without it, `fetch`.
   */
  request?: StreamRequest;
  session: SessionSource;
  query: LogQuery;
  format: FormatOptions;
  /** Writes one batch; resolves when more may be written (stdout drained). */
  write(chunk: string | Uint8Array): Promise<void>;
  clock: Clock;
  signal: AbortSignal;
  onEvent?: (event: TailEvent) => void;
  reconnect?: ReconnectOptions;
  /** Start after this cursor (as if it had been written already). */
  cursor?: string;
}

export interface TailResult {
  /** Log records written. */
  records: number;
  /** Cursor of the last thing written; resume here. */
  cursor: string | undefined;
}

type ReadOutcome =
  /** Without follow: the gateway sent everything that matched. */
  | { kind: 'complete' }
  /** The gateway ended the session and said so in the stream. */
  | { kind: 'session_ended'; notice: LogNotice }
  /** A follow stream closed without saying why: reconnect. */
  | { kind: 'closed' };

/**
 * Tails until the stream is complete (without follow), the signal aborts, or a failure that
 * retrying cannot fix. Rejects with a LogproxyError (or the abort reason).
 */
export async function tailLogs(options: TailOptions): Promise<TailResult> {
  const { session, signal, clock } = options;
  const state = { records: 0, cursor: options.cursor, connected: false };
  const policy = new ReconnectPolicy(clock, options.reconnect);
  let refreshes = 0;
  let lastError: unknown;

  for (;;) {
    signal.throwIfAborted();
    let sessionId: string | undefined;
    try {
      const current = await session.acquire(signal);
      sessionId = current.sessionId;
      const outcome = await readOnce(options, current, state, () => {
        policy.succeeded();
        refreshes = 0;
      });
      if (outcome.kind === 'complete') return { records: state.records, cursor: state.cursor };
      if (outcome.kind === 'session_ended') {
        throw sessionEndedError(outcome.notice, sessionId);
      }
      throw new LogproxyError(ErrorCodes.UNREACHABLE, 'the gateway closed the log stream', {
        retryable: true,
      });
    } catch (err) {
      if (signal.aborted) throw signal.reason ?? err;
      lastError = err;
      const action = classifyFailure(err);
      if (action === 'fatal') throw describeFatal(err, options.query);

      if (action === 'refresh') {
        // One refresh per 401; a second 401 with a fresh token means the token is not the
        // problem, and retrying would loop.
        if (refreshes > 0) throw err;
        refreshes += 1;
        await session.refreshToken(signal);
        continue;
      }

      // Getting a session failed in a way a new session cannot fix: the source's final word.
      if (action === 'session' && sessionId === undefined) throw err;
      if (action === 'session') {
        const error = err as LogproxyError;
        const lostId: string = sessionId as string;
        // Said only once a new session may follow: a final end speaks for itself.
        await session.lost(lostId, error, signal);
        options.onEvent?.({ type: 'session_lost', sessionId: lostId, error });
        continue;
      }

      const delayMs = policy.nextDelay();
      if (delayMs === undefined) throw gaveUpError(policy.awayMs(), lastError);
      options.onEvent?.({ type: 'reconnecting', attempt: policy.failures, delayMs, error: err });
      await clock.sleep(delayMs, signal);
    }
  }
}

async function readOnce(
  options: TailOptions,
  current: { baseUrl: string; sessionId: string },
  state: { records: number; cursor: string | undefined; connected: boolean },
  onConnected: () => void,
): Promise<ReadOutcome> {
  const { signal, query } = options;
  const token = await options.session.token(signal);
  const base = current.baseUrl.replace(/\/+$/, '');
  const url =
    `${base}/v1/sessions/${encodeURIComponent(current.sessionId)}/logs?` +
    resumeParams(query, state.cursor).toString();
  const headers = { authorization: `Bearer ${token}`, accept: 'application/x-ndjson' };
  let reader: ChunkReader;
  if (options.request) {
    reader = new NodeBatchReader((await options.request(url, headers, signal)).body);
  } else {
    const response = await options.fetch(url, { headers, signal });
    if (!response.ok || !response.body) await throwForResponse(response);
    reader = new BatchReader(response.body!.getReader());
  }

  onConnected();
  options.onEvent?.({
    type: 'connected',
    sessionId: current.sessionId,
    resumed: state.connected,
  });
  state.connected = true;

  const splitter = new LineSplitter();
  let ended: LogNotice | undefined;
  try {
    for (;;) {
      const chunk = await reader.read();
      if (chunk === undefined) break;
      const lines = splitter.pushBytes(chunk);
      if (lines.length === 0) continue;
      const batch = formatChunk(lines, options.format);
      if (batch.output.length !== 0) await options.write(batch.output);
      state.records += batch.records;
      if (batch.lastCursor !== undefined) state.cursor = batch.lastCursor;
      for (const notice of batch.notices) {
        if (notice.notice === 'data_lost') options.onEvent?.({ type: 'data_lost', notice });
        else if (notice.notice === 'session_ended') ended = notice;
      }
    }
  } finally {
    reader.release();
  }

  if (ended) return { kind: 'session_ended', notice: ended };
  return query.follow ? { kind: 'closed' } : { kind: 'complete' };
}

interface ChunkReader {
  /** The next batch of bytes, or undefined at the end of the body. */
  read(): Promise<Uint8Array | undefined>;
  /** Stops reading: frees the connection when we leave early (error, abort). */
  release(): void;
}

/**
 * A Node stream body: each read takes everything already buffered (one `read()` call), so a
 * fast stream is formatted and written in large batches and a slow one as each chunk lands.
 */
class NodeBatchReader implements ChunkReader {
  constructor(private readonly body: Readable) {
    // An error with nobody waiting must not become an uncaught exception.
    body.on('error', () => undefined);
  }

  async read(): Promise<Uint8Array | undefined> {
    const body = this.body;
    for (;;) {
      const chunk = body.read() as Buffer | null;
      if (chunk !== null) return chunk;
      if (body.errored) throw body.errored;
      if (body.readableEnded) return undefined;
      if (body.destroyed) {
        // Closed before its end without an error: never mistake that for a complete stream.
        throw new LogproxyError(ErrorCodes.UNREACHABLE, 'the log stream was cut', {
          retryable: true,
        });
      }
      await new Promise<void>((resolve) => {
        const done = (): void => {
          body.off('readable', done);
          body.off('end', done);
          body.off('error', done);
          body.off('close', done);
          resolve();
        };
        body.on('readable', done);
        body.on('end', done);
        body.on('error', done);
        body.on('close', done);
      });
    }
  }

  release(): void {
    if (!this.body.readableEnded) this.body.destroy();
  }
}

/**
 * Reads one chunk, then whatever else is already queued (up to BATCH_BYTES), so a fast stream
 * is formatted and written in large batches while a slow one is written as each chunk lands.
 */
class BatchReader implements ChunkReader {
  /** A read that lost the "already there?" race: its chunk comes next. */
  private pending: Promise<ReadResult> | undefined;

  constructor(private readonly reader: ReadableStreamDefaultReader<Uint8Array>) {}

  /** The next batch of bytes, or undefined at the end of the body. */
  async read(): Promise<Uint8Array | undefined> {
    const first = await this.take();
    if (first.done) return undefined;
    let chunks: Uint8Array[] | undefined;
    let bytes = first.value.byteLength;
    while (bytes < BATCH_BYTES) {
      const next = this.take();
      const ready = await Promise.race([next, NOT_READY]);
      if (ready === NOT_READY_VALUE) {
        this.pending = next;
        break;
      }
      const result = ready as ReadResult;
      if (result.done) {
        this.pending = next;
        break;
      }
      (chunks ??= [first.value]).push(result.value);
      bytes += result.value.byteLength;
    }
    return chunks ? Buffer.concat(chunks, bytes) : first.value;
  }

  /** Stops reading: frees the connection when we leave early (error, abort). */
  release(): void {
    // A read still pending rejects on cancel; nobody waits for it any more.
    this.pending?.catch(() => undefined);
    this.reader.cancel().catch(() => undefined);
  }

  private take(): Promise<ReadResult> {
    const pending = this.pending;
    this.pending = undefined;
    return pending ?? (this.reader.read() as Promise<ReadResult>);
  }
}

type ReadResult = { done: true; value?: undefined } | { done: false; value: Uint8Array };

/** Up to this much already-received data is formatted and written as one batch. */
const BATCH_BYTES = 1 << 20;
const NOT_READY_VALUE = Symbol('not ready');
const NOT_READY = Promise.resolve(NOT_READY_VALUE);

/** Splits bytes into complete lines; a partial last line waits for the rest. */
export class LineSplitter {
  private carry: Buffer | undefined;

  /** Complete lines (each ending with a newline) as text, or '' when none is complete yet. */
  push(chunk: Uint8Array): string {
    return this.pushBytes(chunk).toString('utf8');
  }

  /**
   * Complete lines (each ending with a newline) as bytes, or an empty buffer when none is
   * complete yet. A newline byte is never part of a multi-byte UTF-8 character: cutting after
   * it keeps characters whole.
   */
  pushBytes(chunk: Uint8Array): Buffer {
    let buf = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    if (this.carry) {
      buf = Buffer.concat([this.carry, buf]);
      this.carry = undefined;
    }
    const last = buf.lastIndexOf(10);
    if (last < 0) {
      this.carry = Buffer.from(buf);
      return EMPTY;
    }
    if (last < buf.length - 1) this.carry = Buffer.from(buf.subarray(last + 1));
    return buf.subarray(0, last + 1);
  }

  /** Bytes of an incomplete last line. */
  get pending(): number {
    return this.carry?.length ?? 0;
  }
}

const EMPTY = Buffer.alloc(0);

/** Formats complete lines: raw and json straight from the bytes, text through a string. */
export function formatChunk(lines: Buffer, format: FormatOptions): ByteBatch | FormattedBatch {
  try {
    if (format.format === 'text') return formatBatch(lines.toString('utf8'), format);
    return formatBytes(lines, lines.length, format.format);
  } catch (err) {
    throw describeSyntaxError(err);
  }
}

function describeSyntaxError(err: unknown): unknown {
  if (err instanceof StreamSyntaxError) {
    return new LogproxyError(
      ErrorCodes.BAD_RESPONSE,
      `${err.message}: ${JSON.stringify(err.sample)}; is this a logproxy gateway?`,
      { cause: err },
    );
  }
  return err;
}

async function throwForResponse(response: Response): Promise<never> {
  const { expectOk } = await import('../auth/http.js');
  await expectOk(response, 'the gateway');
  throw new LogproxyError(ErrorCodes.BAD_RESPONSE, 'the gateway answered without a body', {
    retryable: true,
  });
}

function sessionEndedError(notice: LogNotice, sessionId: string): LogproxyError {
  const reason: EndReason = notice.reason ?? 'ended';
  const codes: Record<EndReason, (typeof ErrorCodes)[keyof typeof ErrorCodes]> = {
    idle_timeout: ErrorCodes.SESSION_IDLE_TIMEOUT,
    max_lifetime: ErrorCodes.SESSION_MAX_LIFETIME,
    revoked: ErrorCodes.SESSION_REVOKED,
    ended: ErrorCodes.SESSION_ENDED,
    client_lost: ErrorCodes.UNREACHABLE,
    gateway_shutdown: ErrorCodes.UNREACHABLE,
  };
  return new LogproxyError(codes[reason], `the session ended (${reason})`, {
    details: { reason, sessionId },
  });
}

/** A usage error for a pattern the gateway refused; other fatal errors pass through. */
function describeFatal(err: unknown, query: LogQuery): unknown {
  if (isAbortError(err)) return err;
  if (
    err instanceof LogproxyError &&
    err.code === ErrorCodes.USAGE &&
    err.details.parameter === 'grep' &&
    query.grep !== undefined
  ) {
    return new LogproxyError(
      ErrorCodes.USAGE,
      `--grep ${JSON.stringify(query.grep)} was refused by the gateway: ${err.message}`,
      { cause: err, details: err.details },
    );
  }
  return err;
}
