/**
 * What tail's end-to-end tests share: a client config dir signed in to a real test gateway
 * (real device login, auto-approved; tokens kept in the 0600 file store) and a way to run the
 * real CLI (bin/logproxy.js) against it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { configPaths, normalizeGatewayUrl } from '../../src/cli/config.js';
import { FileTokenStore } from '../../src/auth/file-store.js';
import { deviceLogin } from '../helpers/device-token.js';
import { TEST_GATEWAY_AUDIENCE, TEST_GATEWAY_CLIENT_ID } from '../helpers/gateway.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const CLI_BIN = path.join(REPO, 'bin', 'logproxy.js');

export interface SignedIn {
  configDir: string;
  gateway: string;
  env: NodeJS.ProcessEnv;
  cleanup(): Promise<void>;
}

/** A fresh LOGPROXY_CONFIG_DIR holding alice's real tokens for `gatewayUrl`. */
export async function signIn(gatewayUrl: string, issuer: string): Promise<SignedIn> {
  const configDir = await mkdtemp(path.join(tmpdir(), 'lp-tail-cli-'));
  const gateway = normalizeGatewayUrl(gatewayUrl, 'test');
  const tokens = await deviceLogin(issuer, TEST_GATEWAY_CLIENT_ID, {
    audience: TEST_GATEWAY_AUDIENCE,
  });
  const env = { LOGPROXY_CONFIG_DIR: configDir, LOGPROXY_TOKEN_STORE: 'file' };
  const store = new FileTokenStore(configPaths(env).credentialsDir);
  await store.write({
    version: 1,
    gateway,
    profile: 'default',
    issuer,
    clientId: TEST_GATEWAY_CLIENT_ID,
    audience: TEST_GATEWAY_AUDIENCE,
    subject: 'alice',
    accessToken: tokens.accessToken,
    accessTokenExpiresAt: Date.now() + tokens.expiresIn * 1000,
    refreshToken: tokens.refreshToken,
  });
  return {
    configDir,
    gateway,
    env: { ...env, LOGPROXY_GATEWAY: gateway },
    cleanup: () => rm(configDir, { recursive: true, force: true }),
  };
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Environment for the CLI: ours plus the test's, never the developer's own config. */
export function cliEnv(extra: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, ...extra };
  return env;
}

/** Runs `logproxy ARGS` to completion. */
export function runCli(
  args: string[],
  env: NodeJS.ProcessEnv,
  timeoutMs = 30_000,
): Promise<CliResult> {
  const child = spawn(process.execPath, [CLI_BIN, ...args], {
    env: cliEnv(env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return collect(child, timeoutMs);
}

/** Runs a shell pipeline (`sh -c`), with `logproxy` resolving to the real CLI. */
export function runShell(
  script: string,
  env: NodeJS.ProcessEnv,
  timeoutMs = 30_000,
): Promise<CliResult> {
  const child = spawn('bash', ['-c', script], {
    env: cliEnv({ ...env, LOGPROXY: `${process.execPath} ${CLI_BIN}` }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return collect(child, timeoutMs);
}

function collect(child: ChildProcess, timeoutMs: number): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`timed out; stdout:\n${stdout.slice(-2000)}\nstderr:\n${stderr}`));
    }, timeoutMs);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
