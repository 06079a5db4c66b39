/**
 * `logproxy tail [TARGET]`: log lines on stdout for grep, jq and people; everything else on
 * stderr. Options, wiring (`createTailCommand`) and the run (`runTail`).
 *
 * Which session: a running `logproxy connect` for the target lends its session (tail reads it
 * at the gateway with the person's own token; no second session). Otherwise tail opens its own
 * through a SessionKeeper, shows its warnings like connect does, and ends it on exit, also
 * when the reader of stdout went away (`| head`). See docs/tail.md.
 */
import { Command } from 'commander';
import type { CommandContext } from './context.js';
import type { IO } from './io.js';
import type { AccessTokenSource, DeviceLoginCallbacks, GatewayApi } from '../auth/types.js';
import { systemClock, type Clock } from '../util/clock.js';
import { parseDuration } from '../util/durations.js';
import { ErrorCodes, LogproxyError, isAbortError, isLogproxyError } from '../util/errors.js';
import { ExitCodes, exitCodeForError, type ExitCode } from './exit-codes.js';
import type { OutputFormat } from '../tail/format.js';
import type { SessionSource, TailEvent } from '../tail/stream.js';
import type { TunnelRecord } from '../tunnel/registry.js';
import type { Renderer } from './events.js';

export interface TailOptions {
  target?: string;
  follow: boolean;
  since?: string;
  lines?: number;
  grep?: string;
  output: OutputFormat;
  timestamps: boolean;
  color: boolean;
  reauth: boolean;
  profile?: string;
  gateway?: string;
  verbose: boolean;
}

/** What tail needs from the auth side; tests may pass their own (real) ones. */
export interface TailServices {
  gateway: string;
  profile: string;
  stateDir: string;
  api: GatewayApi;
  tokens: AccessTokenSource;
  /** The HTTP client's fetch, for the log stream (no body timeout: keepalives flow). */
  fetch: (input: string, init?: RequestInit) => Promise<Response>;
  /** The log stream's faster transport (src/tail/transport.ts); `fetch` when absent. */
  request?: import('../tail/transport.js').StreamRequest;
  /** A device login that stores new credentials; undefined when unavailable. */
  signIn?(callbacks: DeviceLoginCallbacks, signal: AbortSignal): Promise<void>;
  close(): Promise<void>;
}

export interface TailHooks {
  services?: TailServices;
  clock?: Clock;
}

export function createTailCommand(ctx: CommandContext): Command {
  return new Command('tail')
    .description('print log lines of a target (stdout carries only log data)')
    .argument('[target]', 'target name; optional when exactly one `logproxy connect` runs')
    .option('-f, --follow', 'keep printing new lines until interrupted')
    .option('--since <when>', 'start this far back (10m, 1h30m) or at an RFC 3339 time')
    .option('-n, --lines <n>', 'start with the last N lines')
    .option('--grep <regex>', 'only lines matching this JavaScript regular expression')
    .option('-o, --output <format>', 'text, json (NDJSON for jq) or raw', 'text')
    .option('--timestamps', 'text: full RFC 3339 times instead of local HH:MM:SS.mmm')
    .option('--no-reauth', 'end instead of signing in again when the session ends')
    .option('--profile <name>', 'profile to use (default: LOGPROXY_PROFILE or "default")')
    .option('--gateway <url>', 'gateway URL (default: LOGPROXY_GATEWAY or config)')
    .addHelpText(
      'after',
      `
Examples:
  $ logproxy tail prod-logs -n 100
  $ logproxy tail prod-logs -f --since 15m --grep 'timeout|refused'
  $ logproxy tail prod-logs -o json | jq -r 'select(.level == "error") | .line'
  $ logproxy tail prod-logs -f -o raw | grep -i panic

Colour (text on a terminal only) is off with --no-color or NO_COLOR=1.
Exit codes: 0 done, 2 usage, 3 sign in needed, 5 gateway unreachable, 10 idle timeout,
11 maximum lifetime, 12 revoked, 130 interrupted (docs/tail.md).`,
    )
    .action(async (target: string | undefined, flags: Record<string, unknown>) => {
      const globals = ctx.globals();
      const options = validateTailOptions(target, flags, {
        verbose: globals.verbose,
        color: globals.color !== false,
      });
      ctx.exitCode = await runTail(options, ctx.io);
    });
}

/** Checks the command line before any network traffic: bad input is exit 2. */
export function validateTailOptions(
  target: string | undefined,
  flags: Record<string, unknown>,
  globals: { verbose: boolean; color: boolean },
): TailOptions {
  const output = String(flags.output ?? 'text');
  if (output !== 'text' && output !== 'json' && output !== 'raw') {
    throw usage(`-o ${output}: choose text, json or raw`);
  }
  const since = flags.since as string | undefined;
  if (since !== undefined) validateSince(since);
  const lines = flags.lines === undefined ? undefined : parseLines(String(flags.lines));
  const grep = flags.grep as string | undefined;
  if (grep !== undefined) validateGrep(grep);
  return {
    ...(target !== undefined ? { target } : {}),
    follow: Boolean(flags.follow),
    ...(since !== undefined ? { since } : {}),
    ...(lines !== undefined ? { lines } : {}),
    ...(grep !== undefined ? { grep } : {}),
    output,
    timestamps: Boolean(flags.timestamps),
    color: globals.color && flags.color !== false,
    reauth: flags.reauth !== false,
    ...(flags.profile !== undefined ? { profile: String(flags.profile) } : {}),
    ...(flags.gateway !== undefined ? { gateway: String(flags.gateway) } : {}),
    verbose: globals.verbose,
  };
}

function usage(message: string): LogproxyError {
  return new LogproxyError(ErrorCodes.USAGE, message);
}

function validateSince(since: string): void {
  if (/^\d{4}-\d{2}-\d{2}T/.test(since) && !Number.isNaN(Date.parse(since))) return;
  try {
    if (parseDuration(since) >= 0) return;
  } catch {
    // described below
  }
  throw usage(
    `--since ${JSON.stringify(since)}: give a duration (10m, 1h30m) or an RFC 3339 time ` +
      '(2026-01-31T14:05:00Z)',
  );
}

function parseLines(value: string): number {
  if (!/^\d{1,9}$/.test(value)) throw usage(`-n ${value}: give a whole number of lines, e.g. 100`);
  return Number(value);
}

/** The gateway's grep dialect: a JavaScript RegExp, `(?i)` in front for case-insensitive. */
function validateGrep(pattern: string): void {
  const caseless = pattern.startsWith('(?i)');
  try {
    new RegExp(caseless ? pattern.slice(4) : pattern, caseless ? 'i' : '');
  } catch (err) {
    const why = (err as Error).message.replace(/^Invalid regular expression: /, '');
    throw usage(`--grep ${JSON.stringify(pattern)} is not a valid regular expression: ${why}`);
  }
}

/** Runs tail; returns the exit code. */
export async function runTail(
  options: TailOptions,
  io: IO,
  hooks: TailHooks = {},
): Promise<ExitCode> {
  const clock = hooks.clock ?? systemClock;
  const services = hooks.services ?? (await loadServices(options, io));
  try {
    return await tailWith(options, io, services, clock);
  } finally {
    await services.close();
  }
}

async function tailWith(
  options: TailOptions,
  io: IO,
  services: TailServices,
  clock: Clock,
): Promise<ExitCode> {
  const [{ tailLogs }, sessions, events, registry, chalk] = await Promise.all([
    import('../tail/stream.js'),
    import('../tail/sessions.js'),
    import('./events.js'),
    import('../tunnel/registry.js'),
    import('chalk'),
  ]);
  const tunnel = await pickTunnel(options, services, registry);
  const target = options.target ?? tunnel?.target;
  if (target === undefined) {
    throw usage(
      'no target given and no `logproxy connect` is running; name one ' +
        '(`logproxy targets` lists them)',
    );
  }

  const reauth = options.reauth && (io.canPrompt() || io.env.LOGPROXY_REAUTH === 'always');
  const renderer: Renderer = events.createRenderer({
    stream: io.stderr,
    // A live status line would fight with log lines on the same terminal: plain lines.
    mode: 'lines',
    target,
    gateway: services.gateway,
    clock,
    reauth,
    color: io.stderrColor,
  });

  let own: import('../tail/sessions.js').OwnSession | undefined;
  let source: SessionSource;
  if (tunnel) {
    source = new sessions.TunnelSession({
      record: tunnel,
      tokens: services.tokens,
      clock,
      reread: () => registry.findTunnel(services.stateDir, tunnel.target, tunnel.gateway),
    });
  } else {
    const { SessionKeeper } = await import('../tunnel/session-keeper.js');
    own = new sessions.OwnSession({
      baseUrl: services.gateway,
      createKeeper: () => {
        const keeper = new SessionKeeper({
          api: services.api,
          tokens: services.tokens,
          target,
          clock,
          ...(reauth && services.signIn
            ? {
                reauth: (signal: AbortSignal) =>
                  events.signInThrough((cb, sig) => services.signIn!(cb, sig), renderer, signal),
              }
            : {}),
        });
        keeper.on((event) => {
          // The first session is no news; warnings, re-authentication and resumptions are.
          if (event.type !== 'session') renderer.render(event);
        });
        return keeper;
      },
    });
    source = own;
  }

  // The clock's timers never keep a process alive; while tail waits to reconnect nothing else
  // may, and Node would exit mid-wait. This does, until tail is done.
  const keepAlive = setInterval(() => undefined, 1 << 30);
  const stop = new AbortController();
  const onAbort = (): void => stop.abort(io.signal.reason);
  io.signal.addEventListener('abort', onAbort, { once: true });
  const write = createWriter(io, stop.signal);
  const style = options.output === 'text' && io.stdoutColor && options.color;
  try {
    await tailLogs({
      fetch: services.fetch,
      ...(services.request ? { request: services.request } : {}),
      session: source,
      query: {
        follow: options.follow,
        ...(options.since !== undefined ? { since: options.since } : {}),
        ...(options.lines !== undefined ? { limit: options.lines } : {}),
        ...(options.grep !== undefined ? { grep: options.grep } : {}),
      },
      format: {
        format: options.output,
        timestamps: options.timestamps,
        ...(style ? { style: levelStyler(new chalk.Chalk({ level: 1 })) } : {}),
      },
      write,
      clock,
      signal: stop.signal,
      onEvent: (event) => {
        const text = describeTailEvent(event, target, services.gateway);
        if (text !== undefined) io.stderr.write(`logproxy: ${text}\n`);
      },
      ...reconnectFromEnv(io.env),
    });
    await write.flushed();
    return ExitCodes.OK;
  } catch (err) {
    return finish(err, io, { target, gateway: services.gateway, own, events, sessions });
  } finally {
    clearInterval(keepAlive);
    io.signal.removeEventListener('abort', onAbort);
    renderer.close();
    // Ends our own session at the gateway, whatever happened (Ctrl-C, `| head`, an error).
    await own?.close();
  }
}

/** The exit code and the last words on stderr for how tail stopped. */
function finish(
  err: unknown,
  io: IO,
  ctx: {
    target: string;
    gateway: string;
    own: import('../tail/sessions.js').OwnSession | undefined;
    events: typeof import('./events.js');
    sessions: typeof import('../tail/sessions.js');
  },
): ExitCode {
  // The reader of stdout went away (`| head`): a normal way for output to end.
  if (io.signal.reason === 'EPIPE' || isBrokenPipe(err)) return ExitCodes.OK;
  if (io.signal.aborted || isAbortError(err)) return ExitCodes.INTERRUPTED;
  if (err instanceof ctx.sessions.SessionOverError) {
    const end = err.end;
    const code = ctx.events.exitCodeForTunnelEnd(end.reason, end.error);
    const message = ctx.events
      .describeEnd(end.reason, ctx.target, {
        session: ctx.own?.current()?.lastSession(),
        gateway: ctx.gateway,
        error: end.error,
        reauthFailed: end.error !== undefined && end.reason !== 'failed',
      })
      .replace(/`logproxy connect /g, '`logproxy tail ');
    io.stderr.write(`logproxy: ${message}\n`);
    return code;
  }
  if (isLogproxyError(err)) {
    io.stderr.write(`logproxy: ${err.message}\n`);
    return exitCodeForError(err.code);
  }
  throw err;
}

function isBrokenPipe(err: unknown): boolean {
  return (err as { code?: string } | undefined)?.code === 'EPIPE';
}

/**
 * Writes batches to stdout and waits for 'drain' when its buffer is full, so a slow reader
 * slows the gateway's stream rather than filling memory. Rejects once stdout broke (EPIPE).
 */
function createWriter(
  io: IO,
  signal: AbortSignal,
): ((chunk: string | Uint8Array) => Promise<void>) & { flushed(): Promise<void> } {
  const out = io.stdout;
  let broken: Error | undefined;
  out.on('error', (err) => (broken = err));
  const drained = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const done = (): void => {
        out.off('drain', done);
        out.off('error', fail);
        signal.removeEventListener('abort', fail);
        resolve();
      };
      const fail = (): void => {
        out.off('drain', done);
        out.off('error', fail);
        signal.removeEventListener('abort', fail);
        reject(broken ?? signal.reason ?? new Error('stdout closed'));
      };
      out.on('drain', done);
      out.once('error', fail);
      signal.addEventListener('abort', fail, { once: true });
    });
  const write = async (chunk: string | Uint8Array): Promise<void> => {
    if (broken) throw broken;
    signal.throwIfAborted();
    if (out.write(chunk)) return;
    await drained();
  };
  return Object.assign(write, {
    /**
     * Resolves once everything written has reached the pipe: an empty write's callback runs
     * after all earlier chunks (waiting for 'drain' would hang when no write ever returned
     * false). bin/ calls process.exit next, which would drop what was still buffered.
     */
    flushed(): Promise<void> {
      if (broken || out.writableLength === 0 || signal.aborted) return Promise.resolve();
      return new Promise((resolve) => {
        signal.addEventListener('abort', () => resolve(), { once: true });
        out.write('', () => resolve());
      });
    },
  });
}

type Painter = (text: string) => string;

function levelStyler(chalk: import('chalk').ChalkInstance): (level: string) => Painter | undefined {
  const styles: Record<string, Painter> = {
    trace: chalk.gray,
    debug: chalk.gray,
    info: chalk.green,
    notice: chalk.cyan,
    warn: chalk.yellow,
    warning: chalk.yellow,
    error: chalk.red,
    err: chalk.red,
    fatal: chalk.bold.red,
    critical: chalk.bold.red,
    crit: chalk.bold.red,
    panic: chalk.bold.red,
  };
  return (level) => styles[level.toLowerCase()];
}

/** Events of the stream in words, on stderr. */
/** An event of the stream in words for stderr; undefined for events people need not see. */
export function describeTailEvent(
  event: TailEvent,
  target: string,
  gateway: string,
): string | undefined {
  switch (event.type) {
    case 'data_lost': {
      const n = event.notice;
      const what = n.source ? ` of ${baseName(n.source)}` : '';
      const amount =
        n.lost_bytes !== undefined
          ? `${n.lost_bytes} bytes${n.lost_lines !== undefined ? ` (${n.lost_lines} lines)` : ''}`
          : n.lost_lines !== undefined
            ? `${n.lost_lines} lines`
            : 'some data';
      return (
        `gateway says ${amount}${what} were rotated away before they could be read` +
        `${n.detail ? ` (${n.detail})` : ''}`
      );
    }
    case 'reconnecting': {
      if (event.attempt !== 1) return undefined;
      // undici's own words ("terminated", "fetch failed") mean nothing to people.
      const why = isLogproxyError(event.error) ? event.error.message : 'the connection was cut';
      return `lost the log stream of ${target} (${why}); reconnecting`;
    }
    case 'connected':
      return event.resumed ? `log stream of ${target} resumed` : undefined;
    case 'session_lost':
      return `the session at ${gateway} is gone (${event.error.message}); continuing on a new one`;
  }
}

function baseName(source: string): string {
  const slash = source.lastIndexOf('/');
  return slash < 0 ? source : source.slice(slash + 1);
}

/** LOGPROXY_RECONNECT_TIMEOUT bounds how long an unreachable gateway is retried (default 60s). */
function reconnectFromEnv(env: NodeJS.ProcessEnv): { reconnect?: { giveUpAfterMs: number } } {
  const raw = env.LOGPROXY_RECONNECT_TIMEOUT;
  if (!raw) return {};
  try {
    return { reconnect: { giveUpAfterMs: parseDuration(raw) } };
  } catch {
    throw usage(`LOGPROXY_RECONNECT_TIMEOUT="${raw}" is not a duration; write e.g. 30s or 2m`);
  }
}

async function pickTunnel(
  options: TailOptions,
  services: TailServices,
  registry: typeof import('../tunnel/registry.js'),
): Promise<TunnelRecord | undefined> {
  const all = (await registry.listTunnels(services.stateDir)).filter(
    (r) => r.gateway === services.gateway && r.profile === services.profile,
  );
  if (options.target !== undefined) {
    return all.filter((r) => r.target === options.target).at(-1);
  }
  if (all.length === 1) return all[0];
  if (all.length > 1) {
    const names = [...new Set(all.map((r) => r.target))].join(', ');
    throw usage(`several tunnels are running (${names}): name the target to tail`);
  }
  return undefined;
}

/** Longest silence on the log stream before it counts as a dead connection. */
const STREAM_SILENCE_MS = 60_000;

/** The real auth services for the resolved gateway and profile, plus the stream's transport. */
async function loadServices(options: TailOptions, io: IO): Promise<TailServices> {
  const [{ openAuthServices }, http, transport] = await Promise.all([
    import('./auth-services.js'),
    import('../auth/http.js'),
    import('../tail/transport.js'),
  ]);
  const services = await openAuthServices(
    { gateway: options.gateway, profile: options.profile, verbose: options.verbose },
    io,
  );
  const { gateway } = services;
  // The gateway sends a keepalive at least every 15 s while following, so a minute without a
  // byte means a dead link (a cut that sent no reset): give up on that connection and resume
  // from the cursor. A reader that holds tail back that long costs a reconnect, never a line.
  const streamClient = http.createHttpClient({
    verbose: options.verbose,
    trace: (line) => void io.stderr.write(`${line}\n`),
    env: io.env,
    bodyTimeoutMs: STREAM_SILENCE_MS,
  });
  streamClient.nameServer(gateway, 'the gateway');
  // The stream itself goes through undici's request(): fetch's body stream costs more than
  // formatting at a million lines a second. Same timeouts and proxies.
  const stream = transport.createStreamTransport({
    env: io.env,
    timeoutMs: streamClient.timeoutMs,
    bodyTimeoutMs: STREAM_SILENCE_MS,
    serverName: 'the gateway',
  });
  return {
    gateway,
    profile: services.profile,
    stateDir: services.stateDir,
    api: services.api,
    tokens: services.tokens,
    fetch: streamClient as unknown as TailServices['fetch'],
    request: stream.request,
    async signIn(callbacks, signal) {
      await services.signIn(callbacks, signal);
    },
    async close() {
      await Promise.allSettled([services.close(), streamClient.close(), stream.close()]);
    },
  };
}
