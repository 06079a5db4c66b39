/**
 * What the log stream reads from: a source opened at a start position yields batches of
 * lines, notices, and "idle" when nothing arrived for a while. Every line carries the
 * position just after it; `cursorPrefix + position` is that line's cursor.
 */
import type { LogNotice } from '../../protocol/api.js';
import type { SourceConfig } from '../types.js';
import type { Clock } from '../../util/clock.js';
import type { Cursor } from '../cursor.js';
import { openFileSource } from './file.js';
import { openDemoSource } from './demo.js';

export interface LineBatch {
  kind: 'lines';
  /** The file's path or the stream's name. */
  source: string;
  /** The lines as text; empty when `raw` carries them. */
  lines: string[];
  /**
   * The lines as bytes (file sources): line i is buf[starts[i], ends[i]), without its
   * newline. The stream copies them straight into its output when they need no escaping.
   */
  raw?: { buf: Buffer; starts: number[]; ends: number[] };
  /** positions[i] is the position just after line i. */
  positions: number[];
  cursorPrefix: string;
  /** RFC 3339 time shared by the whole batch (when the gateway read it). */
  ts?: string;
  /** RFC 3339 time per line, when lines carry their own (demo). */
  tsList?: string[];
}

export interface NoticeEvent {
  kind: 'notice';
  notice: LogNotice;
}

/** Nothing arrived within the wait the caller allowed (time for a keepalive). */
export interface IdleEvent {
  kind: 'idle';
}

export type SourceEvent = LineBatch | NoticeEvent | IdleEvent;

export interface OpenOptions {
  /** Resume just after this cursor (already checked to be of this source's kind). */
  cursor?: Cursor;
  /** Epoch ms: skip lines older than this. */
  sinceMs?: number;
  /** Start with the last `limit` lines (those that `match`, when given). */
  limit?: number;
  /** The grep filter, so `limit` counts matching lines. */
  match?: (line: string) => boolean;
  follow: boolean;
  /** Aborting ends the reader: `next()` resolves null. */
  signal: AbortSignal;
}

export interface LogReader {
  /**
   * The next event. Resolves null at the end (not following and everything read) or once
   * the signal aborted. When following and nothing arrives for `maxWaitMs`, resolves idle.
   */
  next(maxWaitMs: number): Promise<SourceEvent | null>;
  /** Hands back a batch's `raw.buf` once nothing refers to it any more, for reuse. */
  recycle?(buf: Buffer): void;
  /** Cursor of the position after everything read so far, lines filtered out included. */
  cursor(): string;
  close(): Promise<void>;
}

export interface SourceOptions {
  clock: Clock;
  /** How often followed files are checked when fs.watch says nothing. */
  filePollMs: number;
  /** How long a file rotated away is still read after its last growth. */
  rotateGraceMs: number;
}

export const DEFAULT_SOURCE_OPTIONS = {
  filePollMs: 250,
  rotateGraceMs: 2000,
} as const;

/** Thrown by `open` when the cursor does not belong to this source. */
export class CursorMismatchError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CursorMismatchError';
  }
}

export function openSource(
  config: SourceConfig,
  options: OpenOptions,
  sourceOptions: SourceOptions,
): Promise<LogReader> {
  if (config.type === 'file') return openFileSource(config.paths, options, sourceOptions);
  if (config.type === 'demo') return openDemoSource(config, options, sourceOptions);
  throw new Error(`source type ${config.type} has no log stream`);
}
