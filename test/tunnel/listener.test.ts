/**
 * The local port's protections, over real sockets: loopback only, Host and Origin checks,
 * the per-tunnel secret, unix sockets with mode 0600, and a bounded drain on close.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { execFile, spawn } from 'node:child_process';
import { lstat, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { systemClock } from '../../src/util/clock.js';
import { ErrorCodes, LogproxyError } from '../../src/util/errors.js';
import { listen, type Listener } from '../../src/tunnel/listener.js';
import { isLoopback, loopbackAddresses } from '../../src/tunnel/guards.js';

const run = promisify(execFile);

function echo(req: http.IncomingMessage, res: http.ServerResponse): void {
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ url: req.url, host: req.headers.host }));
}

interface Reply {
  status: number;
  body: string;
  headers: http.IncomingHttpHeaders;
}

function request(
  port: number,
  headers: Record<string, string>,
  host = '127.0.0.1',
  reqPath = '/x',
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port, path: reqPath, headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, body, headers: res.headers }));
    });
    req.on('error', reject);
    req.end();
  });
}

async function open(options: Partial<Parameters<typeof listen>[0]> = {}): Promise<Listener> {
  return listen({ clock: systemClock, ...options }, echo, (_req, socket) => socket.destroy());
}

async function hasIpv6Loopback(): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen({ host: '::1', port: 0 }, () => s.close(() => resolve(true)));
  });
}

test('listens on 127.0.0.1 and ::1 on the same free port', async (t) => {
  const l = await open();
  t.after(() => l.close(0));
  assert.match(l.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  const ok = await request(l.port!, { host: `127.0.0.1:${l.port}` });
  assert.equal(ok.status, 200);
  assert.equal(ok.headers['access-control-allow-origin'], undefined, 'no CORS headers');
  if (await hasIpv6Loopback()) {
    assert.deepEqual(l.addresses, [`127.0.0.1:${l.port}`, `[::1]:${l.port}`]);
    const v6 = await request(l.port!, { host: `[::1]:${l.port}` }, '::1');
    assert.equal(v6.status, 200);
  }
  const local = await request(l.port!, { host: `localhost:${l.port}` });
  assert.equal(local.status, 200);
});

test('a foreign Host header is refused (DNS rebinding)', async (t) => {
  const l = await open();
  t.after(() => l.close(0));
  const r = await request(l.port!, { host: `attacker.example:${l.port}` });
  assert.equal(r.status, 421);
  assert.match(r.body, /DNS rebinding/);
  const wrongPort = await request(l.port!, { host: '127.0.0.1:1' });
  assert.equal(wrongPort.status, 421);
  // curl, the way people use it, passes.
  const { stdout } = await run('curl', ['-s', `${l.url}/hello?a=1`]);
  assert.deepEqual(JSON.parse(stdout), { url: '/hello?a=1', host: l.url.slice(7) });
});

test('foreign Origins and cross-site fetches are refused; the own origin is allowed', async (t) => {
  const l = await open();
  t.after(() => l.close(0));
  const host = `127.0.0.1:${l.port}`;
  const foreign = await request(l.port!, { host, origin: 'https://evil.example' });
  assert.equal(foreign.status, 403);
  assert.equal(foreign.headers['access-control-allow-origin'], undefined);
  assert.equal((await request(l.port!, { host, origin: 'null' })).status, 403);
  assert.equal((await request(l.port!, { host, 'sec-fetch-site': 'cross-site' })).status, 403);
  assert.equal((await request(l.port!, { host, origin: `http://${host}` })).status, 200);
  assert.equal((await request(l.port!, { host, 'sec-fetch-site': 'none' })).status, 200);
});

test('with a secret, requests without it get 401; header or bearer passes', async (t) => {
  const secret = 's3cr3t-value-for-this-test';
  const l = await open({ secret });
  t.after(() => l.close(0));
  const host = `127.0.0.1:${l.port}`;
  const missing = await request(l.port!, { host });
  assert.equal(missing.status, 401);
  assert.match(missing.body, /X-Logproxy-Secret/);
  assert.equal((await request(l.port!, { host, 'x-logproxy-secret': 'wrong' })).status, 401);
  assert.equal((await request(l.port!, { host, 'x-logproxy-secret': secret })).status, 200);
  const bearer = await request(l.port!, { host, authorization: `Bearer ${secret}` });
  assert.equal(bearer.status, 200);
});

test('absolute-form targets are refused: this is not an open proxy', async (t) => {
  const l = await open();
  t.after(() => l.close(0));
  const r = await request(l.port!, { host: `127.0.0.1:${l.port}` }, '127.0.0.1', 'http://x/');
  assert.equal(r.status, 400);
});

test('only loopback addresses are accepted for --address', async () => {
  assert.deepEqual(loopbackAddresses(undefined), ['127.0.0.1', '::1']);
  assert.deepEqual(loopbackAddresses('localhost'), ['127.0.0.1', '::1']);
  assert.deepEqual(loopbackAddresses('127.0.0.5'), ['127.0.0.5']);
  assert.deepEqual(loopbackAddresses('[::1]'), ['::1']);
  for (const bad of ['0.0.0.0', '192.168.1.10', '::', 'example.com', '10.0.0.1']) {
    assert.throws(
      () => loopbackAddresses(bad),
      (e: LogproxyError) => e.code === ErrorCodes.USAGE && /your access/.test(e.message),
      bad,
    );
  }
  assert.equal(isLoopback('127.255.0.1'), true);
  assert.equal(isLoopback('128.0.0.1'), false);
  await assert.rejects(open({ address: '0.0.0.0' }), (e: LogproxyError) => e.code === 'LP_USAGE');
});

test('a port in use is a clear usage error', async (t) => {
  const first = await open();
  t.after(() => first.close(0));
  await assert.rejects(
    open({ address: '127.0.0.1', port: first.port! }),
    (e: LogproxyError) => e.code === ErrorCodes.USAGE && /already in use/.test(e.message),
  );
});

test('a unix socket is created with mode 0600 and replaces only a stale socket', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'lp-sock-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const sock = path.join(dir, 'tunnel.sock');

  const l = await open({ unixSocket: sock });
  assert.equal((await stat(sock)).mode & 0o777, 0o600);
  const { stdout } = await run('curl', ['-s', '--unix-socket', sock, 'http://localhost/p']);
  assert.equal(JSON.parse(stdout).url, '/p');
  await assert.rejects(open({ unixSocket: sock }), /in use/);
  await l.close(0);
  await assert.rejects(stat(sock), /ENOENT/, 'removed on close');

  // A socket left by a crashed tunnel: a process bound it and was killed without cleanup.
  const child = spawn(process.execPath, [
    '-e',
    "require('net').createServer().listen(process.argv[1], () => console.log('up'))",
    sock,
  ]);
  await new Promise((r) => child.stdout.once('data', r));
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  assert.ok((await lstat(sock)).isSocket(), 'the dead socket file is still there');
  const again = await open({ unixSocket: sock });
  assert.equal((await stat(sock)).mode & 0o777, 0o600);
  await again.close(0);

  const plain = path.join(dir, 'file');
  await writeFile(plain, 'x');
  await assert.rejects(open({ unixSocket: plain }), /not a socket/);
});

test('close lets in-flight requests finish within the grace', async (t) => {
  let finish!: () => void;
  const l = await listen(
    { clock: systemClock, address: '127.0.0.1' },
    (_req, res) => {
      res.writeHead(200);
      res.write('partial ');
      finish = () => res.end('done');
    },
    (_r, s) => s.destroy(),
  );
  t.after(() => l.close(0));
  const pending = request(l.port!, { host: `127.0.0.1:${l.port}` });
  while (l.inFlight() === 0) await new Promise((r) => setImmediate(r));
  const closed = l.close(60_000);
  finish();
  await closed;
  assert.equal((await pending).body, 'partial done');
  await assert.rejects(request(l.port!, { host: `127.0.0.1:${l.port}` }), /ECONNREFUSED/);
});
