/**
 * Turns the gateway's NDJSON log stream into what `logproxy tail` writes on stdout, a batch at
 * a time: `raw` (each line as written), `json` (each log record as one JSON object, for jq)
 * or `text` (time, source, level, line, for people). Notices (data lost, session ended,
 * keepalive) never reach the output: they come back separately for stderr.
 *
 * Speed matters here (`tail -o raw` aims at a million lines a second), so records are not run
 * through JSON.parse: a small scanner walks the object's top-level keys and keeps the spans
 * of the few values a format needs. A string value without escapes is taken as a slice of
 * the input; only values with escapes (and the rare notice) go through JSON.parse.
 */
import type { LogNotice, LogRecord } from '../protocol/api.js';

export type OutputFormat = 'text' | 'json' | 'raw';

export const OUTPUT_FORMATS: readonly OutputFormat[] = ['text', 'json', 'raw'];

/** Wraps text in a style (colour) for a level; returns undefined for "leave it plain". */
export type LevelStyler = (level: string) => ((text: string) => string) | undefined;

export interface FormatOptions {
  format: OutputFormat;
  /** `text`: the record's full RFC 3339 time instead of the local HH:MM:SS.mmm. */
  timestamps?: boolean;
  /** `text`: colour by level. The CLI passes one only when stdout may carry colour. */
  style?: LevelStyler;
}

/** What one batch of complete NDJSON lines gave. */
export interface FormattedBatch {
  /** Formatted log records, each ending in a newline; '' when none. */
  output: string;
  /** Log records in `output`. */
  records: number;
  /** Cursor of the last record or notice that carried one; resume after it. */
  lastCursor: string | undefined;
  /** Notices, in stream order, fully parsed. */
  notices: LogNotice[];
}

/** The stream carried something that is not a log record or notice. */
export class StreamSyntaxError extends Error {
  constructor(
    message: string,
    readonly sample: string,
  ) {
    super(message);
    this.name = 'StreamSyntaxError';
  }
}

// ---------- scanner ----------

/**
 * Forward-only search for one pattern in a batch. Each record asks for its keys in order, so
 * remembering where the pattern next occurs keeps a batch's scanning linear even for a key
 * that no record has (a plain file's records have no `level`).
 */
class Finder {
  private from = 0;
  private at = -2;

  constructor(
    private readonly text: string,
    private readonly pattern: string,
  ) {}

  /** Index of the first occurrence at or after `from`, or -1. */
  next(from: number): number {
    if (this.at === -2 || from < this.from || (this.at !== -1 && this.at < from)) {
      this.from = from;
      this.at = this.text.indexOf(this.pattern, from);
    }
    return this.at;
  }
}

const BACKSLASH = 92;
const QUOTE = 34;

/**
 * The spans of a record's string values, found by key. The gateway writes records with
 * JSON.stringify: no whitespace, and a `"` inside a string value is always escaped, so
 * `"line":"` can only be a key. It can, though, be a key inside `fields` (a JSON log line with
 * its own `line` field): a key found after `"fields":` is not trusted and the record goes
 * through JSON.parse instead.
 */
class Scanner {
  private readonly line: Finder;
  private readonly cursor: Finder;
  private readonly ts: Finder;
  private readonly source: Finder;
  private readonly level: Finder;
  private readonly fields: Finder;
  private readonly backslash: Finder;

  constructor(private readonly text: string) {
    this.line = new Finder(text, '"line":"');
    this.cursor = new Finder(text, '"cursor":"');
    this.ts = new Finder(text, '"ts":"');
    this.source = new Finder(text, '"source":"');
    this.level = new Finder(text, '"level":"');
    this.fields = new Finder(text, '"fields":');
    this.backslash = new Finder(text, '\\');
  }

  /** Where `"fields":` starts in the line [a, b), or b when absent. */
  fieldsAt(a: number, b: number): number {
    const at = this.fields.next(a);
    return at === -1 || at >= b ? b : at;
  }

  lineValue(a: number, limit: number): string | undefined {
    return this.value(this.line, 8, a, limit);
  }
  cursorValue(a: number, limit: number): string | undefined {
    return this.value(this.cursor, 10, a, limit);
  }
  tsValue(a: number, limit: number): string | undefined {
    return this.value(this.ts, 6, a, limit);
  }
  sourceValue(a: number, limit: number): string | undefined {
    return this.value(this.source, 10, a, limit);
  }
  levelValue(a: number, limit: number): string | undefined {
    return this.value(this.level, 9, a, limit);
  }

  /**
   * The string value of a key found in [a, limit), decoded; undefined when the key is not
   * there (or only after `limit`).
   */
  private value(finder: Finder, keyLength: number, a: number, limit: number): string | undefined {
    const at = finder.next(a);
    if (at === -1 || at >= limit) return undefined;
    const start = at + keyLength;
    const text = this.text;
    const quote = text.indexOf('"', start);
    if (quote === -1) return undefined;
    const bs = this.backslash.next(start);
    if (bs === -1 || bs > quote) return text.slice(start, quote);
    // Escapes: find the real end, then let JSON.parse decode them.
    let i = start;
    while (i < text.length) {
      const c = text.charCodeAt(i);
      if (c === QUOTE) break;
      i += c === BACKSLASH ? 2 : 1;
    }
    return JSON.parse(text.slice(start - 1, i + 1)) as string;
  }
}

// ---------- formatting ----------

interface RecordParts {
  ts: string | undefined;
  source: string | undefined;
  level: string | undefined;
  line: string;
}

/**
 * Formats a batch of complete NDJSON lines (`text` ends with a newline, or is empty). Throws
 * StreamSyntaxError on a line that is neither a log record nor a notice.
 */
export function formatBatch(text: string, options: FormatOptions): FormattedBatch {
  const scanner = new Scanner(text);
  const textLine = options.format === 'text' ? textWriter(options) : undefined;
  const notices: LogNotice[] = [];
  let output = '';
  let records = 0;
  // The cursor is needed only for the batch's last record: remember where that record is.
  let lastStart = -1;
  let lastEnd = -1;
  let lastLimit = -1;
  let lastCursor: string | undefined;

  for (let start = 0; start < text.length;) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    const a = start;
    start = end + 1;
    if (end === a) continue;
    if (text.charCodeAt(a) !== 123) throw syntaxError('is not a JSON object', text, a, end);

    const limit = scanner.fieldsAt(a, end);
    const line = scanner.lineValue(a, limit);
    if (line === undefined) {
      // A notice, or a record we cannot read the fast way: parse it properly.
      const value = parseLine(text, a, end);
      if (isNoticeValue(value)) {
        notices.push(value);
        if (value.cursor !== undefined) [lastStart, lastCursor] = [-1, value.cursor];
        continue;
      }
      const record = asRecord(value, text, a, end);
      output += formatParsed(record, options.format, textLine, text, a, end);
      records++;
      [lastStart, lastCursor] = [-1, record.cursor];
      continue;
    }

    if (options.format === 'raw') output += line + '\n';
    else if (options.format === 'json') output += text.slice(a, end) + '\n';
    else {
      const ts = scanner.tsValue(a, limit);
      const source = scanner.sourceValue(a, limit);
      const level = scanner.levelValue(a, limit);
      output += textLine!({ ts, source, level, line });
    }
    records++;
    [lastStart, lastEnd, lastLimit] = [a, end, limit];
  }

  if (lastStart >= 0) {
    lastCursor = scanner.cursorValue(lastStart, lastLimit);
    if (lastCursor === undefined) {
      lastCursor = asRecord(parseLine(text, lastStart, lastEnd), text, lastStart, lastEnd).cursor;
    }
  }
  return { output, records, lastCursor, notices };
}

function syntaxError(what: string, text: string, a: number, b: number): StreamSyntaxError {
  return new StreamSyntaxError(
    `the gateway sent a line that ${what}`,
    text.slice(a, Math.min(b, a + 200)),
  );
}

function parseLine(text: string, a: number, b: number): unknown {
  try {
    return JSON.parse(text.slice(a, b));
  } catch {
    throw syntaxError('is not JSON', text, a, b);
  }
}

function isNoticeValue(value: unknown): value is LogNotice {
  return (
    typeof value === 'object' && value !== null && typeof (value as LogNotice).notice === 'string'
  );
}

function asRecord(value: unknown, text: string, a: number, b: number): LogRecord {
  const r = value as LogRecord;
  if (
    typeof value !== 'object' ||
    value === null ||
    typeof r.line !== 'string' ||
    typeof r.cursor !== 'string'
  ) {
    throw syntaxError('is neither a log record nor a notice', text, a, b);
  }
  return r;
}

function formatParsed(
  record: LogRecord,
  format: OutputFormat,
  textLine: ((parts: RecordParts) => string) | undefined,
  text: string,
  a: number,
  b: number,
): string {
  if (format === 'raw') return record.line + '\n';
  if (format === 'json') return text.slice(a, b) + '\n';
  const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
  return textLine!({
    ts: str(record.ts),
    source: str(record.source),
    level: str(record.level),
    line: record.line,
  });
}

function textWriter(options: FormatOptions): (parts: RecordParts) => string {
  const style = options.style;
  const full = options.timestamps === true;
  return ({ ts, source, level, line }) => {
    const time = full ? (ts ?? '-') : shortTime(ts ?? '');
    const from = source === undefined ? '-' : baseName(source);
    if (level === undefined) return `${time} ${from} ${line}\n`;
    const label = level.toUpperCase().padEnd(5);
    const paint = style?.(level);
    if (!paint) return `${time} ${from} ${label} ${line}\n`;
    return `${time} ${from} ${paint(label)} ${paint(line)}\n`;
  };
}

/** Local wall-clock time of an RFC 3339 instant as HH:MM:SS.mmm; the input when unparsable. */
export function shortTime(ts: string): string {
  // The gateway writes `YYYY-MM-DDTHH:MM:SS.mmmZ`; consecutive records mostly share the
  // second, so the Date work is done once per second and the milliseconds are copied.
  if (ts.length === 24 && ts.charCodeAt(23) === 90 && ts.charCodeAt(19) === 46) {
    const second = ts.slice(0, 19);
    if (second !== cachedSecond) {
      const ms = Date.parse(`${second}Z`);
      if (Number.isNaN(ms)) return ts;
      cachedSecond = second;
      cachedClock = clockOf(new Date(ms));
    }
    return `${cachedClock}.${ts.slice(20, 23)}`;
  }
  const ms = Date.parse(ts);
  if (Number.isNaN(ms)) return ts || '-';
  const d = new Date(ms);
  return `${clockOf(d)}.${String(d.getMilliseconds()).padStart(3, '0')}`;
}

let cachedSecond = '';
let cachedClock = '';

function clockOf(d: Date): string {
  return `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
}

function pad2(n: number): string {
  return n < 10 ? `0${n}` : String(n);
}

/** `app.log` for `/var/log/app/app.log`; stream names without a slash stay as they are. */
function baseName(source: string): string {
  const slash = source.lastIndexOf('/');
  return slash < 0 || slash === source.length - 1 ? source : source.slice(slash + 1);
}

// ---------- bytes (raw and json) ----------

/** What one batch of complete NDJSON lines gave, as bytes for stdout. */
export interface ByteBatch {
  /** Formatted log records, each ending in a newline; empty when none. */
  output: Buffer;
  records: number;
  lastCursor: string | undefined;
  notices: LogNotice[];
}

const LINE_KEY = Buffer.from('"line":"');
const CURSOR_KEY = Buffer.from('"cursor":"');
const FIELDS_KEY = Buffer.from('"fields":');
const NEWLINE = 10;
const OPEN_BRACE = 123;
const EMPTY = Buffer.alloc(0);

/** Forward-only search in bytes: the Finder above, for a Buffer. */
class ByteFinder {
  private from = 0;
  private at = -2;

  constructor(
    private readonly buf: Buffer,
    private readonly end: number,
    private readonly pattern: Buffer | number,
  ) {}

  next(from: number): number {
    if (this.at === -2 || from < this.from || (this.at !== -1 && this.at < from)) {
      this.from = from;
      const at = this.buf.indexOf(this.pattern, from);
      this.at = at >= this.end ? -1 : at;
    }
    return this.at;
  }
}

/**
 * `raw` and `json` straight from the received bytes, without decoding them to a string: for
 * `raw` the bytes of a `line` value without escapes are copied to the output as they are (the
 * gateway writes UTF-8 JSON, so they are the line's UTF-8); a value with escapes is decoded by
 * JSON.parse. For `json` the records' bytes pass through; with no notice in the batch the
 * output is the input itself. `buf[0, end)` holds complete lines (it ends with a newline, or
 * end is 0). Same results as formatBatch; throws StreamSyntaxError the same way.
 */
export function formatBytes(buf: Buffer, end: number, format: 'raw' | 'json'): ByteBatch {
  const notices: LogNotice[] = [];
  const raw = format === 'raw';
  const lineKey = new ByteFinder(buf, end, LINE_KEY);
  const fieldsKey = new ByteFinder(buf, end, FIELDS_KEY);
  const backslash = new ByteFinder(buf, end, BACKSLASH);
  // raw: decoded lines are never longer than their records, so one buffer the size of the
  // input holds the output. json: allocated only when a notice must be cut out.
  let out: Buffer | undefined = raw ? Buffer.allocUnsafe(end) : undefined;
  let o = 0;
  /** json: start of the run of records not yet copied to `out`. */
  let run = 0;
  let records = 0;
  let lastStart = -1;
  let lastEnd = -1;
  let lastLimit = -1;
  let lastCursor: string | undefined;
  let keyOffset = -1;

  for (let a = 0; a < end;) {
    let e = buf.indexOf(NEWLINE, a);
    if (e < 0 || e >= end) e = end;
    const start = a;
    a = e + 1;
    if (e === start || buf[start] !== OPEN_BRACE) {
      if (e !== start) {
        const text = buf.toString('utf8', start, Math.min(e, start + 200));
        throw syntaxError('is not a JSON object', text, 0, text.length);
      }
      // An empty line: nothing to print.
      if (!raw) [out, o, run] = cut(buf, out, o, run, start, a);
      continue;
    }
    const f = fieldsKey.next(start);
    const limit = f === -1 || f >= e ? e : f;
    // Consecutive records mostly put `"line":"` at the same offset (same time format, same
    // source): try there before searching. A match before `fields` is the key (see Scanner).
    let k = start + keyOffset;
    if (keyOffset < 0 || k + LINE_KEY.length > limit || !startsWithLineKey(buf, k)) {
      k = lineKey.next(start);
      if (k !== -1 && k < limit) keyOffset = k - start;
      else k = -1;
    }
    if (k >= 0) {
      let plain = !raw;
      if (raw) {
        // The fast path: no backslash before the closing quote. Native searches and one
        // copy per line beat a JavaScript byte loop here (measured about 2x). An escape
        // sends the record to JSON.parse below.
        const from = k + LINE_KEY.length;
        const quote = buf.indexOf(QUOTE, from);
        if (quote !== -1 && quote < e) {
          const escape = backslash.next(from);
          if (escape === -1 || escape > quote) {
            out!.set(buf.subarray(from, quote), o);
            o += quote - from;
            out![o++] = NEWLINE;
            plain = true;
          }
        }
      }
      if (plain) {
        records++;
        lastStart = start;
        lastEnd = e;
        lastLimit = limit;
        continue;
      }
    }
    const text = buf.toString('utf8', start, e);
    const value = parseLine(text, 0, text.length);
    if (isNoticeValue(value)) {
      notices.push(value);
      if (value.cursor !== undefined) [lastStart, lastCursor] = [-1, value.cursor];
      if (!raw) [out, o, run] = cut(buf, out, o, run, start, a);
      continue;
    }
    const record = asRecord(value, text, 0, text.length);
    if (raw) {
      o += out!.write(record.line, o, 'utf8');
      out![o++] = NEWLINE;
    }
    records++;
    [lastStart, lastCursor] = [-1, record.cursor];
  }

  if (lastStart >= 0) {
    lastCursor = cursorAt(buf, lastStart, lastLimit);
    if (lastCursor === undefined) {
      const text = buf.toString('utf8', lastStart, lastEnd);
      lastCursor = asRecord(parseLine(text, 0, text.length), text, 0, text.length).cursor;
    }
  }
  let output: Buffer;
  if (raw) output = out!.subarray(0, o);
  else if (out === undefined) output = run === 0 && end > 0 ? buf.subarray(0, end) : EMPTY;
  else {
    o += buf.copy(out, o, run, end);
    output = out.subarray(0, o);
  }
  return { output, records, lastCursor, notices };
}

/** json: copies the records before [skipFrom, skipTo) to `out` and skips that line. */
function cut(
  buf: Buffer,
  out: Buffer | undefined,
  o: number,
  run: number,
  skipFrom: number,
  skipTo: number,
): [Buffer, number, number] {
  const target = out ?? Buffer.allocUnsafe(buf.length);
  const copied = buf.copy(target, o, run, skipFrom);
  return [target, o + copied, skipTo];
}

function startsWithLineKey(buf: Buffer, at: number): boolean {
  for (let i = 0; i < LINE_KEY.length; i++) if (buf[at + i] !== LINE_KEY[i]) return false;
  return true;
}

/**
 * The index of the closing quote of a JSON string whose content starts at `i`, when the
 * content has no escapes; -1 when it has (or the line ends first).
 */
function plainStringEnd(buf: Buffer, i: number, e: number): number {
  for (; i < e; i++) {
    const c = buf[i]!;
    if (c === QUOTE) return i;
    if (c === BACKSLASH) return -1;
  }
  return -1;
}

function cursorAt(buf: Buffer, a: number, limit: number): string | undefined {
  const k = buf.indexOf(CURSOR_KEY, a);
  if (k === -1 || k >= limit) return undefined;
  const valueEnd = plainStringEnd(buf, k + CURSOR_KEY.length, limit);
  return valueEnd < 0 ? undefined : buf.toString('utf8', k + CURSOR_KEY.length, valueEnd);
}
