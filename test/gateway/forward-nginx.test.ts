/**
 * Forwarding to Debian's real nginx serving a log directory (autoindex as JSON, ranges):
 * what a team that exposes logs over plain HTTP would put behind logproxy.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startHarness, targetOf, type Harness } from './log-stream-harness.js';

const NGINX = ['/usr/sbin/nginx', '/usr/bin/nginx'].find((p) => existsSync(p));
const skip = NGINX ? false : 'nginx is not installed (apt-get install nginx)';
if (!NGINX && process.env.CI === 'true') throw new Error('CI needs nginx: apt-get install nginx');

let dir = '';
let nginx: ChildProcess | undefined;
let harness: Harness;
let logText = '';

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function waitForPort(port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.end();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    if (nginx?.exitCode !== null) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const errors = await readFile(path.join(dir, 'error.log'), 'utf8').catch(() => '');
  throw new Error(`nginx did not start: ${errors}`);
}

before(async () => {
  if (!NGINX) return;
  dir = await mkdtemp(path.join(tmpdir(), 'lp-nginx-'));
  const logs = path.join(dir, 'logs');
  await mkdir(logs);
  logText = Array.from({ length: 20_000 }, (_, i) => `2026-01-01T00:00:00Z INFO line ${i}`)
    .join('\n')
    .concat('\n');
  await writeFile(path.join(logs, 'app.log'), logText);
  // nginx workers run as nobody: they must be able to read what they serve
  await chmod(dir, 0o755);
  await chmod(logs, 0o755);
  const port = await freePort();
  const conf = `
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log;
events { worker_connections 64; }
http {
  log_format probe '$request auth=[$http_authorization] cookie=[$http_cookie] key=[$http_x_api_key]';
  access_log ${dir}/access.log probe;
  client_body_temp_path ${dir}/tmp-body;
  proxy_temp_path ${dir}/tmp-proxy;
  fastcgi_temp_path ${dir}/tmp-fastcgi;
  uwsgi_temp_path ${dir}/tmp-uwsgi;
  scgi_temp_path ${dir}/tmp-scgi;
  server {
    listen 127.0.0.1:${port};
    root ${logs};
    autoindex on;
    autoindex_format json;
    default_type text/plain;
  }
}
`;
  await writeFile(path.join(dir, 'nginx.conf'), conf);
  nginx = spawn(NGINX, ['-c', path.join(dir, 'nginx.conf'), '-p', dir, '-g', 'daemon off;'], {
    stdio: 'ignore',
  });
  await waitForPort(port);
  harness = await startHarness(
    targetOf({
      type: 'http',
      url: `http://127.0.0.1:${port}/`,
      headers: { 'X-Api-Key': 'from-the-gateway' },
      timeoutMs: 5000,
    }),
  );
});

after(async () => {
  await harness?.close();
  if (nginx && nginx.exitCode === null) {
    const exited = new Promise((resolve) => nginx!.once('exit', resolve));
    nginx.kill('SIGTERM');
    await exited;
  }
  if (dir) await rm(dir, { recursive: true, force: true });
});

function get(url: string, headers: Record<string, string> = {}) {
  return new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }>(
    (resolve, reject) => {
      http
        .get(url, { headers }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (body += c));
          res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
        })
        .on('error', reject);
    },
  );
}

test('the directory listing and a whole log file come through nginx', { skip }, async () => {
  const listing = await get(`${harness.url}/forward/`);
  assert.equal(listing.status, 200);
  const entries = JSON.parse(listing.body) as Array<{ name: string; size: number }>;
  assert.deepEqual(
    entries.map((e) => [e.name, e.size]),
    [['app.log', Buffer.byteLength(logText)]],
  );

  const file = await get(`${harness.url}/forward/app.log`, {
    authorization: 'Bearer user-token',
    cookie: 'sid=1',
  });
  assert.equal(file.status, 200);
  assert.equal(file.body, logText);

  const access = await readFile(path.join(dir, 'access.log'), 'utf8');
  const line = access.split('\n').find((l) => l.startsWith('GET /app.log'))!;
  assert.match(line, /auth=\[-\] cookie=\[-\] key=\[from-the-gateway\]/); // nginx logs absent as -
});

test('ranges and missing files pass through with nginx status codes', { skip }, async () => {
  const part = await get(`${harness.url}/forward/app.log`, { range: 'bytes=0-35' });
  assert.equal(part.status, 206);
  assert.equal(part.body, logText.slice(0, 36));
  assert.match(part.headers['content-range'] ?? '', /^bytes 0-35\//);

  const missing = await get(`${harness.url}/forward/nope.log`);
  assert.equal(missing.status, 404);
});
