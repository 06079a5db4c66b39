/**
 * The real CLI against a real gateway with its embedded provider (auto-approving alice):
 * login, status, targets, logout with revocation, logout with the provider gone, and the
 * not-signed-in paths. Credentials go to a 0600 file (--insecure-storage): the keychain has
 * its own tests (test/auth/token-store*.test.ts).
 */
import assert from 'node:assert/strict';
import { readdir, readFile, writeFile, cp, stat } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createCliEnv, type CliEnv } from '../helpers/cli.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import type { StatusDocument } from '../../src/cli/status.js';
import { removeTunnelRecord, writeTunnelRecord } from '../../src/tunnel/registry.js';
import type { TargetList } from '../../src/protocol/api.js';

describe('login, status, targets and logout against a real gateway', () => {
  let gw: TestGateway;
  let cli: CliEnv;

  before(async () => {
    gw = await startGateway({
      targets: {
        'prod-logs': {
          description: 'production application logs',
          source: { type: 'demo', ratePerSec: 1, historyLines: 5, seed: 2 },
          session: { idleTimeoutMs: 5 * 60_000, maxLifetimeMs: 3_600_000 },
        },
        'staging-logs': { source: { type: 'demo', ratePerSec: 1, historyLines: 5, seed: 3 } },
      },
    });
    cli = await createCliEnv();
  });
  after(async () => {
    await cli.cleanup();
    await gw.close();
  });

  test('not signed in: status and targets exit 3 and name `logproxy login`', async () => {
    const status = await cli.run(['status', '--json']);
    assert.equal(status.code, 3, status.stderr);
    assert.equal((JSON.parse(status.stdout) as StatusDocument).signed_in, false);
    assert.match(status.stderr, /not signed in .*run `logproxy login/);

    const targets = await cli.run(['targets', '--gateway', gw.url]);
    assert.equal(targets.code, 3, targets.stderr);
    assert.match(targets.stderr, /run `logproxy login/);
  });

  test('no keychain and no --insecure-storage: a clear failure offering the file (exit 1)', async () => {
    // The sealed environment has no D-Bus session bus, so no Secret Service.
    const r = await cli.run(['login', '--gateway', gw.url]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /no OS keychain is available .*--insecure-storage/);
    assert.doesNotMatch(r.stderr, /one-time code/, 'fails before asking for a code');
  });

  test('login shows the code on stderr and ends with "Logged in to ... as alice"', async () => {
    const r = await cli.run(['--verbose', 'login', '--gateway', gw.url, '--insecure-storage']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '', 'login prints nothing on stdout');
    // --verbose traces the device flow with every secret redacted.
    assert.match(r.stderr, /device_code=\[REDACTED\]&/);
    assert.match(r.stderr, /"refresh_token":"\[REDACTED\]"/);
    assert.doesNotMatch(r.stderr, /eyJ/, 'no JWT in the trace');
    assert.match(r.stderr, /First copy your one-time code: [A-Z]{4}-[A-Z]{4}/);
    assert.match(r.stderr, new RegExp(`open ${gw.issuer}/device in a browser`));
    assert.match(r.stderr, /tokens are stored unencrypted/);
    assert.match(r.stderr, new RegExp(`Logged in to ${gw.url} as alice \\(profile default\\)`));

    const files = await readdir(path.join(cli.configDir, 'credentials'));
    assert.equal(files.length, 1);
    const mode = (await stat(path.join(cli.configDir, 'credentials', files[0]!))).mode & 0o777;
    assert.equal(mode, 0o600);
  });

  test('status shows subject, expiry, refresh token and storage; --json too', async () => {
    const text = await cli.run(['status']);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, new RegExp(`Gateway: +${gw.url} \\(profile default\\)`));
    assert.match(text.stdout, /Signed in as: +alice/);
    assert.match(text.stdout, /Access token: +valid until .* \(in \d+m/);
    assert.match(text.stdout, /Refresh token: +present/);
    assert.match(text.stdout, /Credentials: +.*credentials.*\(0600 file\)/);

    const json = await cli.run(['status', '--json']);
    const doc = JSON.parse(json.stdout) as StatusDocument;
    assert.equal(doc.signed_in, true);
    assert.equal(doc.subject, 'alice');
    assert.equal(doc.gateway, gw.url);
    assert.equal(doc.refresh_token, true);
    assert.equal(doc.store?.kind, 'file');
    assert.ok(Date.parse(doc.access_token_expires_at!) > Date.now());
    assert.deepEqual(
      doc.profiles.map((p) => [p.profile, p.subject, p.current]),
      [['default', 'alice', true]],
    );
    assert.doesNotMatch(json.stdout + text.stdout, /eyJ/, 'no token in the output');
  });

  test('status lists live tunnels from the registry and drops dead ones', async () => {
    const stateDir = path.join(cli.configDir, 'state');
    const record = {
      version: 1 as const,
      target: 'prod-logs',
      gateway: gw.url,
      profile: 'default',
      localUrl: 'http://127.0.0.1:41234',
      sessionId: 'sess-live',
      expiresAt: new Date(Date.now() + 3_600_000).toISOString(),
      startedAt: new Date().toISOString(),
      secretRequired: false,
    };
    // This test process is alive; a pid far above pid_max never is.
    await writeTunnelRecord(stateDir, { ...record, pid: process.pid });
    await writeTunnelRecord(stateDir, { ...record, pid: 99_999_999, sessionId: 'sess-dead' });

    const json = await cli.run(['status', '--json']);
    const doc = JSON.parse(json.stdout) as StatusDocument;
    assert.deepEqual(
      doc.tunnels.map((t) => [t.pid, t.target, t.local_url, t.session_id]),
      [[process.pid, 'prod-logs', 'http://127.0.0.1:41234', 'sess-live']],
    );
    const text = await cli.run(['status']);
    assert.match(
      text.stdout,
      /Tunnels:\n +TARGET +LOCAL URL +SESSION +ENDS +PID\n +prod-logs +http:\/\/127\.0\.0\.1:41234 +sess-live/,
    );
    await removeTunnelRecord(stateDir, process.pid);
  });

  test('targets prints a table and --json the gateway document', async () => {
    const table = await cli.run(['targets']);
    assert.equal(table.code, 0, table.stderr);
    const lines = table.stdout.trimEnd().split('\n');
    assert.match(lines[0]!, /^NAME +SOURCE +IDLE TIMEOUT +MAX LIFETIME +DESCRIPTION$/);
    assert.match(lines[1]!, /^prod-logs +demo +5m +1h +production application logs$/);
    assert.match(lines[2]!, /^staging-logs +demo +15m +2h$/);

    const json = await cli.run(['targets', '--json']);
    const list = JSON.parse(json.stdout) as TargetList;
    assert.deepEqual(list.targets.map((t) => t.name).sort(), ['prod-logs', 'staging-logs']);
  });

  test('--verbose traces HTTP to stderr with the token redacted', async () => {
    const r = await cli.run(['--verbose', 'targets', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`\u2192 GET ${gw.url}/v1/targets`));
    assert.match(r.stderr, /authorization: Bearer \[REDACTED\]/);
    assert.match(r.stderr, /\u2190 200 \(\d+ ms\)/);
    assert.doesNotMatch(r.stderr, /eyJ/);
  });

  test('logout revokes the refresh token: a saved copy can no longer refresh (exit 3)', async () => {
    // Keep a copy of the signed-in config dir to replay after logout.
    const copy = `${cli.configDir}-copy`;
    await cp(cli.configDir, copy, { recursive: true });

    const out = await cli.run(['logout']);
    assert.equal(out.code, 0, out.stderr);
    assert.match(out.stderr, new RegExp(`Logged out of ${gw.url} \\(profile default\\)`));
    assert.doesNotMatch(out.stderr, /could not revoke/);
    assert.deepEqual(await readdir(path.join(cli.configDir, 'credentials')), []);
    const status = await cli.run(['status']);
    assert.equal(status.code, 3);

    // The copy still holds the (now revoked) refresh token; make its access token look expired
    // so the next command must refresh.
    const dir = path.join(copy, 'credentials');
    const [file] = await readdir(dir);
    const creds = JSON.parse(await readFile(path.join(dir, file!), 'utf8')) as Record<
      string,
      unknown
    >;
    creds.accessTokenExpiresAt = Date.now() - 1000;
    await writeFile(path.join(dir, file!), JSON.stringify(creds), { mode: 0o600 });
    const replay = await cli.run(['targets'], { env: { LOGPROXY_CONFIG_DIR: copy } });
    assert.equal(replay.code, 3, replay.stderr);
    assert.match(replay.stderr, /run `logproxy login/);
  });

  test('logout when not signed in is not an error', async () => {
    const r = await cli.run(['logout', '--gateway', gw.url]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /Not signed in/);
  });
});

describe('logout with the identity provider unreachable', () => {
  test('deletes locally, says it could not revoke, exits 0', async (t) => {
    const gw = await startGateway();
    const cli = await createCliEnv({ LOGPROXY_HTTP_TIMEOUT: '5s' });
    t.after(() => cli.cleanup());
    let closed = false;
    t.after(() => (closed ? undefined : gw.close()));

    const login = await cli.run(['login', '--gateway', gw.url, '--insecure-storage']);
    assert.equal(login.code, 0, login.stderr);
    await gw.close();
    closed = true;

    const r = await cli.run(['logout']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /could not revoke the refresh token .*connection refused/);
    assert.match(r.stderr, /Logged out of/);
    assert.deepEqual(await readdir(path.join(cli.configDir, 'credentials')), []);
    const status = await cli.run(['status', '--json']);
    assert.equal(status.code, 3);
    assert.deepEqual((JSON.parse(status.stdout) as StatusDocument).profiles, []);
  });
});

describe('where login may open a browser', () => {
  test('always on macOS and Windows; on Linux only with a display', async () => {
    const { canOpenBrowser } = await import('../../src/cli/login.js');
    assert.equal(canOpenBrowser({}, 'darwin'), true);
    assert.equal(canOpenBrowser({}, 'win32'), true);
    assert.equal(canOpenBrowser({}, 'linux'), false);
    assert.equal(canOpenBrowser({ DISPLAY: ':0' }, 'linux'), true);
    assert.equal(canOpenBrowser({ WAYLAND_DISPLAY: 'wayland-0' }, 'linux'), true);
  });
});
