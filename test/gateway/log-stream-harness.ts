/**
 * Mounts the real data plane on a plain Node HTTP server with a session of our own making
 * (an AbortController is its end), for testing the data plane before and apart from the
 * gateway's routing and tokens. data-plane-e2e.test.ts covers the real gateway.
 */
import http, { type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createDataPlane, type DataPlaneDeps } from '../../src/gateway/data-plane.js';
import type {
  DataPlane,
  GatewayConfig,
  LiveSession,
  SourceConfig,
  TargetConfig,
} from '../../src/gateway/types.js';
import type { EndReason, LogRecord, StreamRecord } from '../../src/protocol/api.js';
import { systemClock } from '../../src/util/clock.js';

export interface Harness {
  url: string;
  plane: DataPlane;
  session: LiveSession;
  /** How many times the data plane recorded activity. */
  activity(): number;
  end(reason: EndReason): void;
  /** A fresh session (the old one stays as it is). */
  renew(): void;
  close(): Promise<void>;
}

function config(target: TargetConfig): GatewayConfig {
  return {
    listen: { host: '127.0.0.1', port: 0 },
    auth: { audience: 'test', clientId: 'test', algorithms: ['RS256'], clockToleranceS: 0 },
    admins: [],
    session: {
      idleTimeoutMs: 60_000,
      maxLifetimeMs: 3_600_000,
      heartbeatIntervalMs: 30_000,
      warnBeforeMs: [],
      heartbeatMissesAllowed: 3,
      silentResume: false,
    },
    audit: { file: '-' },
    log: { level: 'error' },
    targets: { [target.name]: target },
  };
}

export function targetOf(source: SourceConfig, activity: 'requests' | 'bytes' = 'requests') {
  return { name: 'logs', source, allow: ['*'], session: {}, activity } satisfies TargetConfig;
}

export async function startHarness(
  target: TargetConfig,
  deps: Partial<DataPlaneDeps> = {},
): Promise<Harness> {
  const plane = createDataPlane(config(target), {
    clock: systemClock,
    filePollMs: 20,
    rotateGraceMs: 200,
    ...deps,
  });
  let activity = 0;
  let controller = new AbortController();
  const makeSession = (): LiveSession => ({
    id: 'sess-1',
    subject: 'alice',
    target: target.name,
    signal: controller.signal,
    recordActivity: () => {
      activity++;
    },
  });
  const h = { session: makeSession() };

  const server = http.createServer({ highWaterMark: 1024 * 1024 }, (req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname === '/logs') {
      void plane.handleLogs(req, res, h.session, target, url.searchParams);
    } else if (url.pathname.startsWith('/forward/')) {
      const rest = url.pathname.slice('/forward'.length) + url.search;
      void plane.handleForward(req, res, h.session, target, rest);
    } else {
      res.writeHead(404).end();
    }
  });
  server.on('upgrade', (req: IncomingMessage, socket, head) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const rest = url.pathname.slice('/forward'.length) + url.search;
    plane.handleUpgrade(req, socket, head, h.session, target, rest);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    plane,
    get session() {
      return h.session;
    },
    activity: () => activity,
    end: (reason) => controller.abort(reason),
    renew: () => {
      controller = new AbortController();
      h.session = makeSession();
    },
    async close() {
      await plane.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

export interface ReadResult {
  status: number;
  contentType: string | undefined;
  records: StreamRecord[];
  /** The body when it was not NDJSON (problems). */
  body: string;
}

/**
 * GETs a logs URL and parses NDJSON. `stop` sees each record and returns true to hang up
 * (the client disconnecting mid-stream).
 */
export function readLogs(
  url: string,
  stop?: (record: StreamRecord, all: StreamRecord[]) => boolean,
): Promise<ReadResult> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, (res) => {
      const records: StreamRecord[] = [];
      let carry = '';
      let body = '';
      let done = false;
      const finish = (): void => {
        if (done) return;
        done = true;
        resolve({
          status: res.statusCode ?? 0,
          contentType: res.headers['content-type'],
          records,
          body,
        });
      };
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        if (done) return;
        if (!res.headers['content-type']?.includes('ndjson')) {
          body += chunk;
          return;
        }
        const parts = (carry + chunk).split('\n');
        carry = parts.pop()!;
        for (const part of parts) {
          const record = JSON.parse(part) as StreamRecord;
          records.push(record);
          if (stop?.(record, records)) {
            finish();
            req.destroy();
            return;
          }
        }
      });
      res.on('end', finish);
      res.on('close', finish);
      res.on('error', finish);
    });
    req.on('error', reject); // after a hang-up this is a no-op: the promise has settled
  });
}

export function logsUrl(h: Harness, params: Record<string, string> = {}): string {
  const q = new URLSearchParams(params).toString();
  return `${h.url}/logs${q ? `?${q}` : ''}`;
}

export interface Follower {
  records: StreamRecord[];
  /** Resolves once `pred` holds for the records so far; rejects after `timeoutMs`. */
  waitFor(pred: (records: StreamRecord[]) => boolean, what: string): Promise<void>;
  /** Resolves when the server ends the response. */
  ended: Promise<void>;
  close(): void;
}

/** Safety net for waits on a live stream: a hang becomes a failure that says what was awaited. */
const WAIT_LIMIT_MS = 20_000;

export function followLogs(url: string): Follower {
  const records: StreamRecord[] = [];
  const waiters: Array<() => void> = [];
  let req: http.ClientRequest;
  const ended = new Promise<void>((resolve, reject) => {
    req = http.get(url, (res) => {
      let carry = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        const parts = (carry + chunk).split('\n');
        carry = parts.pop()!;
        for (const part of parts) records.push(JSON.parse(part) as StreamRecord);
        for (const w of [...waiters]) w();
      });
      res.on('end', resolve);
      res.on('close', resolve);
    });
    req.on('error', reject);
  });
  ended.catch(() => undefined);
  return {
    records,
    ended,
    close: () => req.destroy(),
    waitFor(pred, what) {
      if (pred(records)) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          const got = JSON.stringify(records.slice(-5));
          reject(new Error(`timed out waiting for ${what}; last records: ${got}`));
        }, WAIT_LIMIT_MS);
        const check = (): void => {
          if (!pred(records)) return;
          clearTimeout(timer);
          waiters.splice(waiters.indexOf(check), 1);
          resolve();
        };
        waiters.push(check);
      });
    },
  };
}

export function linesOf(records: StreamRecord[]): string[] {
  return records.filter((r): r is LogRecord => 'line' in r).map((r) => r.line);
}
