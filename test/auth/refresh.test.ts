import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cp, mkdir, mkdtemp, readdir, rm, utimes } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { FileTokenStore } from '../../src/auth/file-store.js';
import { getOidcConfiguration } from '../../src/auth/oidc-config.js';
import {
  createTokenManager,
  refreshLockPath,
  type TokenManagerEvent,
} from '../../src/auth/refresh.js';
import type { StoredCredentials } from '../../src/auth/types.js';
import { configPaths } from '../../src/cli/config.js';
import { exitCodeForError, ExitCodes } from '../../src/cli/exit-codes.js';
import { ManualClock } from '../../src/util/clock.js';
import { ErrorCodes, isLogproxyError, type LogproxyError } from '../../src/util/errors.js';
import { startDevIdp, type DevIdp } from '../helpers/dev-idp.js';
import { deviceLogin, discover, revokeToken } from '../helpers/device-token.js';

const WORKER = fileURLToPath(new URL('./fixtures/refresh-worker.js', import.meta.url));
const GATEWAY = 'https://logs.test.example';
const PROFILE = 'default';

interface Setup {
  idp: DevIdp;
  /** POSTs the provider received at its token endpoint since the last `resetCount()`. */
  tokenPosts(): number;
  resetCount(): void;
  configDir: string;
  store: FileTokenStore;
  locksDir: string;
  seeded: StoredCredentials;
  verify(token: string): Promise<string>;
}

/** A real embedded provider, a real device login, and its tokens stored with an expired AT. */
async function setup(
  t: { after(fn: () => Promise<void>): void },
  expiresAt = Date.now() - 1_000,
): Promise<Setup> {
  const idp = await startDevIdp({ audience: GATEWAY });
  t.after(() => idp.close());
  const meta = await discover(idp.issuer);
  const tokenPath = new URL(meta.token_endpoint).pathname;
  let posts = 0;
  // Runs before the provider's handler and only looks at the request line, so the body is
  // left for the provider. Nothing but refresh grants reaches the token endpoint after setup.
  idp.server.prependListener('request', (req: IncomingMessage) => {
    if (req.method === 'POST' && req.url?.split('?')[0] === tokenPath) posts += 1;
  });

  const tokens = await deviceLogin(idp.issuer, idp.clientId, { audience: idp.audience });
  const configDir = await mkdtemp(path.join(os.tmpdir(), 'logproxy-refresh-'));
  t.after(() => rm(configDir, { recursive: true, force: true }));
  const paths = configPaths({ LOGPROXY_CONFIG_DIR: configDir });
  const store = new FileTokenStore(paths.credentialsDir);
  const seeded: StoredCredentials = {
    version: 1,
    gateway: GATEWAY,
    profile: PROFILE,
    issuer: idp.issuer,
    clientId: idp.clientId,
    audience: idp.audience,
    subject: 'alice',
    accessToken: tokens.accessToken,
    accessTokenExpiresAt: expiresAt,
    refreshToken: tokens.refreshToken,
    idToken: tokens.idToken,
  };
  await store.write(seeded);

  const jwks = createRemoteJWKSet(new URL(meta.jwks_uri));
  posts = 0;
  return {
    idp,
    tokenPosts: () => posts,
    resetCount: () => {
      posts = 0;
    },
    configDir,
    store,
    locksDir: paths.locksDir,
    seeded,
    async verify(token) {
      const { payload } = await jwtVerify(token, jwks, {
        issuer: idp.issuer,
        audience: idp.audience,
      });
      return String(payload.sub);
    },
  };
}

interface WorkerResult {
  ok: boolean;
  token?: string;
  code?: string;
  message?: string;
  events: string[];
}

/** Starts `n` worker processes, waits until each is ready, then releases them together. */
async function runWorkers(
  t: { after(fn: () => Promise<void>): void },
  n: number,
  configDir: string,
): Promise<WorkerResult[]> {
  const env = { ...process.env, LOGPROXY_CONFIG_DIR: configDir };
  const children = Array.from({ length: n }, () =>
    spawn(process.execPath, [WORKER, GATEWAY, PROFILE], { env, stdio: ['pipe', 'pipe', 'pipe'] }),
  );
  t.after(async () => {
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  });

  const outputs = children.map((child) => {
    const lines: string[] = [];
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const rl = createInterface({ input: child.stdout });
    const ready = new Promise<void>((resolve, reject) => {
      rl.on('line', (line) => {
        if (line === 'ready') resolve();
        else lines.push(line);
      });
      child.once('exit', (code) => reject(new Error(`worker exited ${code}: ${stderr}`)));
    });
    const done = new Promise<WorkerResult>((resolve, reject) => {
      child.once('exit', (code) => {
        const last = lines.at(-1);
        if (!last) reject(new Error(`worker exited ${code} without a result: ${stderr}`));
        else resolve(JSON.parse(last) as WorkerResult);
      });
    });
    return { ready, done };
  });

  await Promise.all(outputs.map((o) => o.ready));
  for (const child of children) child.stdin.end('go\n');
  return Promise.all(outputs.map((o) => o.done));
}

test('8 processes refreshing one profile at once: all get a valid token, the provider sees one refresh', async (t) => {
  const s = await setup(t);
  const results = await runWorkers(t, 8, s.configDir);

  for (const r of results) assert.equal(r.ok, true, r.message);
  for (const r of results) assert.equal(await s.verify(r.token!), 'alice');
  assert.equal(s.tokenPosts(), 1, 'exactly one refresh_token grant reached the provider');
  const refreshed = results.filter((r) => r.events.includes('refreshed'));
  const reused = results.filter((r) => r.events.includes('refreshed-elsewhere'));
  assert.equal(refreshed.length, 1);
  assert.equal(reused.length, 7);
  assert.equal(new Set(results.map((r) => r.token)).size, 1);
  assert.notEqual(results[0]!.token, s.seeded.accessToken);

  const stored = await s.store.read(GATEWAY, PROFILE);
  assert.ok(stored?.refreshToken);
  assert.notEqual(stored.refreshToken, s.seeded.refreshToken, 'the refresh token rotated');
  assert.equal(stored.accessToken, results[0]!.token);

  // The stored (rotated) refresh token still works: the grant was not revoked for reuse.
  const after = createTokenManager({
    gateway: GATEWAY,
    profile: PROFILE,
    store: s.store,
    locksDir: s.locksDir,
  });
  const again = await after.refresh();
  assert.equal(await s.verify(again), 'alice');
  assert.equal(s.tokenPosts(), 2);
  assert.deepEqual(await readdir(s.locksDir), [], 'every lock was released');
});

test('a valid token is served without the network; concurrent callers share one refresh', async (t) => {
  const clock = new ManualClock(Date.now());
  const s = await setup(t, clock.now() + 5 * 60_000);
  const events: TokenManagerEvent[] = [];
  const tokens = createTokenManager({
    gateway: GATEWAY,
    profile: PROFILE,
    store: s.store,
    locksDir: s.locksDir,
    clock,
    onEvent: (e) => events.push(e),
  });

  assert.equal(await tokens.getAccessToken(), s.seeded.accessToken);
  assert.equal(s.tokenPosts(), 0);
  assert.equal(tokens.describe()?.subject, 'alice');
  assert.equal(tokens.describe()?.hasRefreshToken, true);
  assert.equal(tokens.describe()?.store, 'file');

  // Within the 60 s margin: due for refresh.
  clock.advance(4 * 60_000 + 30_000);
  const got = await Promise.all(Array.from({ length: 5 }, () => tokens.getAccessToken()));
  assert.equal(new Set(got).size, 1);
  assert.notEqual(got[0], s.seeded.accessToken);
  assert.equal(await s.verify(got[0]!), 'alice');
  assert.equal(s.tokenPosts(), 1);
  assert.deepEqual(
    events.map((e) => e.type),
    ['refreshed'],
  );
  assert.equal(events[0]?.type === 'refreshed' && events[0].rotated, true);
  const stored = await s.store.read(GATEWAY, PROFILE);
  assert.equal(stored?.accessToken, got[0]);
  assert.equal(stored?.refreshedAt, clock.now());
  assert.ok(stored?.authTime, 'auth_time was read from the tokens');
});

function assertSessionEnded(err: unknown): true {
  assert.ok(isLogproxyError(err, ErrorCodes.NOT_SIGNED_IN), String(err));
  assert.match(
    err.message,
    /^your session with https:\/\/logs\.test\.example has ended \(refresh token expired or revoked\); run `logproxy login --gateway https:\/\/logs\.test\.example`$/,
  );
  assert.equal(exitCodeForError(err.code), ExitCodes.NOT_SIGNED_IN);
  return true;
}

test('a lock left behind by a crashed process is taken over', async (t) => {
  const s = await setup(t);
  const lock = refreshLockPath(s.locksDir, GATEWAY, PROFILE);
  await mkdir(lock, { recursive: true });
  // Its holder stopped touching it a minute ago: it died.
  const minuteAgo = new Date(Date.now() - 60_000);
  await utimes(lock, minuteAgo, minuteAgo);

  const tokens = createTokenManager({
    gateway: GATEWAY,
    profile: PROFILE,
    store: s.store,
    locksDir: s.locksDir,
  });
  assert.equal(await s.verify(await tokens.getAccessToken()), 'alice');
  assert.equal(s.tokenPosts(), 1);
  assert.deepEqual(await readdir(s.locksDir), [], 'the taken-over lock was released');
});

test('a revoked refresh token ends the session with exit code 3 and a login hint', async (t) => {
  const s = await setup(t);
  await revokeToken(s.idp.issuer, s.idp.clientId, s.seeded.refreshToken!);
  const tokens = createTokenManager({
    gateway: GATEWAY,
    profile: PROFILE,
    store: s.store,
    locksDir: s.locksDir,
  });
  await assert.rejects(tokens.getAccessToken(), assertSessionEnded);
  assert.equal(s.tokenPosts(), 1);
  // The credentials stay, so `logout` can still clean up and `status` can say what happened.
  assert.equal((await s.store.read(GATEWAY, PROFILE))?.refreshToken, s.seeded.refreshToken);
});

test('without the shared lock and re-read, a stale copy reuses the refresh token and ends the session', async (t) => {
  const s = await setup(t);
  // A second config dir with a copy of the credentials: a process that neither shares the
  // lock nor sees the rotated token (what a refresh without lock + re-read amounts to).
  const otherDir = await mkdtemp(path.join(os.tmpdir(), 'logproxy-refresh-copy-'));
  t.after(() => rm(otherDir, { recursive: true, force: true }));
  await cp(s.configDir, otherDir, { recursive: true });
  const otherPaths = configPaths({ LOGPROXY_CONFIG_DIR: otherDir });

  const first = createTokenManager({
    gateway: GATEWAY,
    profile: PROFILE,
    store: s.store,
    locksDir: s.locksDir,
  });
  const stale = createTokenManager({
    gateway: GATEWAY,
    profile: PROFILE,
    store: new FileTokenStore(otherPaths.credentialsDir),
    locksDir: otherPaths.locksDir,
  });
  assert.equal(await s.verify(await first.getAccessToken()), 'alice');
  await assert.rejects(stale.getAccessToken(), assertSessionEnded);
  // Reuse detection revoked the whole grant: the first process is signed out too.
  await assert.rejects(first.refresh(), assertSessionEnded);
});

test('an unreachable provider is a retryable UNREACHABLE error and keeps the credentials', async (t) => {
  const s = await setup(t);
  const config = await getOidcConfiguration(s.idp.issuer, s.idp.clientId);
  await s.idp.close();
  const tokens = createTokenManager({
    gateway: GATEWAY,
    profile: PROFILE,
    store: s.store,
    locksDir: s.locksDir,
    oidc: config,
  });
  await assert.rejects(tokens.getAccessToken(), (err: LogproxyError) => {
    assert.ok(isLogproxyError(err, ErrorCodes.UNREACHABLE), String(err));
    assert.equal(err.retryable, true);
    assert.match(err.message, /could not reach the identity provider http:\/\/127\.0\.0\.1/);
    assert.ok(!err.message.includes(s.seeded.refreshToken!));
    return true;
  });
  assert.deepEqual(await s.store.read(GATEWAY, PROFILE), s.seeded);
});

test('no stored credentials: NOT_SIGNED_IN naming the gateway and the command', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'logproxy-refresh-empty-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const paths = configPaths({ LOGPROXY_CONFIG_DIR: dir });
  const tokens = createTokenManager({
    gateway: GATEWAY,
    profile: 'ops',
    store: new FileTokenStore(paths.credentialsDir),
    locksDir: paths.locksDir,
  });
  await assert.rejects(tokens.getAccessToken(), (err: unknown) => {
    assert.ok(isLogproxyError(err, ErrorCodes.NOT_SIGNED_IN));
    assert.equal(
      err.message,
      'you are not signed in to https://logs.test.example (profile ops); ' +
        'run `logproxy login --gateway https://logs.test.example --profile ops`',
    );
    return true;
  });
  assert.equal(tokens.describe(), undefined);
});
