/**
 * `GET /v1/sessions/{id}/logs`: query parameters in, NDJSON out.
 *
 * Speed comes from three habits: lines are read in megabyte chunks (sources/file.ts), each
 * record is built by string concatenation (a line that needs no escaping is copied as it is,
 * and a JSON line becomes `fields` verbatim after one JSON.parse that validates it and finds
 * its level), and output goes out in large writes that wait for 'drain' when the client is
 * slower than the source, so a reader that stopped reading costs no memory.
 */
import type { ServerResponse } from 'node:http';
import type { EndReason, LogNotice } from '../protocol/api.js';
import type { Clock } from '../util/clock.js';
import { parseSince } from '../util/durations.js';
import { CursorSyntaxError, decodeCursor, type Cursor } from './cursor.js';
import type { LineBatch, LogReader } from './sources/index.js';
import type { LiveSession } from './types.js';

export interface LogQuery {
  follow: boolean;
  sinceMs?: number;
  limit?: number;
  grep?: RegExp;
  cursor?: Cursor;
}

export interface QueryError {
  parameter: string;
  detail: string;
}

/** Largest `limit` accepted: the last ten million lines is already more than anyone reads. */
export const MAX_LIMIT = 10_000_000;
/** Longest `grep` pattern accepted. */
export const MAX_GREP_LENGTH = 1000;
/** Output is written in pieces of about this many characters (bytes for raw batches). */
const FLUSH_CHARS = 128 * 1024;
const OUT_BUFFER_BYTES = 256 * 1024;
/** Reading logs is real use of the session, but the idle clock needs no more than this. */
const ACTIVITY_EVERY_MS = 1000;

const KNOWN_PARAMS = new Set(['follow', 'since', 'limit', 'grep', 'cursor']);

/**
 * A group that holds a quantifier and is itself quantified, like `(a+)+` or `(\w+\s?)*`:
 * the classic shape of exponential backtracking. A cheap guard, not a proof of safety.
 */
const NESTED_QUANTIFIER = /\((?:[^()\\]|\\.)*[+*}](?:[^()\\]|\\.)*\)[+*{]/;

function compileGrep(pattern: string): RegExp | QueryError {
  if (pattern.length > MAX_GREP_LENGTH) {
    return { parameter: 'grep', detail: `grep is longer than ${MAX_GREP_LENGTH} characters` };
  }
  if (NESTED_QUANTIFIER.test(pattern)) {
    return {
      parameter: 'grep',
      detail:
        `grep ${JSON.stringify(pattern)} nests quantifiers, which can take exponential ` +
        'time; simplify it (for example (a+)+ to a+)',
    };
  }
  const caseless = pattern.startsWith('(?i)');
  try {
    return new RegExp(caseless ? pattern.slice(4) : pattern, caseless ? 'i' : '');
  } catch (err) {
    const why = (err as Error).message.replace(/^Invalid regular expression: /, '');
    return {
      parameter: 'grep',
      detail: `grep ${JSON.stringify(pattern)} is not a valid regular expression: ${why}`,
    };
  }
}

/** Validates the query of a logs request; the first bad parameter is named. */
export function parseLogQuery(query: URLSearchParams, nowMs: number): LogQuery | QueryError {
  for (const key of query.keys()) {
    if (!KNOWN_PARAMS.has(key)) {
      return {
        parameter: key,
        detail: `unknown parameter "${key}"; use follow, since, limit, grep or cursor`,
      };
    }
  }
  const result: LogQuery = { follow: false };

  const follow = query.get('follow');
  if (follow !== null) {
    if (!['true', 'false', '1', '0', ''].includes(follow)) {
      return { parameter: 'follow', detail: `follow must be true or false, not "${follow}"` };
    }
    result.follow = follow === 'true' || follow === '1' || follow === '';
  }

  const since = query.get('since');
  if (since !== null) {
    const ms = parseSince(since, nowMs);
    if (ms === undefined) {
      return {
        parameter: 'since',
        detail: `since "${since}" is neither a duration (10m, 1h30m) nor an RFC 3339 time`,
      };
    }
    result.sinceMs = ms;
  }

  const limit = query.get('limit');
  if (limit !== null) {
    if (!/^\d{1,9}$/.test(limit) || Number(limit) > MAX_LIMIT) {
      return {
        parameter: 'limit',
        detail: `limit must be a whole number from 0 to ${MAX_LIMIT}, not "${limit}"`,
      };
    }
    result.limit = Number(limit);
  }

  const grep = query.get('grep');
  if (grep !== null) {
    const re = compileGrep(grep);
    if (!(re instanceof RegExp)) return re;
    result.grep = re;
  }

  const cursor = query.get('cursor');
  if (cursor !== null) {
    try {
      result.cursor = decodeCursor(cursor);
    } catch (err) {
      if (!(err instanceof CursorSyntaxError)) throw err;
      return {
        parameter: 'cursor',
        detail: `cursor is not one this gateway issued (${err.message}); pass a cursor from a record`,
      };
    }
  }
  return result;
}

// ---------- output ----------

// eslint-disable-next-line no-control-regex -- control characters are exactly what JSON escapes
const NEEDS_ESCAPE = /["\\\u0000-\u001f]/;
/** Writes a non-negative integer's decimal digits at `o`; returns the offset after them. */
function writeDecimal(out: Buffer, o: number, value: number): number {
  if (value < 0x80000000) {
    // Below 2 GiB the digits come from int32 arithmetic: no floating-point division or fmod.
    let digits = 1;
    for (let v = value; v >= 10; v = (v / 10) | 0) digits++;
    let v = value | 0;
    for (let k = o + digits - 1; k >= o; k--) {
      const q = (v / 10) | 0;
      out[k] = 48 + v - q * 10;
      v = q;
    }
    return o + digits;
  }
  let digits = 1;
  for (let v = value; v >= 10; v = Math.floor(v / 10)) digits++;
  let v = value;
  for (let k = o + digits - 1; k >= o; k--) {
    out[k] = 48 + (v % 10);
    v = Math.floor(v / 10);
  }
  return o + digits;
}

/** True for a byte a JSON string cannot hold as it is (a newline is the line's end). */
function unsafeByte(c: number): boolean {
  return (c < 32 && c !== 10) || c > 127 || c === 34 || c === 92;
}

/**
 * The offset of the first byte in buf[from, end) that a JSON string cannot hold as it is
 * (a control character other than newline, `"`, `\\`, or a byte of non-ASCII UTF-8), or
 * `end` when there is none. `words` views buf as 32-bit words from byte `wordBase` on: four
 * bytes are checked at once (SWAR), and only a word that may hold such a byte is looked at
 * byte by byte, so a chunk of plain lines costs about a quarter of a byte loop.
 */
function firstUnsafe(
  buf: Buffer,
  words: Int32Array,
  wordBase: number,
  from: number,
  end: number,
): number {
  let i = from;
  while (i < end && (i < wordBase || ((i - wordBase) & 3) !== 0)) {
    if (unsafeByte(buf[i]!)) return i;
    i++;
  }
  const lastWord = Math.min(words.length, (end - wordBase) >> 2);
  for (let j = (i - wordBase) >> 2; j < lastWord; j++) {
    const x = words[j]!;
    const q = x ^ 0x22222222;
    const b = x ^ 0x5c5c5c5c;
    // A byte below 0x20, a byte with its top bit set, a byte equal to `"` or to `\\`.
    const t = ((x - 0x20202020) & ~x) | x | ((q - 0x01010101) & ~q) | ((b - 0x01010101) & ~b);
    if ((t & 0x80808080) !== 0) {
      const k0 = wordBase + j * 4;
      for (let k = k0; k < k0 + 4; k++) if (unsafeByte(buf[k]!)) return k;
    }
  }
  for (i = Math.max(i, wordBase + lastWord * 4); i < end; i++) if (unsafeByte(buf[i]!)) return i;
  return end;
}

/** A JSON string literal; the common case (nothing to escape) is one concatenation. */
export function jsonString(s: string): string {
  return NEEDS_ESCAPE.test(s) ? JSON.stringify(s) : `"${s}"`;
}

const PINO_LEVELS: Record<number, string> = {
  10: 'trace',
  20: 'debug',
  30: 'info',
  40: 'warn',
  50: 'error',
  60: 'fatal',
};

/** `,"level":…,"fields":…` for a line holding a JSON object, else ''. */
function jsonParts(line: string): string {
  let fields: unknown;
  try {
    fields = JSON.parse(line);
  } catch {
    return '';
  }
  if (fields === null || typeof fields !== 'object' || Array.isArray(fields)) return '';
  const o = fields as Record<string, unknown>;
  const raw = o.level ?? o.lvl ?? o.severity;
  let level: string | undefined;
  if (typeof raw === 'string') level = raw.toLowerCase();
  else if (typeof raw === 'number') level = PINO_LEVELS[raw];
  // The line parsed as a JSON object, so its text is valid JSON for `fields` as it is.
  const levelPart = level === undefined ? '' : `,"level":${jsonString(level)}`;
  return `${levelPart},"fields":${line}`;
}

export interface StreamOptions {
  reader: LogReader;
  session: LiveSession;
  clock: Clock;
  grep?: RegExp;
  keepaliveMs: number;
  /** Aborted when the client goes away or the session ends. */
  signal: AbortSignal;
}

/** Serialises records and writes them with backpressure. */
class NdjsonWriter {
  private out = '';
  private bout: Buffer = Buffer.allocUnsafe(OUT_BUFFER_BYTES);
  private boutView = new DataView(this.bout.buffer, this.bout.byteOffset, this.bout.length);
  private blen = 0;
  private readonly spare: Buffer[] = [];
  private lastActivityMs: number;
  /** When something last went out: grep can hide data for longer than the keepalive period. */
  lastWriteMs: number;

  constructor(
    private readonly res: ServerResponse,
    private readonly options: StreamOptions,
  ) {
    this.lastActivityMs = options.clock.now();
    this.lastWriteMs = options.clock.now();
  }

  /**
   * Writes the batch's lines (those grep keeps). Returns the cursor after the last line it
   * got to when it stopped early because the client left or the session ended, else null.
   */
  async writeBatch(batch: LineBatch): Promise<string | null> {
    if (batch.raw) return this.writeRaw(batch, batch.raw);
    const { grep, signal } = this.options;
    const head = `{"ts":`;
    const sourcePart = `,"source":${jsonString(batch.source)},"line":`;
    const cursorPart = `,"cursor":"${batch.cursorPrefix}`;
    const sharedTs = batch.ts === undefined ? '' : `"${batch.ts}"`;
    const { lines, positions, tsList } = batch;
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!;
      if (grep && !grep.test(line)) continue;
      const ts = tsList ? `"${tsList[i]}"` : sharedTs;
      const extra = line.charCodeAt(0) === 123 /* { */ ? jsonParts(line) : '';
      this.out +=
        head + ts + sourcePart + jsonString(line) + cursorPart + positions[i] + '"' + extra + '}\n';
      if (this.out.length >= FLUSH_CHARS) {
        await this.flush();
        if (signal.aborted) return batch.cursorPrefix + String(positions[i]);
      }
    }
    await this.flush();
    return null;
  }

  /**
   * The fast path for lines read from files: plain ASCII lines are copied byte for byte
   * between a precomputed head and cursor prefix; only lines with something to escape,
   * non-ASCII text or a JSON object are turned into strings.
   */
  private async writeRaw(batch: LineBatch, raw: NonNullable<LineBatch['raw']>) {
    const { grep, signal } = this.options;
    const { buf, starts, ends } = raw;
    const { positions } = batch;
    const head = Buffer.from(
      `{"ts":"${batch.ts}","source":${jsonString(batch.source)},"line":`,
      'utf8',
    );
    const mid = Buffer.from(`,"cursor":"${batch.cursorPrefix}`, 'utf8');
    const wordBase = (4 - (buf.byteOffset & 3)) & 3;
    const words = new Int32Array(
      buf.buffer,
      buf.byteOffset + wordBase,
      Math.max(0, (buf.length - wordBase) >> 2),
    );
    const view = new DataView(buf.buffer, buf.byteOffset, buf.length);
    const scanEnd = ends.length > 0 ? ends[ends.length - 1]! : 0;
    // The first byte at or after `unsafeFrom` that needs escaping: lines before it need none.
    let unsafeAt = -1;
    for (let i = 0; i < starts.length; i++) {
      const start = starts[i]!;
      const end = ends[i]!;
      const isJson = buf[start] === 123; /* { */
      let text: string | undefined;
      if (grep) {
        text = buf.toString('utf8', start, end);
        if (!grep.test(text)) continue;
      }
      if (unsafeAt < start) unsafeAt = firstUnsafe(buf, words, wordBase, start, scanEnd);

      if (!isJson && unsafeAt >= end) {
        this.copyPlain(head, mid, view, start, end, positions[i]!);
      } else {
        text ??= buf.toString('utf8', start, end);
        const quoted = jsonString(text);
        const extra = isJson ? jsonParts(text) : '';
        const need =
          head.length + mid.length + Buffer.byteLength(quoted) + Buffer.byteLength(extra) + 24;
        this.reserve(need);
        const out = this.bout;
        let o = this.blen;
        out.set(head, o);
        o += head.length;
        o += out.write(quoted, o, 'utf8');
        out.set(mid, o);
        o += mid.length;
        o = writeDecimal(out, o, positions[i]!);
        out[o++] = 34;
        if (extra) o += out.write(extra, o, 'utf8');
        out[o++] = 125;
        out[o++] = 10;
        this.blen = o;
      }

      if (this.blen >= OUT_BUFFER_BYTES - 4096) {
        await this.flush();
        if (signal.aborted) return batch.cursorPrefix + String(positions[i]);
      }
    }
    await this.flush();
    return null;
  }

  /**
   * Copies a line that is ASCII without control characters, `"` or `\\` (valid in a JSON
   * string as it is) into the output with its record around it, four bytes at a time
   * (DataView reads and writes compile to plain loads and stores; `Buffer.copy` costs more
   * in call overhead than it saves on 100 bytes).
   */
  private copyPlain(
    head: Buffer,
    mid: Buffer,
    src: DataView,
    start: number,
    end: number,
    position: number,
  ): void {
    this.reserve(head.length + mid.length + (end - start) + 24);
    const out = this.bout;
    const view = this.boutView;
    let o = this.blen;
    out.set(head, o);
    o += head.length;
    out[o++] = 34;
    let k = start;
    for (; k + 4 <= end; k += 4, o += 4) view.setInt32(o, src.getInt32(k, true), true);
    for (; k < end; k++) out[o++] = src.getUint8(k);
    out[o++] = 34;
    out.set(mid, o);
    o += mid.length;
    o = writeDecimal(out, o, position);
    out[o++] = 34;
    out[o++] = 125;
    out[o++] = 10;
    this.blen = o;
  }

  /** Makes room for `bytes` more in the output buffer, flushing what is there if needed. */
  private reserve(bytes: number): void {
    if (this.blen + bytes <= this.bout.length) return;
    if (this.blen > 0) this.pushBuffer();
    if (bytes > this.bout.length) this.setOut(Buffer.allocUnsafe(bytes));
  }

  private setOut(buf: Buffer): void {
    this.bout = buf;
    this.boutView = new DataView(buf.buffer, buf.byteOffset, buf.length);
  }

  /** Hands the filled part of the output buffer to the response (without waiting). */
  private pushBuffer(): boolean {
    const full = this.bout;
    const chunk = full.subarray(0, this.blen);
    this.setOut(this.spare.pop() ?? Buffer.allocUnsafe(OUT_BUFFER_BYTES));
    this.blen = 0;
    // Once the socket has taken the bytes the buffer can be filled again: fewer big
    // allocations, less garbage collection.
    return this.res.write(chunk, () => {
      if (full.length === OUT_BUFFER_BYTES && this.spare.length < 4) this.spare.push(full);
    });
  }

  async writeNotice(notice: LogNotice): Promise<void> {
    this.out += JSON.stringify(notice) + '\n';
    // Keepalives and other notices are the gateway talking, not the person reading logs: a
    // quiet `tail -f` must still reach its idle timeout.
    await this.flush({ logData: false });
  }

  /** Writes what is buffered; waits while the client is not reading. */
  async flush({ logData = true }: { logData?: boolean } = {}): Promise<void> {
    if (this.out === '' && this.blen === 0) return;
    if (logData) this.noteActivity();
    this.lastWriteMs = this.options.clock.now();
    let ok = true;
    if (this.blen > 0) ok = this.pushBuffer();
    if (this.out !== '') {
      const chunk = this.out;
      this.out = '';
      ok = this.res.write(chunk) && ok;
    }
    if (!ok) await this.drained();
  }

  private drained(): Promise<void> {
    const { res } = this;
    const { signal } = this.options;
    if (signal.aborted || res.destroyed) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        res.off('drain', done);
        res.off('close', done);
        signal.removeEventListener('abort', done);
        resolve();
      };
      res.on('drain', done);
      res.on('close', done);
      signal.addEventListener('abort', done, { once: true });
    });
  }

  private noteActivity(): void {
    const now = this.options.clock.now();
    if (now - this.lastActivityMs < ACTIVITY_EVERY_MS) return;
    this.lastActivityMs = now;
    this.options.session.recordActivity();
  }
}

/**
 * Streams records until the reader ends, the client leaves or the session ends (then a
 * `session_ended` notice is the last record). Resolves when the response is finished.
 */
export async function streamLogs(res: ServerResponse, options: StreamOptions): Promise<void> {
  const { reader, session, clock, keepaliveMs, signal } = options;
  const writer = new NdjsonWriter(res, options);
  const isoNow = (): string => new Date(clock.now()).toISOString();

  // Where a new request should resume if this one stops now.
  let resumeCursor = reader.cursor();
  while (!signal.aborted) {
    const quietMs = clock.now() - writer.lastWriteMs;
    const event = await reader.next(Math.max(1, keepaliveMs - quietMs));
    if (event === null || signal.aborted) break;
    if (event.kind === 'lines') {
      const stoppedAt = await writer.writeBatch(event);
      if (stoppedAt !== null) {
        resumeCursor = stoppedAt;
        break;
      }
      if (event.raw) reader.recycle?.(event.raw.buf); // every byte was copied out
    } else if (event.kind === 'notice') {
      await writer.writeNotice({ ...event.notice, cursor: event.notice.cursor ?? reader.cursor() });
    }
    if (event.kind === 'idle' || clock.now() - writer.lastWriteMs >= keepaliveMs) {
      await writer.writeNotice({ notice: 'keepalive', ts: isoNow(), cursor: reader.cursor() });
    }
    resumeCursor = reader.cursor();
  }

  if (session.signal.aborted && !res.destroyed) {
    const reason = session.signal.reason as EndReason;
    const notice: LogNotice = {
      notice: 'session_ended',
      ts: isoNow(),
      reason,
      detail: `the session ended (${reason}); resume from this cursor in a new session`,
      cursor: resumeCursor,
    };
    res.write(JSON.stringify(notice) + '\n');
  }
  if (!res.destroyed) res.end();
}
