/**
 * `logproxy tail` end to end: the real CLI (bin/logproxy.js) against a real gateway with a
 * real file target and a demo target, real tokens from an auto-approved device login, and
 * real pipes into jq and head.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { spawn } from 'node:child_process';
import { CLI_BIN, cliEnv, runCli, runShell, signIn, type SignedIn } from '../tail/cli-env.js';

const LINES = 200;
let dir: string;
let file: string;
let bigFile: string;
const BIG_LINES = 100_000;
let expected: string[];
let gw: TestGateway;
let user: SignedIn;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'lp-tail-e2e-'));
  file = path.join(dir, 'app.log');
  expected = [];
  for (let i = 1; i <= LINES; i++) {
    expected.push(
      i % 10 === 0
        ? JSON.stringify({ level: i % 20 === 0 ? 'error' : 'warn', msg: `event ${i}`, n: i })
        : `2026-01-31 line ${i} "quoted" \\ tab\there ${i % 7 === 0 ? 'ERROR' : 'ok'}`,
    );
  }
  await writeFile(file, expected.map((l) => `${l}\n`).join(''));
  bigFile = path.join(dir, 'big.log');
  await writeFile(
    bigFile,
    Array.from({ length: BIG_LINES }, (_, i) => `${i} ${'x'.repeat(90)}\n`).join(''),
  );
  gw = await startGateway({
    // The default data plane with a short keepalive, so idle follows show it quickly.
    dataPlaneDeps: { keepaliveMs: 500 },
    targets: {
      app: { source: { type: 'file', paths: [file] } },
      big: { source: { type: 'file', paths: [bigFile] } },
      demo: { source: { type: 'demo', ratePerSec: 20, historyLines: 50, seed: 7 } },
    },
  });
  user = await signIn(gw.url, gw.issuer);
});

after(async () => {
  await gw?.close();
  await user?.cleanup();
  await rm(dir, { recursive: true, force: true });
});

test('without -f: prints every line as written (raw) and exits 0', async () => {
  const r = await runCli(['tail', 'app', '-o', 'raw'], user.env);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, expected.map((l) => `${l}\n`).join(''));
  assert.equal(r.stderr, '');
});

test('-o json | jq -c . parses every line, with the stable fields', async () => {
  const r = await runShell(
    'set -o pipefail; $LOGPROXY tail app -o json | jq -c "{line, ts, source, cursor, level}"',
    user.env,
  );
  assert.equal(r.code, 0, r.stderr);
  const objects = r.stdout
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.equal(objects.length, LINES);
  assert.deepEqual(
    objects.map((o) => o.line),
    expected,
  );
  for (const o of objects) {
    assert.equal(typeof o.ts, 'string');
    assert.equal(o.source, file);
    assert.equal(typeof o.cursor, 'string');
  }
  assert.equal(objects[19]!.level, 'error');
  assert.equal(objects[9]!.level, 'warn');
});

test('jq recipes from docs/tail.md work: errors only, count by level', async () => {
  const errors = await runShell(
    `set -o pipefail; $LOGPROXY tail app -o json | jq -r 'select(.level == "error") | .fields.msg'`,
    user.env,
  );
  assert.equal(errors.code, 0, errors.stderr);
  assert.deepEqual(errors.stdout.trimEnd().split('\n'), [
    'event 20',
    'event 40',
    'event 60',
    'event 80',
    'event 100',
    'event 120',
    'event 140',
    'event 160',
    'event 180',
    'event 200',
  ]);
  const counts = await runShell(
    `set -o pipefail; $LOGPROXY tail app -o json | jq -s -c 'map(.level // "none") | group_by(.) | map({(.[0]): length}) | add'`,
    user.env,
  );
  assert.equal(counts.code, 0, counts.stderr);
  assert.deepEqual(JSON.parse(counts.stdout), { error: 10, warn: 10, none: 180 });
});

test('-n N prints the last N lines; --since picks by time', async () => {
  const last = await runCli(['tail', 'app', '-n', '3', '-o', 'raw'], user.env);
  assert.equal(last.code, 0, last.stderr);
  assert.deepEqual(last.stdout.trimEnd().split('\n'), expected.slice(-3));

  const recent = await runCli(['tail', 'app', '--since', '1h', '-o', 'raw'], user.env);
  assert.equal(recent.code, 0, recent.stderr);
  assert.equal(recent.stdout.trimEnd().split('\n').length, LINES);

  const future = new Date(Date.now() + 3_600_000).toISOString();
  const none = await runCli(['tail', 'app', '--since', future, '-o', 'raw'], user.env);
  assert.equal(none.code, 0, none.stderr);
  assert.equal(none.stdout, '');
});

test('--grep filters at the gateway', async () => {
  const r = await runCli(['tail', 'app', '--grep', 'ERROR', '-o', 'raw'], user.env);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(
    r.stdout.trimEnd().split('\n'),
    expected.filter((l) => l.includes('ERROR')),
  );
});

test('text output off a TTY and with NO_COLOR carries no escape codes', async () => {
  for (const env of [{}, { NO_COLOR: '1', FORCE_COLOR: '1' }]) {
    const r = await runCli(['tail', 'app', '-n', '30'], { ...user.env, ...env });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trimEnd().split('\n').length, 30);
    assert.ok(!r.stdout.includes('\u001b'), JSON.stringify(env));
    assert.match(r.stdout, /^\d\d:\d\d:\d\d\.\d{3} app\.log /m);
    assert.match(r.stdout, / ERROR \{"level":"error"/);
  }
  const forced = await runCli(['tail', 'app', '-n', '30'], { ...user.env, FORCE_COLOR: '1' });
  assert.ok(forced.stdout.includes('\u001b['), 'FORCE_COLOR shows the colouring is real');
  const off = await runCli(['tail', 'app', '-n', '30', '--no-color'], {
    ...user.env,
    FORCE_COLOR: '1',
  });
  assert.ok(!off.stdout.includes('\u001b'), '--no-color wins over FORCE_COLOR');
});

test('a bad --grep is a usage error (exit 2) naming the pattern', async () => {
  const local = await runCli(['tail', 'app', '--grep', '(unclosed'], user.env);
  assert.equal(local.code, 2);
  assert.match(local.stderr, /--grep "\(unclosed" is not a valid regular expression/);
  assert.equal(local.stdout, '');
  // Valid for JavaScript, refused by the gateway (exponential backtracking guard).
  const remote = await runCli(['tail', 'app', '--grep', '(a+)+$'], user.env);
  assert.equal(remote.code, 2, remote.stderr);
  assert.match(remote.stderr, /--grep "\(a\+\)\+\$"/);
  assert.doesNotMatch(remote.stderr, /\n\s+at /, 'no stack trace');
});

test('bad --since and -n are usage errors', async () => {
  for (const args of [
    ['--since', 'yesterday'],
    ['--since', '15'],
    ['-n', '-3'],
    ['-n', 'ten'],
    ['-o', 'yaml'],
  ]) {
    const r = await runCli(['tail', 'app', ...args], user.env);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.equal(r.stdout, '');
  }
});

test('tail -f | head -n 3 exits 0 quietly and ends its session at the gateway', async () => {
  const before = new Set(gw.sessions.list('alice').map((s) => s.id));
  const r = await runShell(
    'set -o pipefail; $LOGPROXY tail demo -f -o raw | head -n 3; echo "status=$?" >&2',
    user.env,
  );
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trimEnd().split('\n').length, 3);
  assert.equal(r.stderr, 'status=0\n', 'nothing on stderr but our own status line');

  const mine = gw.sessions.list('alice').filter((s) => !before.has(s.id) && s.target === 'demo');
  assert.equal(mine.length, 1, 'tail opened exactly one session');
  assert.equal(mine[0]!.state, 'ended');
  assert.equal(mine[0]!.end_reason, 'ended');
});

test('an unknown target fails with the gateway reason, not a stack trace', async () => {
  const r = await runCli(['tail', 'nope'], user.env);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /no such target/);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
});

test('with a `logproxy connect` running, tail reads its session and opens none', async (t) => {
  const connect = spawn(process.execPath, [CLI_BIN, 'connect', 'app', '--json'], {
    env: cliEnv(user.env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const closed = new Promise((resolve) => connect.once('close', resolve));
  t.after(async () => {
    connect.kill('SIGINT');
    await closed;
  });
  let doc = '';
  connect.stdout.setEncoding('utf8').on('data', (s: string) => (doc += s));
  const deadline = Date.now() + 20_000;
  while (!doc.includes('\n')) {
    if (Date.now() > deadline) throw new Error('connect did not start');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const tunnelSession = (JSON.parse(doc) as { session_id: string }).session_id;
  const before = gw.sessions.list('alice').length;

  // No TARGET: exactly one tunnel runs, so that one.
  const r = await runCli(['tail', '-n', '5', '-o', 'raw'], user.env);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.stdout.trimEnd().split('\n'), expected.slice(-5));
  assert.equal(gw.sessions.list('alice').length, before, 'no second session');
  assert.equal(gw.sessions.read(tunnelSession)?.state, 'active', "the tunnel's session lives on");

  const named = await runCli(['tail', 'app', '-n', '1', '-o', 'raw'], user.env);
  assert.equal(named.code, 0, named.stderr);
  assert.equal(gw.sessions.list('alice').length, before);
});

test('tail -f ends with exit 12 and says why when an administrator revokes the session', async () => {
  const before = new Set(gw.sessions.list('alice').map((s) => s.id));
  const child = spawn(process.execPath, [CLI_BIN, 'tail', 'demo', '-f', '-o', 'raw'], {
    env: cliEnv(user.env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const code = new Promise<number | null>((resolve) => child.once('close', resolve));
  const deadline = Date.now() + 20_000;
  while (!stdout.includes('\n')) {
    if (Date.now() > deadline) throw new Error(`no output; stderr: ${stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const mine = gw.sessions.list('alice').find((s) => !before.has(s.id) && s.state === 'active');
  assert.ok(mine, 'tail opened a session');
  gw.sessions.revoke(mine.id, 'alice');
  assert.equal(await code, 12, stderr);
  assert.match(stderr, /revoked by an administrator/);
  assert.doesNotMatch(stderr, /\n\s+at /);
});

test('a reader slower than tail still gets every line, and tail exits once it is all out', async () => {
  // The reader starts late: stdout's buffer is full when the stream ends, and tail must wait
  // for it to empty before exiting (process.exit would drop what is still buffered).
  const r = await runShell(
    'set -o pipefail; $LOGPROXY tail big -o raw | (sleep 2; wc -l)',
    user.env,
    60_000,
  );
  assert.equal(r.code, 0, r.stderr);
  assert.equal(Number(r.stdout.trim()), BIG_LINES);
});
