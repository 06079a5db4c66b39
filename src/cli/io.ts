import type { Readable, Writable } from 'node:stream';

/**
 * Everything a command may touch of the outside world: streams, TTY facts, colour, the
 * environment and the interrupt signal. Commands take an IO; nothing else under src/cli/
 * reads process.stdout or calls process.exit. `createTestIO` returns buffers.
 */
export interface IO {
  stdout: Writable;
  stderr: Writable;
  stdin: Readable;
  stdoutIsTTY: boolean;
  stderrIsTTY: boolean;
  stdinIsTTY: boolean;
  /** Colour on stdout (data): only on a TTY and never with NO_COLOR or --no-color. */
  stdoutColor: boolean;
  /** Colour on stderr (people). */
  stderrColor: boolean;
  env: NodeJS.ProcessEnv;
  /** Aborted on Ctrl-C / SIGTERM; `signal.reason` is 'SIGINT' or 'SIGTERM'. */
  signal: AbortSignal;
  /** True when a person can answer: both stdin and stderr are terminals. */
  canPrompt(): boolean;
}

export function colorAllowed(env: NodeJS.ProcessEnv, isTTY: boolean): boolean {
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  if (env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== '0') return true;
  if (env.TERM === 'dumb') return false;
  return isTTY;
}

export function createProcessIO(signal: AbortSignal): IO {
  const stdoutIsTTY = Boolean(process.stdout.isTTY);
  const stderrIsTTY = Boolean(process.stderr.isTTY);
  const stdinIsTTY = Boolean(process.stdin.isTTY);
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    stdin: process.stdin,
    stdoutIsTTY,
    stderrIsTTY,
    stdinIsTTY,
    stdoutColor: colorAllowed(process.env, stdoutIsTTY),
    stderrColor: colorAllowed(process.env, stderrIsTTY),
    env: process.env,
    signal,
    canPrompt: () => stdinIsTTY && stderrIsTTY,
  };
}
