/**
 * The `demo` source: made-up but realistic log lines at `ratePerSec`, for the demo and for
 * benchmarks.
 *
 * Line n is a pure function of (seed, n): its time is n / ratePerSec seconds after the Unix
 * epoch, and its text comes from a generator seeded with (seed, n). So the stream needs no
 * state to resume: a cursor is the next sequence number, valid across gateway restarts. The
 * source "holds" the last `historyLines` lines before now; older lines count as lost.
 */
import type { LogNotice } from '../../protocol/api.js';
import type { SourceConfig } from '../types.js';
import { demoCursorPrefix } from '../cursor.js';
import {
  CursorMismatchError,
  type LineBatch,
  type LogReader,
  type OpenOptions,
  type SourceEvent,
  type SourceOptions,
} from './index.js';

type DemoConfig = Extract<SourceConfig, { type: 'demo' }>;

/** Lines per batch: large enough to be cheap, small enough to keep latency low. */
const BATCH_LINES = 4096;
/** Shortest wait between polls while following: above ~100 lines/s lines come in groups. */
const MIN_TICK_MS = 10;

/** mulberry32: a small, fast, well-mixed 32-bit generator. */
function generator(seed: number, n: number): () => number {
  let a =
    (Math.imul(seed | 0, 0x9e3779b1) ^
      (n >>> 0) ^
      Math.imul(Math.floor(n / 2 ** 32), 0x85ebca6b)) >>>
    0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SERVICES = ['checkout', 'payments', 'auth', 'search', 'inventory', 'api-gateway', 'mailer'];
const METHODS = ['GET', 'GET', 'GET', 'POST', 'POST', 'PUT', 'DELETE'];
const PATHS = [
  '/api/v1/orders/{id}',
  '/api/v1/cart',
  '/api/v1/products/{id}',
  '/api/v1/search?q=boots',
  '/api/v1/users/{id}/sessions',
  '/healthz',
  '/api/v1/payments/{id}/capture',
];
const DEBUG_MSGS = ['cache lookup', 'feature flag evaluated', 'db query planned', 'token cached'];
const WARN_MSGS = [
  'slow query',
  'retrying upstream call',
  'cache miss ratio high',
  'queue backlog',
];
const ERROR_MSGS = [
  'upstream timeout',
  'payment declined by processor',
  'database connection reset',
  'unhandled exception in worker',
];

function pick<T>(rnd: () => number, items: readonly T[]): T {
  return items[Math.floor(rnd() * items.length)]!;
}

function hex(rnd: () => number, digits: number): string {
  let s = '';
  while (s.length < digits)
    s += Math.floor(rnd() * 0x100000000)
      .toString(16)
      .padStart(8, '0');
  return s.slice(0, digits);
}

/** The text of line n: mostly info, some debug and warn, rare errors; JSON and plain. */
export function demoLine(seed: number, n: number, tsMs: number): string {
  const rnd = generator(seed, n);
  const roll = rnd();
  const level = roll < 0.12 ? 'debug' : roll < 0.9 ? 'info' : roll < 0.98 ? 'warn' : 'error';
  const service = pick(rnd, SERVICES);
  const requestId = `req-${hex(rnd, 12)}`;
  const time = new Date(tsMs).toISOString();
  const json = rnd() < 0.5;

  if (level === 'info') {
    const method = pick(rnd, METHODS);
    const path = pick(rnd, PATHS).replace('{id}', String(1000 + Math.floor(rnd() * 90000)));
    const status = rnd() < 0.93 ? (method === 'POST' ? 201 : 200) : pick(rnd, [304, 404, 409]);
    const durationMs = Math.round(2 + rnd() * rnd() * 800) / 10;
    if (json) {
      return JSON.stringify({
        time,
        level,
        service,
        msg: 'request completed',
        method,
        path,
        status,
        duration_ms: durationMs,
        request_id: requestId,
      });
    }
    return `${time} INFO  ${service}: ${method} ${path} ${status} ${durationMs}ms request_id=${requestId}`;
  }

  const msgs = level === 'debug' ? DEBUG_MSGS : level === 'warn' ? WARN_MSGS : ERROR_MSGS;
  const msg = pick(rnd, msgs);
  const latencyMs = Math.floor(rnd() * (level === 'error' ? 30000 : 2000));
  if (json) {
    return JSON.stringify({
      time,
      level,
      service,
      msg,
      latency_ms: latencyMs,
      request_id: requestId,
    });
  }
  const tag = level.toUpperCase().padEnd(5);
  return `${time} ${tag} ${service}: ${msg} latency=${latencyMs}ms request_id=${requestId}`;
}

class DemoReader implements LogReader {
  private readonly prefix: string;
  private pos: number;
  private readonly end: number | undefined;
  private pending: LogNotice[] = [];

  constructor(
    private readonly config: DemoConfig,
    private readonly options: OpenOptions,
    private readonly sourceOptions: SourceOptions,
  ) {
    this.prefix = demoCursorPrefix(config.seed);
    const produced = this.produced();
    const oldest = Math.max(0, produced - config.historyLines);
    this.pos = this.startAt(produced, oldest);
    this.end = options.follow ? undefined : produced;
  }

  /** Lines whose time has come: n such that time(n) <= now. */
  private produced(): number {
    const now = this.sourceOptions.clock.now();
    return Math.max(0, Math.ceil(((now + 1) * this.config.ratePerSec) / 1000));
  }

  private timeOf(n: number): number {
    return Math.floor((n * 1000) / this.config.ratePerSec);
  }

  private startAt(produced: number, oldest: number): number {
    const { cursor, sinceMs, limit } = this.options;
    if (cursor?.kind === 'demo') {
      if (cursor.next >= oldest) return cursor.next;
      this.pending.push({
        notice: 'data_lost',
        ts: new Date(this.sourceOptions.clock.now()).toISOString(),
        source: 'demo',
        detail: `lines ${cursor.next} to ${oldest - 1} are older than the ${this.config.historyLines} lines the source holds`,
        lost_lines: oldest - cursor.next,
      });
      return oldest;
    }
    let start = oldest;
    if (sinceMs !== undefined) {
      start = Math.max(start, Math.ceil((sinceMs * this.config.ratePerSec) / 1000));
    }
    if (limit !== undefined) start = Math.max(start, this.startOfLast(limit, produced, oldest));
    return start;
  }

  private startOfLast(limit: number, produced: number, oldest: number): number {
    const match = this.options.match;
    if (!match) return Math.max(oldest, produced - limit);
    if (limit === 0) return produced;
    let found = 0;
    for (let n = produced - 1; n >= oldest; n--) {
      if (match(demoLine(this.config.seed, n, this.timeOf(n))) && ++found === limit) return n;
    }
    return oldest;
  }

  async next(maxWaitMs: number): Promise<SourceEvent | null> {
    const { clock } = this.sourceOptions;
    const deadline = clock.now() + maxWaitMs;
    for (;;) {
      if (this.options.signal.aborted) return null;
      const notice = this.pending.shift();
      if (notice) return { kind: 'notice', notice: { ...notice, cursor: this.cursor() } };

      const available = Math.min(this.produced(), this.end ?? Infinity);
      if (this.pos < available) return this.batch(Math.min(available, this.pos + BATCH_LINES));
      if (this.end !== undefined) return null;

      const now = clock.now();
      if (now >= deadline) return { kind: 'idle' };
      const due = Math.max(this.timeOf(this.pos) - now, MIN_TICK_MS);
      try {
        await clock.sleep(Math.min(due, deadline - now), this.options.signal);
      } catch {
        return null; // aborted
      }
    }
  }

  private batch(upTo: number): LineBatch {
    const lines: string[] = [];
    const positions: number[] = [];
    const tsList: string[] = [];
    for (let n = this.pos; n < upTo; n++) {
      const ms = this.timeOf(n);
      lines.push(demoLine(this.config.seed, n, ms));
      positions.push(n + 1);
      tsList.push(new Date(ms).toISOString());
    }
    this.pos = upTo;
    return { kind: 'lines', source: 'demo', lines, positions, tsList, cursorPrefix: this.prefix };
  }

  cursor(): string {
    return this.prefix + String(this.pos);
  }

  async close(): Promise<void> {}
}

export async function openDemoSource(
  config: DemoConfig,
  options: OpenOptions,
  sourceOptions: SourceOptions,
): Promise<LogReader> {
  if (options.cursor && options.cursor.kind !== 'demo') {
    throw new CursorMismatchError('the cursor belongs to a file source, not to this demo');
  }
  if (options.cursor?.kind === 'demo' && options.cursor.seed !== config.seed) {
    throw new CursorMismatchError('the cursor belongs to another demo stream (different seed)');
  }
  return new DemoReader(config, options, sourceOptions);
}
