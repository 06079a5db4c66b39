/**
 * Forwarding through the real data plane to a real Node HTTP server: headers, streamed
 * bodies both ways (1 GiB made on the fly), a WebSocket, the cut when the session ends,
 * an upstream that is down, and activity counting.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import { ProblemTypes, type Problem } from '../../src/protocol/api.js';
import { ManualClock } from '../../src/util/clock.js';
import { upstreamPath } from '../../src/gateway/forward.js';
import { startHarness, targetOf } from './log-stream-harness.js';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

async function upstream(t: { after(fn: () => Promise<void>): void }, handler: Handler) {
  const server = http.createServer({ highWaterMark: 1024 * 1024 }, handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

function httpTarget(url: string, activity: 'requests' | 'bytes' = 'requests') {
  return targetOf(
    { type: 'http', url, headers: { 'X-Api-Key': 'upstream-secret' }, timeoutMs: 2000 },
    activity,
  );
}

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function request(url: string, options: http.RequestOptions = {}, body?: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, options, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: text }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

test('requests reach the upstream without the client credentials, with the target ones', async (t) => {
  const seen: IncomingMessage[] = [];
  const bodies: string[] = [];
  const up = await upstream(t, (req, res) => {
    seen.push(req);
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      bodies.push(body);
      res.writeHead(201, {
        'content-type': 'text/plain',
        'set-cookie': 'upstream=1',
        'x-upstream': 'yes',
        connection: 'keep-alive, x-hop',
        'x-hop': 'per-hop',
      });
      res.end(`got ${req.method} ${req.url}`);
    });
  });
  const h = await startHarness(httpTarget(`${up.url}/loki/`));
  t.after(() => h.close());

  const reply = await request(
    `${h.url}/forward/api/v1/query_range?query=%7Bapp%3D%22x%22%7D&limit=5`,
    {
      method: 'POST',
      headers: {
        authorization: 'Bearer user-token',
        cookie: 'session=abc',
        'x-logproxy-session': 'sess-1',
        'x-forwarded-for': '10.0.0.1',
        'content-type': 'application/json',
        'x-custom': 'kept',
      },
    },
    '{"hello":"upstream"}',
  );
  assert.equal(reply.status, 201);
  assert.equal(reply.body, 'got POST /loki/api/v1/query_range?query=%7Bapp%3D%22x%22%7D&limit=5');
  assert.equal(reply.headers['x-upstream'], 'yes');
  assert.equal(reply.headers['set-cookie'], undefined);
  assert.equal(reply.headers['x-hop'], undefined);

  const got = seen[0]!.headers;
  assert.equal(got.authorization, undefined);
  assert.equal(got.cookie, undefined);
  assert.equal(got['x-logproxy-session'], undefined);
  assert.equal(got['x-api-key'], 'upstream-secret');
  assert.equal(got['x-custom'], 'kept');
  assert.equal(got['x-forwarded-for'], '10.0.0.1, 127.0.0.1');
  assert.equal(got['x-forwarded-proto'], 'http');
  assert.equal(bodies[0], '{"hello":"upstream"}');
  assert.equal(h.activity(), 1, 'one request, one activity');
});

test('dot segments cannot climb out of the source base path', () => {
  const base = new URL('http://up.example/loki/');
  assert.equal(upstreamPath(base, '/api/v1/labels?x=1'), '/loki/api/v1/labels?x=1');
  assert.equal(upstreamPath(base, '/'), '/loki/');
  assert.equal(upstreamPath(base, '/%2e%2e/admin'), null);
  assert.equal(upstreamPath(base, '/a/../../admin'), null);
});

test('the upstream being down is a 502 naming the target, not its URL secrets', async (t) => {
  const up = await upstream(t, () => undefined);
  const port = (up.server.address() as AddressInfo).port;
  up.server.close();
  up.server.closeAllConnections();
  const h = await startHarness(httpTarget(`http://user:pa55word@127.0.0.1:${port}/`));
  t.after(() => h.close());
  const reply = await request(`${h.url}/forward/x`);
  assert.equal(reply.status, 502);
  const p = JSON.parse(reply.body) as Problem;
  assert.equal(p.type, ProblemTypes.upstreamUnavailable);
  assert.match(p.detail ?? '', /target logs/);
  assert.doesNotMatch(reply.body, /pa55word|user:/);
});

test('an upstream that sends no headers within the timeout is a 504', async (t) => {
  const up = await upstream(t, () => undefined); // accepts, never answers
  const h = await startHarness(
    targetOf({ type: 'http', url: up.url, headers: {}, timeoutMs: 200 }),
  );
  t.after(() => h.close());
  const reply = await request(`${h.url}/forward/slow`);
  assert.equal(reply.status, 504);
  const p = JSON.parse(reply.body) as Problem;
  assert.equal(p.type, ProblemTypes.upstreamUnavailable);
  assert.match(p.detail ?? '', /no answer in time/);
});

test('a 1 GiB response streams through in bounded memory', async (t) => {
  const total = 1024 * 1024 * 1024;
  const chunk = Buffer.alloc(1024 * 1024, 'abcdefghijklmnopqrstuvwxyz\n');
  const up = await upstream(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': total });
    let sent = 0;
    const pump = (): void => {
      while (sent < total) {
        sent += chunk.length;
        if (!res.write(chunk)) return void res.once('drain', pump);
      }
      res.end();
    };
    pump();
  });
  const h = await startHarness(httpTarget(up.url));
  t.after(() => h.close());

  let peakRss = process.memoryUsage().rss;
  const startRss = peakRss;
  const sampler = setInterval(() => {
    peakRss = Math.max(peakRss, process.memoryUsage().rss);
  }, 50);
  const started = Date.now();
  const received = await new Promise<number>((resolve, reject) => {
    http.get(`${h.url}/forward/big`, (res) => {
      let n = 0;
      res.on('data', (c: Buffer) => (n += c.length));
      res.on('end', () => resolve(n));
      res.on('error', reject);
    });
  });
  clearInterval(sampler);
  const seconds = (Date.now() - started) / 1000;
  t.diagnostic(
    `1 GiB in ${seconds.toFixed(2)} s (${(total / 1e9 / seconds).toFixed(2)} GB/s); RSS ` +
      `${(startRss / 1e6).toFixed(0)} MB at start, ${(peakRss / 1e6).toFixed(0)} MB at peak ` +
      '(upstream, data plane and client share this process)',
  );
  assert.equal(received, total);
  assert.ok(peakRss < 300e6 + startRss, `peak RSS ${peakRss}`);
});

test('a 64 MiB request body streams to the upstream', async (t) => {
  const up = await upstream(t, (req, res) => {
    let n = 0;
    req.on('data', (c: Buffer) => (n += c.length));
    req.on('end', () => res.end(String(n)));
  });
  const h = await startHarness(httpTarget(up.url));
  t.after(() => h.close());
  const size = 64 * 1024 * 1024;
  const reply = await new Promise<string>((resolve, reject) => {
    const req = http.request(`${h.url}/forward/upload`, { method: 'PUT' }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve(text));
    });
    req.on('error', reject);
    const piece = Buffer.alloc(1024 * 1024, 1);
    let sent = 0;
    const pump = (): void => {
      while (sent < size) {
        sent += piece.length;
        if (!req.write(piece)) return void req.once('drain', pump);
      }
      req.end();
    };
    pump();
  });
  assert.equal(Number(reply), size);
});

test('the body is cut when the session ends mid-stream', async (t) => {
  let upstreamClosed!: () => void;
  const upstreamGone = new Promise<void>((resolve) => (upstreamClosed = resolve));
  const up = await upstream(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    const timer = setInterval(() => res.write('tick\n'), 10);
    res.on('close', () => {
      clearInterval(timer);
      upstreamClosed();
    });
  });
  const h = await startHarness(httpTarget(up.url));
  t.after(() => h.close());

  const outcome = await new Promise<{ bytes: number; how: string }>((resolve) => {
    http.get(`${h.url}/forward/tail`, (res) => {
      let bytes = 0;
      res.on('data', (c: Buffer) => {
        bytes += c.length;
        if (bytes >= 50) h.end('max_lifetime');
      });
      res.on('end', () => resolve({ bytes, how: 'ended cleanly' }));
      res.on('aborted', () => resolve({ bytes, how: 'cut' }));
      res.on('error', () => resolve({ bytes, how: 'cut' }));
    });
  });
  assert.equal(outcome.how, 'cut');
  assert.ok(outcome.bytes >= 50);
  await upstreamGone; // the upstream's response was closed too

  // new requests on the ended session get the reason
  const after = await request(`${h.url}/forward/tail`);
  assert.equal(after.status, 410);
  assert.equal((JSON.parse(after.body) as Problem).reason, 'max_lifetime');
});

test('a WebSocket passes through; the session end closes it', async (t) => {
  const up = await upstream(t, (_req, res) => res.writeHead(426).end());
  const wss = new WebSocketServer({ server: up.server });
  const upstreamAuth: Array<string | undefined> = [];
  wss.on('connection', (ws, req) => {
    upstreamAuth.push(req.headers.authorization ?? req.headers['x-api-key']?.toString());
    ws.on('message', (data) => ws.send(`echo: ${data.toString()}`));
  });
  t.after(() => new Promise<void>((resolve) => wss.close(() => resolve())));
  const h = await startHarness(httpTarget(up.url));
  t.after(() => h.close());

  const ws = new WebSocket(`${h.url.replace('http', 'ws')}/forward/loki/api/v1/tail?query=x`, {
    headers: { authorization: 'Bearer user-token' },
  });
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  const echoed = new Promise<string>((resolve) => ws.once('message', (d) => resolve(d.toString())));
  ws.send('hello');
  assert.equal(await echoed, 'echo: hello');
  assert.deepEqual(upstreamAuth, ['upstream-secret'], 'no user token upstream, the key instead');

  const closed = new Promise<void>((resolve) => ws.once('close', () => resolve()));
  h.end('revoked');
  await closed;
});

test('activity: requests count once; with `bytes` a long response counts as it flows', async (t) => {
  const clock = new ManualClock(Date.UTC(2026, 0, 1));
  let release!: () => void;
  const up = await upstream(t, (_req, res) => {
    res.writeHead(200);
    let n = 0;
    release = () => {
      n++;
      res.write(`chunk ${n}\n`);
      if (n === 5) res.end();
    };
    release();
  });
  const h = await startHarness(httpTarget(up.url, 'bytes'), { clock });
  t.after(() => h.close());

  await new Promise<void>((resolve, reject) => {
    http.get(`${h.url}/forward/stream`, (res) => {
      res.on('data', () => {
        clock.advance(2000); // each chunk arrives two (manual) seconds after the last
        setImmediate(() => release());
      });
      res.on('end', resolve);
      res.on('error', reject);
    });
  });
  // one for the request, one per chunk (each past the one-second throttle)
  assert.ok(h.activity() >= 5, `activity ${h.activity()}`);
});
