/**
 * A REAL logproxy gateway for tests: the server of src/gateway/server.ts with the embedded
 * OIDC provider, on 127.0.0.1 port 0, in a temp directory that `close()` removes.
 *
 * In-process (fast; sessions and clock reachable):
 *
 *   const gw = await startGateway({ session: { idleTimeoutMs: 60_000 } });
 *   t.after(() => gw.close());
 *   const token = await gw.tokenFor();            // a real device login, auto-approved as alice
 *   await fetch(`${gw.url}/v1/targets`, { headers: { authorization: `Bearer ${token}` } });
 *   await gw.auditLines();                        // parsed lines of the audit file
 *
 *   Options (all optional): `clock` (e.g. `new ManualClock(Date.now())`: session timers then
 *   move only with `clock.advance()`, token expiry stays on real time), `session` (defaults
 *   merged over short test defaults), `targets` (name -> target without `name`; default one
 *   `demo` target allowing everyone), `admins` (default [alice]), `autoApprove` (default
 *   'alice'; null for none: approve through the browser pages), `dataDir` and `port` (reuse
 *   both to restart "the same" gateway: its signing keys and grants live in dataDir, so earlier
 *   tokens stay valid), `dataPlane`, `dataPlaneDeps` (tuning for the default data plane, e.g.
 *   a short `keepaliveMs`), `tls`, `accessTokenTtlMs`, `keepData`.
 *
 * As a child process (for tests that kill or restart the gateway like an operator would):
 *
 *   const child = await spawnGateway(yamlText);   // writes gateway.yaml into a temp dir
 *   child.url; child.issuer; child.dir;           // relative paths in the YAML land in dir
 *   await child.stop();                           // SIGTERM; resolves with the exit code
 *
 *   `spawnGateway(null, { args: ['--dev', '--listen', '127.0.0.1:0', ...] })` runs without a
 *   file. It resolves once the gateway logged `listening` (JSON on stderr) and rejects with
 *   its stderr if it exits first. `child.stderr()` returns everything it printed so far.
 *   Use `gatewayYaml({...})` to build a small valid config text with a temp-dir-relative
 *   data dir and audit file.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_ALGORITHMS } from '../../src/gateway/config.js';
import { createDataPlane, type DataPlaneDeps } from '../../src/gateway/data-plane.js';
import { createLogger } from '../../src/gateway/logger.js';
import { createGateway } from '../../src/gateway/server.js';
import type { Gateway } from '../../src/gateway/server.js';
import type { SessionManager } from '../../src/gateway/sessions.js';
import type {
  DataPlane,
  GatewayConfig,
  SessionPolicyConfig,
  TargetConfig,
} from '../../src/gateway/types.js';
import { systemClock, type Clock } from '../../src/util/clock.js';
import { deviceLogin } from './device-token.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const GATEWAY_BIN = path.join(REPO, 'bin', 'logproxy-gateway.js');

export const TEST_GATEWAY_AUDIENCE = 'https://logs.test.example';
export const TEST_GATEWAY_CLIENT_ID = 'logproxy-cli';

export interface StartGatewayOptions {
  clock?: Clock;
  session?: Partial<SessionPolicyConfig>;
  targets?: Record<
    string,
    Omit<TargetConfig, 'name' | 'session' | 'activity' | 'allow'> &
      Partial<Pick<TargetConfig, 'session' | 'activity' | 'allow'>>
  >;
  admins?: string[];
  users?: string[];
  autoApprove?: string | null;
  accessTokenTtlMs?: number;
  dataDir?: string;
  port?: number;
  dataPlane?: DataPlane;
  /** Tuning for the default data plane (built from this gateway's config), e.g. keepaliveMs. */
  dataPlaneDeps?: Omit<DataPlaneDeps, 'clock' | 'logger'>;
  tls?: { certFile: string; keyFile: string };
  /** `public_url`: discovery and the dev issuer use it (it need not be reachable). */
  publicUrl?: string;
  /** Keep dataDir on close (to restart on it). */
  keepData?: boolean;
}

export interface TestGateway {
  /** The base URL (public_url when given, else the bound address). */
  url: string;
  /** http://127.0.0.1:PORT: where the server really listens. */
  localUrl: string;
  issuer: string;
  clientId: string;
  audience: string;
  config: GatewayConfig;
  dataDir: string;
  auditFile: string;
  port: number;
  sessions: SessionManager;
  gateway: Gateway;
  clock?: Clock;
  /** A real access token from a device login (auto-approved as `autoApprove`). */
  tokenFor(user?: string): Promise<string>;
  /** The audit file, one parsed object per line. */
  auditLines(): Promise<Array<Record<string, unknown>>>;
  close(): Promise<void>;
}

/** Short but realistic defaults: nothing here expires during a test on the real clock. */
const TEST_SESSION: SessionPolicyConfig = {
  idleTimeoutMs: 15 * 60_000,
  maxLifetimeMs: 2 * 3_600_000,
  heartbeatIntervalMs: 30_000,
  warnBeforeMs: [5 * 60_000, 60_000],
  heartbeatMissesAllowed: 3,
  silentResume: false,
};

export async function startGateway(options: StartGatewayOptions = {}): Promise<TestGateway> {
  const dataDir = options.dataDir ?? (await mkdtemp(path.join(tmpdir(), 'lp-gateway-')));
  const auditFile = path.join(dataDir, 'audit.jsonl');
  const autoApprove = options.autoApprove === undefined ? 'alice' : options.autoApprove;
  const targets: Record<string, TargetConfig> = {};
  const specs = options.targets ?? {
    demo: { source: { type: 'demo', ratePerSec: 5, historyLines: 50, seed: 1 } },
  };
  for (const [name, t] of Object.entries(specs)) {
    targets[name] = { allow: ['*'], session: {}, activity: 'requests', ...t, name };
  }
  const config: GatewayConfig = {
    listen: { host: '127.0.0.1', port: options.port ?? 0 },
    auth: {
      audience: TEST_GATEWAY_AUDIENCE,
      clientId: TEST_GATEWAY_CLIENT_ID,
      algorithms: DEFAULT_ALGORITHMS,
      clockToleranceS: 30,
      dev: {
        users: options.users ?? ['alice', 'bob'],
        ...(autoApprove ? { autoApprove } : {}),
        accessTokenTtlMs: options.accessTokenTtlMs ?? 5 * 60_000,
        refreshTokenTtlMs: 12 * 3_600_000,
        deviceCodeTtlMs: 10 * 60_000,
        pollIntervalS: 1,
        dataDir: path.join(dataDir, 'idp'),
      },
    },
    admins: options.admins ?? ['alice'],
    session: { ...TEST_SESSION, ...options.session },
    audit: { file: auditFile },
    log: { level: 'warn' },
    targets,
  };
  if (options.tls) config.tls = options.tls;
  if (options.publicUrl) config.publicUrl = options.publicUrl;

  const gateway = await createGateway(config, {
    ...(options.clock ? { clock: options.clock } : {}),
    ...(options.dataPlane ? { dataPlane: options.dataPlane } : {}),
    ...(!options.dataPlane && options.dataPlaneDeps
      ? {
          dataPlane: createDataPlane(config, {
            clock: options.clock ?? systemClock,
            ...options.dataPlaneDeps,
          }),
        }
      : {}),
    logger: createLogger(process.env.LOGPROXY_TEST_LOG ? 'debug' : 'silent'),
  });
  const port = (gateway.server.address() as AddressInfo).port;
  return {
    url: gateway.url,
    localUrl: `${options.tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    issuer: gateway.issuer,
    clientId: config.auth.clientId,
    audience: config.auth.audience,
    config,
    dataDir,
    auditFile,
    port,
    sessions: gateway.sessions,
    gateway,
    ...(options.clock ? { clock: options.clock } : {}),
    async tokenFor(user?: string) {
      if (user !== undefined && user !== autoApprove) {
        throw new Error(
          `this test gateway auto-approves ${autoApprove ?? 'nobody'}, not ${user}; start one ` +
            'with autoApprove (reuse dataDir and port to keep earlier tokens valid)',
        );
      }
      const tokens = await deviceLogin(gateway.issuer, config.auth.clientId, {
        audience: config.auth.audience,
      });
      return tokens.accessToken;
    },
    auditLines: () => readAudit(auditFile),
    async close() {
      await gateway.close();
      if (!options.keepData && !options.dataDir) {
        await rm(dataDir, { recursive: true, force: true });
      }
    },
  };
}

export async function readAudit(file: string): Promise<Array<Record<string, unknown>>> {
  let text = '';
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

// ---------- child process ----------

export interface SpawnedGateway {
  url: string;
  issuer: string;
  /** Temp dir holding gateway.yaml (removed by stop() unless keepDir). */
  dir: string;
  child: ChildProcess;
  stderr(): string;
  stdout(): string;
  /** Sends `signal` (default SIGTERM) and resolves with the exit code. */
  stop(signal?: NodeJS.Signals, opts?: { keepDir?: boolean }): Promise<number | null>;
}

/** A small valid config: dev provider (auto-approve alice), demo target, files in the dir. */
export function gatewayYaml(opts: { port?: number; extra?: string } = {}): string {
  return `listen: 127.0.0.1:${opts.port ?? 0}
auth:
  audience: ${TEST_GATEWAY_AUDIENCE}
  client_id: ${TEST_GATEWAY_CLIENT_ID}
  dev:
    users: [alice, bob]
    auto_approve: alice
    poll_interval: 1s
    data_dir: ./idp-data
admins: [alice]
audit: { file: ./audit.jsonl }
targets:
  demo:
    source: { type: demo, rate: 5, history: 50, seed: 1 }
    allow: ['*']
${opts.extra ?? ''}`;
}

export async function spawnGateway(
  configYaml: string | null,
  opts: { args?: string[]; env?: NodeJS.ProcessEnv; dir?: string; timeoutMs?: number } = {},
): Promise<SpawnedGateway> {
  const dir = opts.dir ?? (await mkdtemp(path.join(tmpdir(), 'lp-gw-proc-')));
  const args = [GATEWAY_BIN];
  if (configYaml !== null) {
    const file = path.join(dir, 'gateway.yaml');
    await writeFile(file, configYaml);
    args.push('--config', file);
  }
  args.push(...(opts.args ?? []));
  const child = spawn(process.execPath, args, {
    cwd: dir,
    env: { ...process.env, XDG_STATE_HOME: path.join(dir, 'state'), ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (s: string) => (out += s));
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => resolve(code)),
  );

  const ready = await new Promise<{ url: string; issuer: string }>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`gateway did not start in time; stderr:\n${err}`));
    }, opts.timeoutMs ?? 20_000);
    child.stderr!.setEncoding('utf8').on('data', (s: string) => {
      err += s;
      for (const line of err.split('\n')) {
        if (!line.startsWith('{')) continue;
        try {
          const rec = JSON.parse(line) as { msg?: string; url?: string; issuer?: string };
          if (rec.msg === 'listening' && rec.url) {
            clearTimeout(timer);
            resolve({ url: rec.url, issuer: rec.issuer ?? '' });
          }
        } catch {
          // a partial line; wait for the rest
        }
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`gateway exited with ${code} before listening; stderr:\n${err}`));
    });
  });

  return {
    ...ready,
    dir,
    child,
    stderr: () => err,
    stdout: () => out,
    async stop(signal = 'SIGTERM', stopOpts = {}) {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const code = await exited;
      if (!stopOpts.keepDir && !opts.dir) await rm(dir, { recursive: true, force: true });
      return code;
    },
  };
}
