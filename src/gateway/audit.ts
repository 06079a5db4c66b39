/**
 * The audit trail: one JSON object per line, appended to a file (created 0600) or written to
 * stdout. Lines are written synchronously, so a clean stop (or even a crash after the
 * write) loses nothing; events are few (heartbeats are counted in metrics, not audited).
 * A token never reaches this file: only its `jti` when the token was verified.
 *
 * Line shape (docs/gateway.md, "Audit"):
 *   {"ts":"2026-01-01T10:00:00.000Z","event":"session.expired","session_id":"ses_…",
 *    "subject":"alice","target":"prod-logs","reason":"idle_timeout"}
 */
import { closeSync, fstatSync, fsyncSync, mkdirSync, openSync, readSync, writeSync } from 'node:fs';
import path from 'node:path';
import type { Clock } from '../util/clock.js';
import { ErrorCodes, LogproxyError } from '../util/errors.js';
import type { ReauthMark, SessionManager, SessionRef } from './sessions.js';

export type AuditEventName =
  | 'session.created'
  | 'session.warned'
  | 'session.refreshed'
  | 'session.expired'
  | 'session.revoked'
  | 'session.ended'
  | 'session.refused'
  | 'token.rejected';

export interface AuditRecord {
  event: AuditEventName;
  session_id?: string;
  subject?: string;
  target?: string;
  reason?: string;
  [field: string]: unknown;
}

export class AuditLog {
  private fd: number | undefined;
  private readonly toStdout: boolean;

  /** Opens `file` for appending ('-' for stdout). Throws LogproxyError(CONFIG_INVALID). */
  constructor(
    readonly file: string,
    private readonly clock: Clock,
    private readonly onError: (err: unknown) => void = () => {},
  ) {
    this.toStdout = file === '-';
    if (this.toStdout) return;
    try {
      // A missing parent is created private: audit lines name people and what they opened.
      mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
      this.fd = openSync(file, 'a', 0o600);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? String(err);
      throw new LogproxyError(
        ErrorCodes.CONFIG_INVALID,
        `audit.file: cannot open ${file} for appending (${code}); fix the path or its rights`,
        { cause: err },
      );
    }
  }

  write(record: AuditRecord): void {
    const line = JSON.stringify({ ts: new Date(this.clock.now()).toISOString(), ...record });
    try {
      if (this.toStdout) writeAllSync(1, `${line}\n`);
      else if (this.fd !== undefined) writeAllSync(this.fd, `${line}\n`);
    } catch (err) {
      this.onError(err);
    }
  }

  /** Flushes to disk and closes; safe to call twice. */
  close(): void {
    if (this.fd === undefined) return;
    try {
      fsyncSync(this.fd);
    } catch {
      // fsync may fail on some filesystems (e.g. /dev/stdout); the data was written already
    }
    closeSync(this.fd);
    this.fd = undefined;
  }
}

/**
 * Writes all of `text`, blocking. stdout may be a non-blocking pipe whose buffer is full
 * (EAGAIN): process.stdout.write would then queue in memory and lose the lines on exit.
 */
function writeAllSync(fd: number, text: string): void {
  let buf = Buffer.from(text);
  let spins = 0;
  while (buf.length > 0) {
    try {
      buf = buf.subarray(writeSync(fd, buf));
      spins = 0;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN' || ++spins > 10_000) throw err;
      Atomics.wait(WAIT, 0, 0, 1); // the reader is slow: wait a millisecond, then retry
    }
  }
}

const WAIT = new Int32Array(new SharedArrayBuffer(4));

function refFields(ref: SessionRef) {
  return { session_id: ref.id, subject: ref.subject, target: ref.target };
}

/** Writes one audit line for each session event that matters to a reviewer. */
export function auditSessions(sessions: SessionManager, audit: AuditLog): void {
  sessions.on('created', (e) =>
    audit.write({
      event: 'session.created',
      ...refFields(e.session),
      ...(e.tokenId ? { token_id: e.tokenId } : {}),
      idle_timeout_s: e.policy.idleTimeoutMs / 1000,
      max_lifetime_s: e.policy.maxLifetimeMs / 1000,
    }),
  );
  sessions.on('warned', (e) =>
    audit.write({
      event: 'session.warned',
      ...refFields(e.session),
      reason: e.ending,
      threshold_s: e.thresholdMs / 1000,
      remaining_s: Math.round(e.remainingMs / 1000),
    }),
  );
  sessions.on('refreshed', (e) =>
    audit.write({
      event: 'session.refreshed',
      ...refFields(e.session),
      ...(e.tokenId ? { token_id: e.tokenId } : {}),
      token_expires_at: new Date(e.tokenExpiresAtMs).toISOString(),
    }),
  );
  sessions.on('expired', (e) =>
    audit.write({ event: 'session.expired', ...refFields(e.session), reason: e.reason }),
  );
  sessions.on('revoked', (e) =>
    audit.write({ event: 'session.revoked', ...refFields(e.session), reason: 'revoked', by: e.by }),
  );
  sessions.on('ended', (e) =>
    audit.write({ event: 'session.ended', ...refFields(e.session), reason: e.reason }),
  );
}

/** How much of the audit trail's end is read at start to restore "sign in again" marks. */
export const REAUTH_REPLAY_BYTES = 32 * 1024 * 1024;

/**
 * Rebuilds the reauth marks from the end of an audit file: a `session.expired` line with
 * reason idle_timeout or max_lifetime sets a mark; a later `session.created` for the same
 * subject and target clears it (that session was allowed, so the person had signed in again
 * or the target resumes silently). Only the last `maxBytes` are read: marks older than that
 * are forgotten, as they were before this existed. Unreadable lines are skipped.
 */
export function readReauthMarks(file: string, maxBytes = REAUTH_REPLAY_BYTES): ReauthMark[] {
  if (file === '-') return [];
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch {
    return [];
  }
  let text: string;
  try {
    const size = fstatSync(fd).size;
    const start = Math.max(0, size - maxBytes);
    const buf = Buffer.alloc(size - start);
    let read = 0;
    while (read < buf.length) {
      const n = readSync(fd, buf, read, buf.length - read, start + read);
      if (n === 0) break;
      read += n;
    }
    text = buf.subarray(0, read).toString('utf8');
    // A read that starts mid-file begins mid-line: drop that partial line.
    if (start > 0) text = text.slice(text.indexOf('\n') + 1);
  } finally {
    closeSync(fd);
  }

  const marks = new Map<string, ReauthMark>();
  for (const line of text.split('\n')) {
    let rec: Record<string, unknown>;
    try {
      rec = JSON.parse(line) as Record<string, unknown>;
    } catch {
      continue;
    }
    const { event, subject, target, reason, ts } = rec;
    if (typeof subject !== 'string' || typeof target !== 'string') continue;
    const key = `${subject}\0${target}`;
    if (event === 'session.created') marks.delete(key);
    if (event === 'session.expired' && (reason === 'idle_timeout' || reason === 'max_lifetime')) {
      const endedAtMs = Date.parse(String(ts));
      if (!Number.isNaN(endedAtMs)) marks.set(key, { subject, target, endedAtMs });
    }
  }
  return [...marks.values()];
}
