/**
 * `logproxy connect` end to end, the real CLI against the real gateway: curl through the
 * tunnel, what reaches the upstream, the local port's protections, the unix socket, the
 * registry record, and teardown on Ctrl-C.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { readdir, readFile, stat } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { promisify } from 'node:util';
import WebSocket from 'ws';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { tunnelsDir } from '../../src/tunnel/registry.js';
import {
  CLI_BIN,
  signedIn,
  spawnConnect,
  startUpstream,
  until,
  type SignedIn,
  type Upstream,
} from './connect-helpers.js';

const run = promisify(execFile);

let upstream: Upstream;
let gw: TestGateway;
let user: SignedIn;

before(async () => {
  upstream = await startUpstream();
  gw = await startGateway({
    targets: {
      api: { source: { type: 'http', url: upstream.url, headers: {}, timeoutMs: 30_000 } },
      short: {
        source: { type: 'http', url: upstream.url, headers: {}, timeoutMs: 30_000 },
        session: { maxLifetimeMs: 3_000, heartbeatIntervalMs: 1_000, warnBeforeMs: [2_000] },
      },
    },
  });
  user = await signedIn(gw.url);
});

after(async () => {
  await user?.cleanup();
  await gw?.close();
  await upstream?.close();
});

function rawRequest(
  url: string,
  headers: Record<string, string>,
): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: u.hostname, port: u.port, path: u.pathname, headers, agent: false },
      (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode!, body, headers: res.headers }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

test('curl through the tunnel; local credentials never reach the upstream', async (t) => {
  const tunnel = await spawnConnect(user.env, ['api']);
  t.after(() => tunnel.child.kill('SIGKILL'));
  const url = tunnel.doc.url as string;
  assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
  assert.equal(tunnel.doc.target, 'api');
  assert.equal(typeof tunnel.doc.session_id, 'string');
  assert.equal(typeof tunnel.doc.idle_timeout_s, 'number');
  assert.ok(!Number.isNaN(Date.parse(tunnel.doc.expires_at as string)));
  assert.match(tunnel.stderr(), /listening on http:\/\/127\.0\.0\.1/);
  assert.match(tunnel.stderr(), /idle timeout 15m/);

  const { stdout } = await run('curl', [
    '-sS',
    '-H',
    'Authorization: Bearer local-client-token',
    '-H',
    'Cookie: grafana_session=abc',
    '-H',
    'X-Custom: kept',
    '-X',
    'POST',
    '--data',
    'hello=world',
    `${url}/echo/path?q=1&r=two`,
  ]);
  const echoed = JSON.parse(stdout) as {
    method: string;
    url: string;
    headers: Record<string, string>;
    body: string;
  };
  assert.equal(echoed.method, 'POST');
  assert.equal(echoed.url, '/echo/path?q=1&r=two');
  assert.equal(echoed.body, 'hello=world');
  assert.equal(echoed.headers['x-custom'], 'kept');
  assert.equal(echoed.headers.cookie, undefined);
  const auth = echoed.headers.authorization;
  assert.ok(auth === undefined || !auth.includes('local-client-token'), `got ${auth}`);
  for (const seen of upstream.seen) {
    assert.ok(!JSON.stringify(seen.headers).includes('local-client-token'));
  }

  // The registry lists the tunnel while it runs.
  const records = await readdir(tunnelsDir(user.stateDir));
  assert.deepEqual(records, [`${tunnel.child.pid}.json`]);
  const record = JSON.parse(
    await readFile(path.join(tunnelsDir(user.stateDir), records[0]!), 'utf8'),
  ) as Record<string, unknown>;
  assert.equal(record.localUrl, url);
  assert.equal(record.sessionId, tunnel.doc.session_id);
  assert.equal(record.target, 'api');

  // Ctrl-C: teardown ends the session at the gateway and removes the record.
  tunnel.child.kill('SIGINT');
  assert.equal(await tunnel.exited, 130);
  assert.match(tunnel.stderr(), /interrupted; session for api ended/);
  assert.deepEqual(await readdir(tunnelsDir(user.stateDir)), []);
  const state = gw.sessions.read(tunnel.doc.session_id as string);
  assert.equal(state?.state, 'ended');
  await assert.rejects(run('curl', ['-sS', '--max-time', '5', url]), /Failed to connect|refused/i);
});

test('a foreign Host or Origin is refused; the secret is demanded when required', async (t) => {
  const tunnel = await spawnConnect(user.env, ['api', '--require-secret']);
  t.after(() => tunnel.child.kill('SIGKILL'));
  const url = tunnel.doc.url as string;
  const secret = tunnel.doc.secret as string;
  assert.equal(typeof secret, 'string');
  assert.ok(secret.length >= 40);
  assert.ok(tunnel.stderr().includes(secret), 'printed for the person');
  const host = url.slice('http://'.length);
  const before = upstream.seen.length;

  const rebinding = await rawRequest(`${url}/echo`, {
    host: 'evil.example',
    'x-logproxy-secret': secret,
  });
  assert.equal(rebinding.status, 421);
  const origin = await rawRequest(`${url}/echo`, {
    host,
    origin: 'https://evil.example',
    'x-logproxy-secret': secret,
  });
  assert.equal(origin.status, 403);
  assert.equal(origin.headers['access-control-allow-origin'], undefined);
  const noSecret = await rawRequest(`${url}/echo`, { host });
  assert.equal(noSecret.status, 401);
  assert.equal(upstream.seen.length, before, 'nothing refused reached the upstream');

  const ok = await rawRequest(`${url}/echo`, { host, 'x-logproxy-secret': secret });
  assert.equal(ok.status, 200);
  const echoed = JSON.parse(ok.body) as { headers: Record<string, string> };
  assert.equal(echoed.headers['x-logproxy-secret'], undefined, 'the secret stays local');
  const bearer = await rawRequest(`${url}/echo`, { host, authorization: `Bearer ${secret}` });
  assert.equal(bearer.status, 200);
  assert.ok(!bearer.body.includes(secret));
  assert.equal(bearer.headers['access-control-allow-origin'], undefined);

  const record = await readFile(
    path.join(tunnelsDir(user.stateDir), `${tunnel.child.pid}.json`),
    'utf8',
  );
  assert.ok(!record.includes(secret), 'the registry never holds the secret');
  assert.equal(JSON.parse(record).secretRequired, true);
  tunnel.child.kill('SIGTERM');
  assert.equal(await tunnel.exited, 130);
});

test('a non-loopback --address is a usage error that says why', async () => {
  const child = await run(process.execPath, [CLI_BIN, 'connect', 'api', '--address', '0.0.0.0'], {
    env: { PATH: process.env.PATH, ...user.env },
  }).catch((e: { code: number; stderr: string }) => e);
  assert.equal((child as { code: number }).code, 2);
  assert.match((child as { stderr: string }).stderr, /not a loopback address.*your access/s);
});

test('--unix-socket listens on a 0600 socket that curl can use', async (t) => {
  const sock = path.join(user.dir, 'api.sock');
  const tunnel = await spawnConnect(user.env, ['api', '--unix-socket', sock]);
  t.after(() => tunnel.child.kill('SIGKILL'));
  assert.equal(tunnel.doc.unix_socket, sock);
  assert.equal((await stat(sock)).mode & 0o777, 0o600);
  const { stdout } = await run('curl', ['-sS', '--unix-socket', sock, 'http://localhost/echo/s']);
  assert.equal(JSON.parse(stdout).url, '/echo/s');
  tunnel.child.kill('SIGINT');
  assert.equal(await tunnel.exited, 130);
  await assert.rejects(stat(sock), /ENOENT/);
});

test('WebSocket upgrades pass through; a foreign Origin cannot open one', async (t) => {
  const tunnel = await spawnConnect(user.env, ['api']);
  t.after(() => tunnel.child.kill('SIGKILL'));
  const wsUrl = (tunnel.doc.url as string).replace('http:', 'ws:') + '/ws/feed';

  const ws = new WebSocket(wsUrl, { headers: { authorization: 'Bearer local-client-token' } });
  t.after(() => ws.terminate());
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
  ws.send('ping');
  const reply = await new Promise<string>((r) => ws.once('message', (d) => r(String(d))));
  assert.equal(reply, 'echo:ping');
  const seen = upstream.seen.filter((s) => s.url === '/ws/feed').at(-1)!;
  assert.ok(!JSON.stringify(seen.headers).includes('local-client-token'));
  ws.close();

  const evil = new WebSocket(wsUrl, { origin: 'https://evil.example' });
  const status = await new Promise<number>((resolve) => {
    evil.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
    evil.once('open', () => resolve(101));
    evil.once('error', () => undefined);
  });
  assert.equal(status, 403);
  tunnel.child.kill('SIGINT');
  assert.equal(await tunnel.exited, 130);
});

/** The real CLI on a pseudo-terminal (`script`); typing \x03 into it is a real Ctrl-C. */
function onTerminal(t: { after(fn: () => void): void }, target: string) {
  const child = spawn(
    'script',
    ['-qefc', `${process.execPath} ${CLI_BIN} connect ${target}`, '/dev/null'],
    {
      env: { PATH: process.env.PATH, TERM: 'xterm', ...user.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    },
  );
  t.after(() => child.kill('SIGKILL'));
  let text = '';
  child.stdout!.setEncoding('utf8').on('data', (s: string) => (text += s));
  return {
    out: () => text,
    write: (s: string) => child.stdin!.write(s),
    exited: new Promise<number | null>((r) => child.once('exit', (code) => r(code))),
  };
}

test('on a terminal: a live status line redrawn in place; Ctrl-C exits 130', async (t) => {
  const { out, write, exited } = onTerminal(t, 'api');
  await until(() => (out().match(/closes in/g) ?? []).length >= 2, 'the status line redrawn');
  write('\x03');
  assert.equal(await exited, 130);

  const text = out();
  const listening = text.indexOf('tunnel to api listening on http://127.0.0.1:');
  assert.ok(listening >= 0, text);
  assert.ok(text.indexOf('api · ends in') > listening, 'status line only after the address');
  assert.ok(text.includes('\r\x1b[2K'), 'redrawn in place');
  assert.match(text, /interrupted; session for api ended\r\n$/, 'the end is the last thing');
});

test('on a terminal the session is renewed inline: a new code, then traffic resumes', async (t) => {
  const { out, write, exited } = onTerminal(t, 'short');
  await until(() => out().includes('listening on'), 'the tunnel');
  const url = /listening on (http:\/\/[\d.:]+)/.exec(out())![1]!;
  await until(() => out().includes('signed in again'), 'the inline re-authentication', 60_000);
  const res = await fetch(`${url}/echo/after`);
  assert.equal(res.status, 200);
  await res.arrayBuffer();
  write('\x03');
  assert.equal(await exited, 130);

  const text = out();
  assert.match(
    text,
    /warning: the session for short ends in \d+s \(maximum lifetime\); you will be asked to sign in again/,
  );
  assert.match(text, /the session needs a new sign-in; requests wait meanwhile/);
  assert.match(
    text,
    /to continue, open http:\/\/127\.0\.0\.1:\d+\/oidc\/device\?user_code=\S+ and confirm the code [A-Z]{4}-[A-Z]{4}/,
  );
});
