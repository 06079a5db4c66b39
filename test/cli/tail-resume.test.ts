/**
 * "Never loses a line": `logproxy tail -f` over a real file that a writer keeps appending
 * numbered lines to, while the real gateway is restarted three times (same port and data dir,
 * so tokens stay valid; each restart forgets every session), access tokens expire every few
 * seconds (refresh), and sessions reach a short maximum lifetime whose new session needs a
 * fresh sign-in (auto-approved device login, inline). Every line must come out exactly once,
 * in order.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { appendFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  TEST_GATEWAY_AUDIENCE,
  TEST_GATEWAY_CLIENT_ID,
  spawnGateway,
  startGateway,
  type SpawnedGateway,
  type StartGatewayOptions,
  type TestGateway,
} from '../helpers/gateway.js';
import { CLI_BIN, cliEnv, signIn } from '../tail/cli-env.js';

let context = (): string => '';

async function waitFor(what: string, check: () => boolean, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${context()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

interface Scenario {
  /** Run the gateway as a child process (else in this process). */
  processes: boolean;
  restarts: number;
  /** Sessions end after this long; the next one needs a new sign-in unless silentResume. */
  maxLifetimeMs: number;
  silentResume: boolean;
  expectReauth: boolean;
}

interface Restartable {
  url: string;
  issuer: string;
  /** Stops the gateway (the way `signal` would), waits a moment, starts it again. */
  restart(signal: 'SIGTERM' | 'SIGKILL'): Promise<void>;
  close(): Promise<void>;
}

/** Down long enough for tail to meet refused connections and back off. */
const DOWN_MS = 700;
const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** `logproxy-gateway` as a child process, restarted on the same port and data dir. */
async function childGateway(dir: string, file: string, scenario: Scenario): Promise<Restartable> {
  const yaml = (port: number): string => `listen: 127.0.0.1:${port}
auth:
  audience: ${TEST_GATEWAY_AUDIENCE}
  client_id: ${TEST_GATEWAY_CLIENT_ID}
  dev:
    users: [alice]
    auto_approve: alice
    poll_interval: 1s
    access_token_ttl: 6s
    data_dir: ./idp-data
audit: { file: ./audit.jsonl }
targets:
  app:
    source: { type: file, paths: [${JSON.stringify(file)}] }
    allow: ['*']
    session: { max_lifetime: ${scenario.maxLifetimeMs}ms, silent_resume: ${scenario.silentResume} }
`;
  let child: SpawnedGateway = await spawnGateway(yaml(0), { dir });
  const port = Number(new URL(child.url).port);
  return {
    url: child.url,
    issuer: child.issuer,
    async restart(signal) {
      await child.stop(signal, { keepDir: true });
      await pause(DOWN_MS);
      child = await spawnGateway(yaml(port), { dir });
    },
    close: () => child.stop('SIGTERM', { keepDir: true }).then(() => undefined),
  };
}

/** The gateway in this process (a restart is a clean close), with a fast keepalive. */
async function inProcessGateway(
  dataDir: string,
  file: string,
  scenario: Scenario,
): Promise<Restartable> {
  await mkdir(dataDir);
  const options = (port?: number): StartGatewayOptions => ({
    dataDir,
    ...(port !== undefined ? { port } : {}),
    accessTokenTtlMs: 6_000,
    dataPlaneDeps: { keepaliveMs: 300 },
    targets: {
      app: {
        source: { type: 'file', paths: [file] },
        session: { maxLifetimeMs: scenario.maxLifetimeMs, silentResume: scenario.silentResume },
      },
    },
  });
  let gw: TestGateway = await startGateway(options());
  const port = gw.port;
  return {
    url: gw.url,
    issuer: gw.issuer,
    async restart() {
      await gw.close();
      await pause(DOWN_MS);
      gw = await startGateway(options(port));
    },
    close: () => gw.close(),
  };
}

async function followThrough(t: TestContext, scenario: Scenario): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'lp-tail-resume-'));
  const file = path.join(dir, 'app.log');
  const dataDir = path.join(dir, 'gateway');
  await writeFile(file, '');
  const gw = scenario.processes
    ? await childGateway(dir, file, scenario)
    : await inProcessGateway(dataDir, file, scenario);
  const user = await signIn(gw.url, gw.issuer);

  let written = 0;
  let writing = true;
  const writer = (async () => {
    while (writing) {
      written += 1;
      await appendFile(file, `line ${String(written).padStart(6, '0')}\n`);
      await new Promise((resolve) => setTimeout(resolve, 15));
    }
  })();

  const child = spawn(process.execPath, [CLI_BIN, 'tail', 'app', '-f', '-o', 'raw'], {
    env: cliEnv({ ...user.env, LOGPROXY_REAUTH: 'always' }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  context = () => `stderr:\n${stderr}\nlast stdout:\n${stdout.slice(-300)}`;
  const exited = new Promise<number | null>((resolve) => child.once('close', resolve));
  t.after(async () => {
    writing = false;
    child.kill('SIGKILL');
    await gw.close();
    await user.cleanup();
    await rm(dir, { recursive: true, force: true });
  });

  const printed = (): number => stdout.split('\n').length - 1;
  await waitFor('first lines', () => printed() >= 20);

  for (let restart = 1; restart <= scenario.restarts; restart++) {
    // SIGTERM ends sessions cleanly (gateway_shutdown); SIGKILL drops them without a word.
    await gw.restart(restart % 2 === 0 ? 'SIGKILL' : 'SIGTERM');
    const seen = printed();
    await waitFor(`lines after restart ${restart}`, () => printed() >= seen + 30);
  }
  if (scenario.expectReauth) {
    await waitFor('a re-authentication', () => /signed in again/.test(stderr), 60_000);
  } else {
    await waitFor('a new session', () => /\(max_lifetime\)\); continuing/.test(stderr), 60_000);
  }
  const seen = printed();
  await waitFor('lines after the new session', () => printed() >= seen + 30);

  writing = false;
  await writer;
  const last = `line ${String(written).padStart(6, '0')}`;
  await waitFor('the last line', () => stdout.includes(`${last}\n`));
  child.kill('SIGINT');
  const code = await exited;

  const lines = stdout.trimEnd().split('\n');
  const want = Array.from({ length: written }, (_, i) => `line ${String(i + 1).padStart(6, '0')}`);
  const firstDiff = lines.findIndex((l, i) => l !== want[i]);
  assert.equal(
    firstDiff,
    -1,
    `line ${firstDiff + 1}: got ${lines[firstDiff]}, want ${want[firstDiff]}\n${stderr}`,
  );
  assert.equal(lines.length, written, 'each line exactly once');
  assert.equal(code, 130, stderr);
  if (scenario.restarts > 0) assert.match(stderr, /reconnecting/);
  assert.doesNotMatch(stderr, /\n\s+at /, 'no stack trace');
}

test('tail -f survives three gateway restarts (SIGTERM, SIGKILL), token refreshes and session ends', async (t) => {
  await followThrough(t, {
    processes: true,
    restarts: 3,
    maxLifetimeMs: 7_000,
    silentResume: true,
    expectReauth: false,
  });
});

test('tail -f goes on through a forced re-authentication (auto-approved sign-in)', async (t) => {
  await followThrough(t, {
    processes: false,
    restarts: 1,
    maxLifetimeMs: 5_000,
    silentResume: false,
    expectReauth: true,
  });
});
