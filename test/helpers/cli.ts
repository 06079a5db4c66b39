/**
 * Runs the REAL CLI (`node bin/logproxy.js`) as a child process in a sealed environment: a
 * temp LOGPROXY_CONFIG_DIR and HOME, no display, no proxy, no session bus (so no keychain)
 * unless the test passes them in `env`.
 *
 *   const cli = await createCliEnv();
 *   t.after(() => cli.cleanup());
 *   const r = await cli.run(['login', '--gateway', gw.url, '--insecure-storage']);
 *   assert.equal(r.code, 0, r.stderr);
 *
 *   const login = cli.spawn(['login', '--gateway', gw.url, '--no-browser']);
 *   const text = await login.waitFor(/enter the code/);    // stderr + stdout so far
 *   login.kill('SIGINT');
 *   const result = await login.result;                      // { code, stdout, stderr, ... }
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const CLI_BIN = path.join(REPO, 'bin', 'logproxy.js');

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliRunOptions {
  /** Added to (and overriding) the sealed environment; `undefined` values remove a variable. */
  env?: Record<string, string | undefined>;
  /** Kill with SIGKILL after this long (a safety net, not an assertion). Default 60 s. */
  timeoutMs?: number;
  /** Written to stdin, which is then closed. */
  input?: string;
}

export interface RunningCli {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves with stderr + stdout once `pattern` matches them; rejects if the CLI exits. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<string>;
  kill(signal?: NodeJS.Signals): void;
  result: Promise<CliResult>;
}

export interface CliEnv {
  configDir: string;
  home: string;
  /** The sealed environment every run starts from. */
  env: NodeJS.ProcessEnv;
  run(args: string[], options?: CliRunOptions): Promise<CliResult>;
  spawn(args: string[], options?: CliRunOptions): RunningCli;
  cleanup(): Promise<void>;
}

/** Environment variables passed through from the test runner (nothing else is). */
const PASS_THROUGH = ['PATH', 'LANG', 'TZ', 'SYSTEMROOT', 'TMPDIR', 'LOGPROXY_TEST_LOG'];

export async function createCliEnv(base: Record<string, string | undefined> = {}): Promise<CliEnv> {
  const root = await mkdtemp(path.join(tmpdir(), 'lp-cli-'));
  const configDir = path.join(root, 'config');
  const home = path.join(root, 'home');
  const env: NodeJS.ProcessEnv = {};
  for (const key of PASS_THROUGH) if (process.env[key]) env[key] = process.env[key];
  Object.assign(env, { HOME: home, LOGPROXY_CONFIG_DIR: configDir, NO_COLOR: '1' });
  applyEnv(env, base);
  const children = new Set<ChildProcess>();

  const spawnCli = (args: string[], options: CliRunOptions = {}): RunningCli => {
    const childEnv = { ...env };
    applyEnv(childEnv, options.env ?? {});
    const child = spawn(process.execPath, [CLI_BIN, ...args], {
      env: childEnv,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    children.add(child);
    let stdout = '';
    let stderr = '';
    const listeners = new Set<() => void>();
    child.stdout!.setEncoding('utf8').on('data', (s: string) => {
      stdout += s;
      listeners.forEach((l) => l());
    });
    child.stderr!.setEncoding('utf8').on('data', (s: string) => {
      stderr += s;
      listeners.forEach((l) => l());
    });
    if (options.input !== undefined) child.stdin!.end(options.input);
    else child.stdin!.end();
    const killer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
    const result = new Promise<CliResult>((resolve) => {
      child.once('close', (code, signal) => {
        clearTimeout(killer);
        children.delete(child);
        listeners.forEach((l) => l());
        resolve({ code, signal, stdout, stderr });
      });
    });

    return {
      child,
      stdout: () => stdout,
      stderr: () => stderr,
      kill: (signal = 'SIGTERM') => void child.kill(signal),
      result,
      waitFor(pattern, timeoutMs = 30_000) {
        return new Promise((resolve, reject) => {
          const check = () => {
            const text = `${stderr}${stdout}`;
            if (pattern.test(text)) {
              done();
              resolve(text);
            } else if (child.exitCode !== null || child.signalCode !== null) {
              done();
              reject(new Error(`the CLI exited before ${pattern}; stderr:\n${stderr}`));
            }
          };
          const timer = setTimeout(() => {
            done();
            reject(new Error(`no ${pattern} within ${timeoutMs} ms; stderr:\n${stderr}`));
          }, timeoutMs);
          const done = () => {
            clearTimeout(timer);
            listeners.delete(check);
          };
          listeners.add(check);
          check();
        });
      },
    };
  };

  return {
    configDir,
    home,
    env,
    spawn: spawnCli,
    run: (args, options) => spawnCli(args, options).result,
    async cleanup() {
      for (const child of children) child.kill('SIGKILL');
      await rm(root, { recursive: true, force: true });
    },
  };
}

function applyEnv(env: NodeJS.ProcessEnv, changes: Record<string, string | undefined>): void {
  for (const [key, value] of Object.entries(changes)) {
    if (value === undefined) delete env[key];
    else env[key] = value;
  }
}
