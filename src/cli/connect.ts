/**
 * `logproxy connect TARGET`: a local address that forwards to the gateway with the person's
 * access, for as long as the session lives. Options, wiring (`createConnectCommand`) and the
 * run (`runConnect`), which tests call in-process.
 */
// commander is loaded by main before any command file, so this import costs nothing.
import { Command } from 'commander';
import type { CommandContext } from './context.js';
import type { IO } from './io.js';
import type { AccessTokenSource, DeviceLoginCallbacks, GatewayApi } from '../auth/types.js';
import type { SessionState } from '../protocol/api.js';
import { systemClock, type Clock } from '../util/clock.js';
import { ErrorCodes, LogproxyError } from '../util/errors.js';
import type { ExitCode } from './exit-codes.js';
import type { TunnelEnd } from '../tunnel/session-keeper.js';
import type { Listener } from '../tunnel/listener.js';
import type { EventsMode, Renderer } from './events.js';

export interface ConnectOptions {
  target: string;
  port?: number;
  address?: string;
  unixSocket?: string;
  requireSecret: boolean;
  /** One JSON document on stdout once listening. */
  json: boolean;
  /** `--events json`: one JSON object per event on stderr. */
  events?: 'json';
  /** False with --no-reauth. */
  reauth: boolean;
  profile?: string;
  gateway?: string;
  verbose: boolean;
}

/** What connect needs from the auth side; tests may pass their own (real) ones. */
export interface ConnectServices {
  gateway: string;
  profile: string;
  stateDir: string;
  api: GatewayApi;
  tokens: AccessTokenSource;
  /** A device login that stores new credentials for this profile. */
  signIn(callbacks: DeviceLoginCallbacks, signal: AbortSignal): Promise<void>;
  close(): Promise<void>;
}

export interface ConnectHooks {
  services?: ConnectServices;
  clock?: Clock;
  /** Called once listening (tests use it to learn the URL without parsing output). */
  onListening?(info: { url: string; sessionId: string; secret?: string }): void;
}

/**
 * In-flight requests get this long to finish at teardown: enough for a dashboard's queries
 * to complete, short enough that Ctrl-C still feels immediate.
 */
const TEARDOWN_GRACE_MS = 5_000;

export function createConnectCommand(ctx: CommandContext): Command {
  return new Command('connect')
    .description('open a local tunnel to a target: tools use the printed address')
    .argument('<target>', 'target name (see `logproxy targets`)')
    .option('-p, --port <n>', 'local port (default: a free one)', parsePort)
    .option('--address <addr>', 'loopback address to listen on: 127.0.0.1, ::1 or localhost')
    .option('--unix-socket <path>', 'listen on a unix socket (mode 0600) instead of a port')
    .option('--require-secret', 'demand a per-tunnel secret on every request', false)
    .option('--json', 'print the tunnel as one JSON document on stdout once listening', false)
    .option('--events <format>', 'one JSON object per lifecycle event on stderr (json)')
    .option('--no-reauth', 'tear down instead of signing in again when the session ends')
    .option('--profile <name>', 'profile to use (default: LOGPROXY_PROFILE or "default")')
    .option('--gateway <url>', 'gateway URL (default: LOGPROXY_GATEWAY or config)')
    .addHelpText(
      'after',
      `
Examples:
  $ logproxy connect prod-logs
  $ logproxy connect prod-logs --json > tunnel.json &   # scripts: see docs/connect.md
  $ logproxy connect prod-logs --port 3100 --events json

Exit codes: 0 ended, 5 gateway lost, 10 idle timeout, 11 maximum lifetime, 12 revoked,
130 interrupted (docs/exit-codes.md).`,
    )
    .action(async (target: string, flags: Record<string, unknown>) => {
      const options = validateConnectOptions(target, flags, ctx.globals().verbose);
      await tuneV8();
      ctx.exitCode = await runConnect(options, ctx.io);
    });
}

/**
 * V8 settings for a long-lived process that mostly moves short-lived buffers; set from here
 * because only the CLI process running `connect` should get them (not tests that call
 * runConnect in-process). Measured in docs/benchmarks.md, "Tunnel":
 * - Young generation without growth: V8's default lets it grow to 16 MB per semi-space,
 *   which a tunnel fills with garbage after a few hundred requests and keeps as RSS; it
 *   stays at 1 MB per semi-space (12 MB less RSS after requests, 20 MB less at the streaming
 *   peak, same throughput). `--max-semi-space-size` is only read when the heap is created;
 *   the growth factor is read at each resize, so it works when set here.
 */
async function tuneV8(): Promise<void> {
  const v8 = await import('node:v8');
  v8.setFlagsFromString('--semi-space-growth-factor=1');
}

function parsePort(value: string): number {
  const port = Number(value);
  if (!/^\d+$/.test(value) || port < 1 || port > 65535) {
    throw new LogproxyError(ErrorCodes.USAGE, `--port ${value}: give a number from 1 to 65535`);
  }
  return port;
}

/** Checks flag combinations up front, before any network traffic. */
export function validateConnectOptions(
  target: string,
  flags: Record<string, unknown>,
  verbose: boolean,
): ConnectOptions {
  const events = flags.events as string | undefined;
  if (events !== undefined && events !== 'json') {
    throw new LogproxyError(ErrorCodes.USAGE, `--events ${events}: the only format is "json"`);
  }
  const unixSocket = flags.unixSocket as string | undefined;
  if (unixSocket !== undefined && (flags.port !== undefined || flags.address !== undefined)) {
    throw new LogproxyError(
      ErrorCodes.USAGE,
      '--unix-socket cannot be combined with --port or --address: pick a socket or a port',
    );
  }
  return {
    target,
    port: flags.port as number | undefined,
    address: flags.address as string | undefined,
    unixSocket,
    requireSecret: Boolean(flags.requireSecret),
    json: Boolean(flags.json),
    events: events as 'json' | undefined,
    reauth: flags.reauth !== false,
    profile: flags.profile as string | undefined,
    gateway: flags.gateway as string | undefined,
    verbose,
  };
}

/** Runs the tunnel until it ends; returns the exit code for why it ended. */
export async function runConnect(
  options: ConnectOptions,
  io: IO,
  hooks: ConnectHooks = {},
): Promise<ExitCode> {
  const { loopbackAddresses, generateSecret } = await import('../tunnel/guards.js');
  if (options.unixSocket === undefined) loopbackAddresses(options.address);
  const clock = hooks.clock ?? systemClock;
  const services = hooks.services ?? (await loadServices(options, io));
  try {
    return await runTunnel(options, io, services, clock, hooks, generateSecret);
  } finally {
    await services.close();
  }
}

/**
 * Inline re-authentication needs a person at a terminal; LOGPROXY_REAUTH=always allows it
 * anywhere, for scripts against a development gateway whose provider approves by itself.
 */
function reauthAllowed(options: ConnectOptions, io: IO): boolean {
  if (!options.reauth) return false;
  return io.canPrompt() || io.env.LOGPROXY_REAUTH === 'always';
}

function eventsMode(options: ConnectOptions, io: IO): EventsMode {
  if (options.events === 'json') return 'json';
  return io.stderrIsTTY ? 'tty' : 'lines';
}

async function runTunnel(
  options: ConnectOptions,
  io: IO,
  services: ConnectServices,
  clock: Clock,
  hooks: ConnectHooks,
  generateSecret: () => string,
): Promise<ExitCode> {
  const [{ SessionKeeper }, { listen }, { createForwarder }, registry, events] = await Promise.all([
    import('../tunnel/session-keeper.js'),
    import('../tunnel/listener.js'),
    import('../tunnel/forwarder.js'),
    import('../tunnel/registry.js'),
    import('./events.js'),
  ]);
  const reauth = reauthAllowed(options, io);
  const renderer: Renderer = events.createRenderer({
    stream: io.stderr,
    mode: eventsMode(options, io),
    target: options.target,
    gateway: services.gateway,
    clock,
    reauth,
    color: io.stderrColor,
  });

  const keeper = new SessionKeeper({
    api: services.api,
    tokens: services.tokens,
    target: options.target,
    clock,
    ...(reauth
      ? {
          reauth: (signal: AbortSignal) =>
            events.signInThrough((cb, sig) => services.signIn(cb, sig), renderer, signal),
        }
      : {}),
  });
  keeper.on((event) => renderer.render(event));
  const forwarder = createForwarder({ gateway: services.gateway, keeper, env: io.env });
  const secret = options.requireSecret ? generateSecret() : undefined;

  // Listen before creating the session: a taken port fails fast, without a session to undo.
  let listener: Listener;
  try {
    listener = await listen(
      {
        address: options.address,
        port: options.port,
        unixSocket: options.unixSocket,
        secret,
        clock,
      },
      forwarder.handleRequest,
      forwarder.handleUpgrade,
    );
  } catch (err) {
    await forwarder.close();
    throw err;
  }

  const onAbort = (): void => keeper.stop('interrupted');
  let session: SessionState;
  try {
    io.signal.addEventListener('abort', onAbort, { once: true });
    session = await keeper.start();
  } catch (err) {
    io.signal.removeEventListener('abort', onAbort);
    await listener.close(0);
    await forwarder.close();
    renderer.close();
    throw err;
  }
  if (io.signal.aborted) keeper.stop('interrupted');

  const startedAt = new Date(clock.now()).toISOString();
  const writeRecord = (s: SessionState): Promise<void> =>
    registry
      .writeTunnelRecord(services.stateDir, {
        version: 1,
        pid: process.pid,
        target: options.target,
        gateway: services.gateway,
        profile: services.profile,
        localUrl: listener.url,
        ...(listener.unixSocket ? { unixSocket: listener.unixSocket } : {}),
        sessionId: s.id,
        expiresAt: s.expires_at,
        startedAt,
        secretRequired: secret !== undefined,
      })
      .catch(() => undefined); // status would miss it; the tunnel itself works
  const removeOnExit = (): void => registry.removeTunnelRecordSync(services.stateDir, process.pid);
  process.once('exit', removeOnExit);
  await writeRecord(session);
  keeper.on((event) => {
    if (event.type === 'resumed') void writeRecord(event.session);
  });

  announce(options, io, renderer, listener, session, secret);
  hooks.onListening?.({ url: listener.url, sessionId: session.id, secret });

  const end = await keeper.done;
  io.signal.removeEventListener('abort', onAbort);
  const exitCode = await teardown(end, keeper, listener, forwarder, renderer, {
    options,
    services,
    events,
  });
  await registry.removeTunnelRecord(services.stateDir, process.pid);
  process.off('exit', removeOnExit);
  return exitCode;
}

function announce(
  options: ConnectOptions,
  io: IO,
  renderer: Renderer,
  listener: Listener,
  session: SessionState,
  secret: string | undefined,
): void {
  renderer.render({
    type: 'listening',
    info: {
      url: listener.url,
      addresses: listener.addresses,
      ...(listener.unixSocket ? { unixSocket: listener.unixSocket } : {}),
      target: options.target,
      session,
      ...(secret ? { secret } : {}),
    },
  });
  if (options.json) {
    const doc = {
      url: listener.url,
      ...(listener.unixSocket ? { unix_socket: listener.unixSocket } : {}),
      addresses: listener.addresses,
      target: options.target,
      session_id: session.id,
      idle_timeout_s: session.policy.idle_timeout_s,
      expires_at: session.expires_at,
      pid: process.pid,
      ...(secret ? { secret } : {}),
    };
    io.stdout.write(`${JSON.stringify(doc)}\n`);
  }
}

async function teardown(
  end: TunnelEnd,
  keeper: import('../tunnel/session-keeper.js').SessionKeeper,
  listener: Listener,
  forwarder: import('../tunnel/forwarder.js').Forwarder,
  renderer: Renderer,
  ctx: {
    options: ConnectOptions;
    services: ConnectServices;
    events: typeof import('./events.js');
  },
): Promise<ExitCode> {
  await listener.close(TEARDOWN_GRACE_MS);
  await keeper.release();
  await forwarder.close();

  const exitCode = ctx.events.exitCodeForTunnelEnd(end.reason, end.error);
  const message = ctx.events.describeEnd(end.reason, ctx.options.target, {
    session: keeper.lastSession(),
    gateway: ctx.services.gateway,
    error: end.error,
    reauthFailed: end.reauthFailed === true,
  });
  renderer.render({
    type: 'ended',
    end: { reason: end.reason, exitCode, sessionId: end.sessionId, message },
  });
  renderer.close();
  return exitCode;
}

/** Builds the real auth services for the resolved gateway and profile. */
async function loadServices(options: ConnectOptions, io: IO): Promise<ConnectServices> {
  const { openAuthServices } = await import('./auth-services.js');
  const services = await openAuthServices(
    { gateway: options.gateway, profile: options.profile, verbose: options.verbose },
    io,
  );
  return {
    gateway: services.gateway,
    profile: services.profile,
    stateDir: services.stateDir,
    api: services.api,
    tokens: services.tokens,
    async signIn(callbacks, signal) {
      await services.signIn(callbacks, signal);
    },
    close: () => services.close(),
  };
}
