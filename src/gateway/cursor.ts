/**
 * Cursors of the log stream: opaque to clients, exact for us.
 *
 * A cursor names the position just after one record, so resuming from it continues with
 * exactly the next record, whether the client reconnects, the gateway restarted or a new
 * session reads the same target.
 *
 * - File sources: `f2.<entries>.<k>.<offset>`. The entries (joined by `;`) are every file the
 *   stream tracks, each `dev,ino,fpLen,fpHash,offset,path` (numbers in base 36, the path in
 *   base64url); entry `k` is the file the record came from and `<offset>` (decimal: the
 *   byte after its newline) overrides that entry's offset. Splitting it this way lets the
 *   stream build a record's cursor with one string concatenation: the entries change only
 *   when the stream moves to another file. Compact, because every record carries one.
 *   `fpLen`/`fpHash` fingerprint the file's first line, so a reused inode or a file that was
 *   truncated and rewritten is not mistaken for the file the cursor was made in.
 * - Demo sources: `d1.<seed>.<n>`, where n is the sequence number of the next line.
 */

export interface FilePosition {
  /** Path when the cursor was made; the file may since have been renamed. */
  path: string;
  dev: number;
  ino: number;
  /** Bytes of the file's start covered by the fingerprint; 0 when none was taken. */
  fpLen: number;
  fpHash: string;
  /** Byte offset just after the last line served from this file. */
  offset: number;
}

export type Cursor =
  { kind: 'file'; files: FilePosition[] } | { kind: 'demo'; seed: number; next: number };

export class CursorSyntaxError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CursorSyntaxError';
  }
}

/** Longest cursor accepted; a stream tracking thousands of files is not what this is for. */
export const MAX_CURSOR_LENGTH = 64 * 1024;

function encodeEntry(f: FilePosition): string {
  const path = Buffer.from(f.path, 'utf8').toString('base64url');
  const n = (v: number): string => v.toString(36);
  return `${n(f.dev)},${n(f.ino)},${n(f.fpLen)},${f.fpHash},${n(f.offset)},${path}`;
}

/**
 * The cursor of a record from `files[current]`, minus its offset: append the offset (as a
 * decimal string) to get the full cursor.
 */
export function fileCursorPrefix(files: readonly FilePosition[], current: number): string {
  return `f2.${files.map(encodeEntry).join(';')}.${current}.`;
}

export function encodeFileCursor(files: readonly FilePosition[]): string {
  if (files.length === 0) return 'f2..0.0';
  return fileCursorPrefix(files, 0) + String(files[0]!.offset);
}

export function demoCursorPrefix(seed: number): string {
  return `d1.${seed}.`;
}

const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

const BASE36 = /^[0-9a-z]{1,11}$/;
const B64URL = /^[A-Za-z0-9_-]*$/;

function decodeFileEntries(text: string): FilePosition[] {
  if (text === '') return [];
  return text.split(';').map((entry) => {
    const f = entry.split(',');
    if (
      f.length !== 6 ||
      !BASE36.test(f[0]!) ||
      !BASE36.test(f[1]!) ||
      !BASE36.test(f[2]!) ||
      !B64URL.test(f[3]!) ||
      !BASE36.test(f[4]!) ||
      !B64URL.test(f[5]!)
    ) {
      throw new CursorSyntaxError('the cursor is damaged');
    }
    const [dev, ino, fpLen, offset] = [f[0], f[1], f[2], f[4]].map((v) => parseInt(v!, 36));
    if (![dev, ino, fpLen, offset].every(isCount)) {
      throw new CursorSyntaxError('the cursor is damaged');
    }
    return {
      path: Buffer.from(f[5]!, 'base64url').toString('utf8'),
      dev: dev!,
      ino: ino!,
      fpLen: fpLen!,
      fpHash: f[3]!,
      offset: offset!,
    };
  });
}

/** Parses a cursor from a client; throws CursorSyntaxError when it is not one of ours. */
export function decodeCursor(text: string): Cursor {
  if (text.length > MAX_CURSOR_LENGTH) throw new CursorSyntaxError('the cursor is too long');
  const parts = text.split('.');

  if (parts[0] === 'd1' && parts.length === 3) {
    const seed = Number(parts[1]);
    const next = Number(parts[2]);
    if (!/^-?\d+$/.test(parts[1]!) || !Number.isSafeInteger(seed) || !/^\d+$/.test(parts[2]!)) {
      throw new CursorSyntaxError('the cursor is damaged');
    }
    if (!isCount(next)) throw new CursorSyntaxError('the cursor is damaged');
    return { kind: 'demo', seed, next };
  }

  if (parts[0] === 'f2' && parts.length === 4) {
    const files = decodeFileEntries(parts[1]!);
    if (!/^\d+$/.test(parts[2]!) || !/^\d+$/.test(parts[3]!)) {
      throw new CursorSyntaxError('the cursor is damaged');
    }
    const current = Number(parts[2]);
    const offset = Number(parts[3]);
    if (!isCount(offset)) throw new CursorSyntaxError('the cursor is damaged');
    if (files.length > 0) {
      if (current >= files.length) throw new CursorSyntaxError('the cursor is damaged');
      files[current]!.offset = offset;
    }
    return { kind: 'file', files };
  }

  throw new CursorSyntaxError('not a logproxy cursor');
}
