/**
 * The `file` source: files matching globs, read as `tail -F` reads them.
 *
 * - History is served file by file (oldest modification time first, so `app.log.1` comes
 *   before `app.log`), each from its start position to its end.
 * - Following, files are polled round-robin, one chunk at a time, so lines come in roughly
 *   the order they were written. fs.watch only wakes the poll early: it misses events on
 *   some file systems, so a poll every `filePollMs` is what we rely on.
 * - New files matching the globs are picked up and read from their start.
 * - Rotation by rename: the old inode stays open and is read to its end; once it has not
 *   grown for `rotateGraceMs`, a last line still lacking its newline is served and the file
 *   is dropped. The new file at the path is read from its start.
 * - Truncation (copytruncate): the file is read again from its start; bytes that were
 *   written but not yet served are reported in a `data_lost` notice.
 * - A last line without its newline is held until the newline arrives, so a cursor always
 *   points at a line boundary.
 */
import { createHash } from 'node:crypto';
import { open, readdir, stat, type FileHandle } from 'node:fs/promises';
import { watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import type { LogNotice } from '../../protocol/api.js';
import { fileCursorPrefix, encodeFileCursor, type FilePosition } from '../cursor.js';
import { expandGlobs, globWatchDirs, type GlobMatch } from './glob.js';
import {
  CursorMismatchError,
  type LineBatch,
  type LogReader,
  type OpenOptions,
  type SourceEvent,
  type SourceOptions,
} from './index.js';

/** Bytes read per fs.read: large reads are what makes a million lines a second possible. */
const CHUNK_BYTES = 1024 * 1024;
/** A line longer than this is served in pieces rather than held in memory without bound. */
const MAX_LINE_BYTES = 8 * 1024 * 1024;
/** The fingerprint covers the first line, up to this many bytes. */
const FINGERPRINT_BYTES = 1024;
/** Reading backwards for `limit`, this much at a time. */
const BACKWARD_CHUNK_BYTES = 64 * 1024;

interface Tracked extends FilePosition {
  fh: FileHandle;
  /** Next byte to read: offset + carry.length. */
  readPos: number;
  /** Bytes read after the last newline (a line still being written). */
  carry: Buffer | null;
  /** Size at the last look, to tell how much a truncation lost. */
  lastSize: number;
  mtimeMs: number;
  /** False once the file no longer matches the globs (rotated away or deleted). */
  inGlob: boolean;
  /** When a file out of the globs was last seen growing (clock ms). */
  lastGrowthMs: number;
  /** Still skipping lines older than `since`. */
  beforeSince: boolean;
  skippedSome: boolean;
}

function hashBytes(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('base64url').slice(0, 11);
}

/** Fingerprint of a file's first line (or first FINGERPRINT_BYTES); fpLen 0 when too short. */
function fingerprintOf(head: Buffer): { fpLen: number; fpHash: string } {
  const nl = head.indexOf(10);
  if (nl >= 0 && nl < FINGERPRINT_BYTES) {
    return { fpLen: nl + 1, fpHash: hashBytes(head.subarray(0, nl + 1)) };
  }
  if (head.length >= FINGERPRINT_BYTES) {
    return { fpLen: FINGERPRINT_BYTES, fpHash: hashBytes(head.subarray(0, FINGERPRINT_BYTES)) };
  }
  return { fpLen: 0, fpHash: '' };
}

async function readAt(fh: FileHandle, position: number, length: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(length);
  const { bytesRead } = await fh.read(buf, 0, length, position);
  return buf.subarray(0, bytesRead);
}

async function fingerprintFile(fh: FileHandle): Promise<{ fpLen: number; fpHash: string }> {
  return fingerprintOf(await readAt(fh, 0, FINGERPRINT_BYTES));
}

const LEADING_TIME =
  /^\[?(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?)/;
const JSON_TIME = /"(?:time|ts|timestamp|@timestamp)"\s*:\s*(?:"([^"]+)"|(\d{10,13}))/;

/** Best-effort time of a log line (leading timestamp or a JSON time field); NaN if none. */
export function lineTimeMs(line: string): number {
  if (line.startsWith('{')) {
    const m = JSON_TIME.exec(line);
    if (!m) return NaN;
    if (m[2]) return m[2].length === 13 ? Number(m[2]) : Number(m[2]) * 1000;
    return Date.parse(m[1]!);
  }
  const m = LEADING_TIME.exec(line);
  return m ? Date.parse(m[1]!.replace(' ', 'T').replace(',', '.')) : NaN;
}

/** Offset just after the last newline before `end` (0 when there is none). */
async function lastLineBoundary(fh: FileHandle, end: number): Promise<number> {
  let pos = end;
  while (pos > 0) {
    const len = Math.min(BACKWARD_CHUNK_BYTES, pos);
    const chunk = await readAt(fh, pos - len, len);
    const nl = chunk.lastIndexOf(10);
    if (nl >= 0) return pos - len + nl + 1;
    pos -= len;
  }
  return 0;
}

/**
 * Walks complete lines backwards from `end`, returning the start offset of the `count`-th
 * line that matches (or 0 when the file has fewer), and how many it found.
 */
async function findStartOfLast(
  fh: FileHandle,
  end: number,
  count: number,
  match: ((line: string) => boolean) | undefined,
): Promise<{ start: number; found: number }> {
  let found = 0;
  let pos = end;
  let tail: Buffer = Buffer.alloc(0); // the start of a line whose beginning is further back
  while (pos > 0) {
    const len = Math.min(BACKWARD_CHUNK_BYTES, pos);
    const chunk = Buffer.concat([await readAt(fh, pos - len, len), tail]);
    pos -= len;
    let lineEnd = chunk.length; // just after a newline
    for (;;) {
      const nl = lineEnd >= 2 ? chunk.lastIndexOf(10, lineEnd - 2) : -1;
      if (nl < 0 && pos > 0) {
        tail = chunk.subarray(0, lineEnd);
        break;
      }
      const lineStart = nl + 1;
      let textEnd = lineEnd - 1;
      if (textEnd > lineStart && chunk[textEnd - 1] === 13) textEnd--;
      if (!match || match(chunk.toString('utf8', lineStart, textEnd))) {
        found++;
        if (found === count) return { start: pos + lineStart, found };
      }
      lineEnd = lineStart;
      if (nl < 0) break;
    }
  }
  return { start: 0, found };
}

class FileReader implements LogReader {
  private tracked: Tracked[] = [];
  private current = 0;
  private historyDone = false;
  private pending: SourceEvent[] = [];
  private buf: Buffer = Buffer.allocUnsafe(CHUNK_BYTES);
  /** Read buffers the stream has finished with. */
  private spare: Buffer[] = [];
  private watchers: FSWatcher[] = [];
  private wake: (() => void) | null = null;
  private woken = false;
  /** Bumped when the set of files or a non-current position changes: cursors get rebuilt. */
  private version = 0;
  private prefixCache: { file: Tracked; version: number; prefix: string } | null = null;
  private closed = false;
  private lastRescanMs = 0;
  private started = false;

  constructor(
    private readonly patterns: readonly string[],
    private readonly options: OpenOptions,
    private readonly sourceOptions: SourceOptions,
  ) {}

  async start(): Promise<void> {
    const matches = await expandGlobs(this.patterns);
    matches.sort((a, b) => a.mtimeMs - b.mtimeMs || a.path.localeCompare(b.path));
    if (this.options.cursor?.kind === 'file') {
      await this.resume(this.options.cursor.files, matches);
    } else {
      for (const m of matches) await this.track(m, 0);
      if (this.options.limit !== undefined) await this.applyLimit(this.options.limit);
    }
    if (this.options.sinceMs !== undefined) await this.applySince(this.options.sinceMs);
    this.started = true;
    if (this.options.follow) this.startWatching();
    this.options.signal.addEventListener('abort', () => this.poke(), { once: true });
  }

  private async track(m: GlobMatch, offset: number, inGlob = true): Promise<Tracked | null> {
    let fh: FileHandle;
    try {
      fh = await open(m.path, 'r');
    } catch {
      return null; // vanished between listing and opening: the next rescan decides
    }
    const st = await fh.stat();
    if (st.ino !== m.ino || st.dev !== m.dev) {
      await fh.close(); // replaced in between; the next rescan picks the new one up
      return null;
    }
    const t: Tracked = {
      path: m.path,
      dev: m.dev,
      ino: m.ino,
      fpLen: 0,
      fpHash: '',
      offset,
      fh,
      readPos: offset,
      carry: null,
      lastSize: st.size,
      mtimeMs: st.mtimeMs,
      inGlob,
      lastGrowthMs: this.sourceOptions.clock.now(),
      // files that appear while following are new: all of them is after `since`
      beforeSince: this.options.sinceMs !== undefined && !this.started,
      skippedSome: false,
    };
    Object.assign(t, await fingerprintFile(fh));
    this.tracked.push(t);
    this.version++;
    return t;
  }

  /** Start at the last `limit` lines across all files, in history order. */
  private async applyLimit(limit: number): Promise<void> {
    let remaining = limit;
    for (let i = this.tracked.length - 1; i >= 0; i--) {
      const t = this.tracked[i]!;
      const end = await lastLineBoundary(t.fh, t.lastSize);
      if (remaining === 0) {
        t.offset = t.readPos = end;
        continue;
      }
      const { start, found } = await findStartOfLast(t.fh, end, remaining, this.options.match);
      remaining -= found;
      t.offset = t.readPos = start;
    }
  }

  /** Files not written since `since` are skipped whole; the others are filtered by line. */
  private async applySince(sinceMs: number): Promise<void> {
    for (const t of this.tracked) {
      if (t.mtimeMs < sinceMs) {
        const end = await lastLineBoundary(t.fh, t.lastSize);
        if (end > t.offset) t.offset = t.readPos = end;
        t.beforeSince = false;
      }
    }
  }

  /** Finds each file of a cursor again (by inode, also under a new name) and resumes it. */
  private async resume(positions: FilePosition[], matches: GlobMatch[]): Promise<void> {
    const byInode = new Map(matches.map((m) => [`${m.dev}:${m.ino}`, m]));
    const claimed = new Set<string>();
    for (const pos of positions) {
      const key = `${pos.dev}:${pos.ino}`;
      const found = byInode.get(key) ?? (await this.findByInode(pos));
      const t = found && !claimed.has(key) ? await this.track(found, 0, byInode.has(key)) : null;
      if (!t) {
        this.lost(pos, `${pos.path} is gone (rotated away or deleted)`);
        continue;
      }
      claimed.add(key);
      const sameFile = pos.fpLen === 0 || (t.fpLen === pos.fpLen && t.fpHash === pos.fpHash);
      if (!sameFile) {
        this.lost(pos, `${pos.path} was replaced or rewritten since the cursor`);
      } else if (t.lastSize < pos.offset) {
        this.lost(pos, `${pos.path} was truncated since the cursor`);
      } else {
        t.offset = t.readPos = pos.offset;
      }
      if (!t.inGlob && t.offset >= t.lastSize) await this.drop(t);
    }
    for (const m of matches) {
      if (!claimed.has(`${m.dev}:${m.ino}`)) await this.track(m, 0); // new since the cursor
    }
    // history order: files rotated away first, then by modification time
    this.tracked.sort((a, b) => Number(a.inGlob) - Number(b.inGlob) || a.mtimeMs - b.mtimeMs);
  }

  private async findByInode(pos: FilePosition): Promise<GlobMatch | undefined> {
    const dir = path.dirname(pos.path);
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      const p = path.join(dir, name);
      const st = await stat(p).catch(() => undefined);
      if (st?.isFile() && st.dev === pos.dev && st.ino === pos.ino) {
        return { path: p, dev: st.dev, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs };
      }
    }
    return undefined;
  }

  private lost(pos: FilePosition, detail: string, lostBytes?: number): void {
    const notice: LogNotice = {
      notice: 'data_lost',
      ts: new Date(this.sourceOptions.clock.now()).toISOString(),
      source: pos.path,
      detail,
    };
    if (lostBytes !== undefined) notice.lost_bytes = lostBytes;
    this.pending.push({ kind: 'notice', notice });
  }

  private startWatching(): void {
    const dirs = new Set(this.patterns.flatMap((p) => globWatchDirs(path.resolve(p))));
    for (const dir of dirs) {
      try {
        const w = watch(dir, { persistent: false }, () => this.poke());
        w.on('error', () => w.close());
        this.watchers.push(w);
      } catch {
        // no such directory yet, or no inotify: polling covers it
      }
    }
  }

  private poke(): void {
    this.woken = true;
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }

  async next(maxWaitMs: number): Promise<SourceEvent | null> {
    const deadline = this.sourceOptions.clock.now() + maxWaitMs;
    for (;;) {
      if (this.options.signal.aborted || this.closed) return null;
      const queued = this.pending.shift();
      if (queued) return queued;

      if (!this.historyDone) {
        const batch = await this.readHistory();
        if (batch) return batch;
        if (this.pending.length > 0) continue;
        this.historyDone = true;
        if (!this.options.follow) return null;
      }

      const now0 = this.sourceOptions.clock.now();
      if (now0 - this.lastRescanMs >= this.sourceOptions.filePollMs && (await this.rescan())) {
        continue;
      }
      const batch = await this.readAny();
      if (batch) return batch;
      if (await this.rescan()) continue;
      if (this.pending.length > 0) continue;

      const now = this.sourceOptions.clock.now();
      if (now >= deadline) return { kind: 'idle' };
      await this.waitForChange(Math.min(this.sourceOptions.filePollMs, deadline - now));
    }
  }

  /** History: the current file to its end, then the next. */
  private async readHistory(): Promise<LineBatch | null> {
    while (this.current < this.tracked.length) {
      const t = this.tracked[this.current]!;
      const batch = await this.readChunk(t);
      if (batch) return batch;
      if (this.pending.length > 0) return null;
      this.current++;
    }
    this.current = 0;
    return null;
  }

  /** Following: one chunk from the next file that has data, round-robin. */
  private async readAny(): Promise<LineBatch | null> {
    const n = this.tracked.length;
    for (let i = 0; i < n; i++) {
      const idx = (this.current + i) % n;
      const t = this.tracked[idx]!;
      const batch = await this.readChunk(t);
      if (batch) {
        this.current = (idx + 1) % n;
        return batch;
      }
    }
    return null;
  }

  private async waitForChange(ms: number): Promise<void> {
    if (this.woken) {
      this.woken = false;
      return;
    }
    await new Promise<void>((resolve) => {
      const timer = this.sourceOptions.clock.setTimeout(() => {
        this.wake = null;
        resolve();
      }, ms);
      this.wake = () => {
        timer.cancel();
        resolve();
      };
    });
    this.woken = false;
  }

  /** Reads what follows readPos and cuts it into complete lines; null when nothing new. */
  private async readChunk(t: Tracked): Promise<LineBatch | null> {
    for (;;) {
      const carryLen = t.carry?.length ?? 0;
      if (carryLen * 2 > this.buf.length) {
        this.buf = Buffer.allocUnsafe(Math.min(this.buf.length * 2, MAX_LINE_BYTES * 2));
      }
      const buf = this.buf;
      if (t.carry) t.carry.copy(buf, 0);
      const { bytesRead } = await t.fh.read(buf, carryLen, buf.length - carryLen, t.readPos);
      if (bytesRead === 0) return null;
      t.readPos += bytesRead;
      if (t.readPos > t.lastSize) t.lastSize = t.readPos;
      t.lastGrowthMs = this.sourceOptions.clock.now();

      const batch = this.cutLines(t, buf, carryLen + bytesRead);
      if (t.fpLen === 0 && t.offset > 0) Object.assign(t, await fingerprintFile(t.fh));
      if (batch.positions.length > 0) {
        batch.cursorPrefix = this.prefixFor(t);
        return batch;
      }
    }
  }

  /** Cuts buf[0, total) (which starts at t.offset) into lines; keeps the rest as carry. */
  private cutLines(t: Tracked, buf: Buffer, total: number): LineBatch {
    const base = t.offset;
    const starts: number[] = [];
    const ends: number[] = [];
    const positions: number[] = [];
    let start = 0;
    for (let nl = buf.indexOf(10, 0); nl >= 0 && nl < total; nl = buf.indexOf(10, start)) {
      const end = nl > start && buf[nl - 1] === 13 ? nl - 1 : nl;
      const lineStart = start;
      start = nl + 1;
      if (t.beforeSince && this.isBeforeSince(t, buf.toString('utf8', lineStart, end))) continue;
      starts.push(lineStart);
      ends.push(end);
      positions.push(base + start);
    }
    if (start === 0 && total >= MAX_LINE_BYTES) {
      // One enormous line: serve this much of it rather than hold it all.
      starts.push(0);
      ends.push(total);
      start = total;
      positions.push(base + start);
    }
    t.offset = base + start;
    // The lines keep this buffer; the next read gets a fresh one (cheaper than copying).
    const raw = { buf, starts, ends };
    t.carry = start < total ? Buffer.from(buf.subarray(start, total)) : null;
    this.buf = (buf.length === CHUNK_BYTES && this.spare.pop()) || Buffer.allocUnsafe(buf.length);
    return {
      kind: 'lines',
      source: t.path,
      lines: [],
      raw,
      positions,
      cursorPrefix: '',
      ts: new Date(this.sourceOptions.clock.now()).toISOString(),
    };
  }

  /**
   * `since` on files: a line with a timestamp older than since is skipped, and so are lines
   * without one that follow it (stack traces); the first line that is not skipped ends the
   * filtering for this file.
   */
  private isBeforeSince(t: Tracked, line: string): boolean {
    const ms = lineTimeMs(line);
    const skip = Number.isNaN(ms) ? t.skippedSome : ms < (this.options.sinceMs as number);
    if (skip) t.skippedSome = true;
    else t.beforeSince = false;
    return skip;
  }

  private prefixFor(t: Tracked): string {
    const c = this.prefixCache;
    if (c && c.file === t && c.version === this.version) return c.prefix;
    const prefix = fileCursorPrefix(this.tracked, this.tracked.indexOf(t));
    this.prefixCache = { file: t, version: this.version, prefix };
    return prefix;
  }

  /**
   * Looks at the globs and at every open file: new files, renames, rotation, truncation.
   * True when something changed that may have made new data readable.
   */
  private async rescan(): Promise<boolean> {
    let changed = false;
    this.lastRescanMs = this.sourceOptions.clock.now();
    const matches = await expandGlobs(this.patterns);
    const byInode = new Map(matches.map((m) => [`${m.dev}:${m.ino}`, m]));
    const now = this.sourceOptions.clock.now();

    for (const t of [...this.tracked]) {
      const m = byInode.get(`${t.dev}:${t.ino}`);
      byInode.delete(`${t.dev}:${t.ino}`);
      if (m && m.path !== t.path) {
        t.path = m.path;
        this.version++;
      }
      if (!m && t.inGlob) {
        // Rotated out of the globs: name it by where it went (app.log.1), if it is still there.
        const moved = await this.findByInode(t);
        if (moved && moved.path !== t.path) {
          t.path = moved.path;
          this.version++;
        }
      }
      t.inGlob = m !== undefined;
      const st = await t.fh.stat();
      if (st.size < t.readPos || (st.size !== t.lastSize && !(await this.sameStart(t)))) {
        this.restartTruncated(t, st.size);
        changed = true;
        continue;
      }
      t.lastSize = st.size;
      if (!t.inGlob && st.size <= t.readPos && now - t.lastGrowthMs >= this.rotateGraceMs()) {
        if (t.carry) this.pending.push(this.flushCarry(t));
        await this.drop(t);
        changed = true;
      }
    }

    for (const m of byInode.values()) {
      if (await this.track(m, 0)) changed = true;
    }
    return changed;
  }

  private rotateGraceMs(): number {
    return this.sourceOptions.rotateGraceMs;
  }

  private async sameStart(t: Tracked): Promise<boolean> {
    if (t.fpLen === 0) return true;
    const head = await readAt(t.fh, 0, t.fpLen);
    return head.length === t.fpLen && hashBytes(head) === t.fpHash;
  }

  private restartTruncated(t: Tracked, newSize: number): void {
    const unread = t.lastSize - t.offset;
    if (unread > 0) {
      this.lost(t, `${t.path} was truncated before ${unread} bytes were read`, unread);
    }
    t.offset = t.readPos = 0;
    t.carry = null;
    t.lastSize = newSize;
    t.fpLen = 0;
    t.fpHash = '';
    this.version++;
  }

  /** A file rotated away ends: its unterminated last line is served as it is. */
  private flushCarry(t: Tracked): LineBatch {
    const carry = t.carry!;
    const end =
      carry.length > 0 && carry[carry.length - 1] === 13 ? carry.length - 1 : carry.length;
    t.offset += carry.length;
    t.carry = null;
    return {
      kind: 'lines',
      source: t.path,
      lines: [carry.toString('utf8', 0, end)],
      positions: [t.offset],
      cursorPrefix: this.prefixFor(t),
      ts: new Date(this.sourceOptions.clock.now()).toISOString(),
    };
  }

  private async drop(t: Tracked): Promise<void> {
    const idx = this.tracked.indexOf(t);
    if (idx < 0) return;
    this.tracked.splice(idx, 1);
    if (this.current > idx) this.current--;
    this.version++;
    await t.fh.close().catch(() => undefined);
  }

  recycle(buf: Buffer): void {
    if (buf.length === CHUNK_BYTES && this.spare.length < 2) this.spare.push(buf);
  }

  cursor(): string {
    return encodeFileCursor(this.tracked);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.watchers) w.close();
    this.poke();
    await Promise.all(this.tracked.map((t) => t.fh.close().catch(() => undefined)));
  }
}

export async function openFileSource(
  patterns: readonly string[],
  options: OpenOptions,
  sourceOptions: SourceOptions,
): Promise<LogReader> {
  if (options.cursor && options.cursor.kind !== 'file') {
    throw new CursorMismatchError('the cursor belongs to a demo source, not to these files');
  }
  const reader = new FileReader(patterns, options, sourceOptions);
  try {
    await reader.start();
  } catch (err) {
    await reader.close();
    throw err;
  }
  return reader;
}
