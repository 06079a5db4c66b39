/**
 * How a tunnel's life reaches people and scripts: the keeper's events (plus `listening` and
 * `ended`) become one JSON object per line (`--events json`), one plain line per event (off a
 * TTY), or a live status line redrawn in place with notices above it (on a TTY).
 * `logproxy tail` reuses this for the session it opens itself.
 */
import type { Writable } from 'node:stream';
import type { SessionState } from '../protocol/api.js';
import type { KeeperEvent, TunnelEndReason } from '../tunnel/session-keeper.js';
import { formatDuration } from '../util/durations.js';
import type { Clock } from '../util/clock.js';
import { ExitCodes, exitCodeForEndReason, exitCodeForError, type ExitCode } from './exit-codes.js';
import { isLogproxyError } from '../util/errors.js';
import type { DeviceLoginCallbacks } from '../auth/types.js';

/** Facts printed once the tunnel accepts requests. */
export interface ListeningInfo {
  url: string;
  addresses: string[];
  unixSocket?: string;
  target: string;
  session: SessionState;
  /** Only with --require-secret. */
  secret?: string;
}

export interface DeviceCodeInfo {
  userCode: string;
  verificationUri: string;
  verificationUriComplete?: string;
  expiresAt: number;
}

export interface EndedInfo {
  reason: TunnelEndReason;
  exitCode: ExitCode;
  sessionId?: string;
  message: string;
}

/** Everything a renderer is told, in order. */
export type ConnectEvent =
  | KeeperEvent
  | { type: 'listening'; info: ListeningInfo }
  | { type: 'device_code'; code: DeviceCodeInfo }
  | { type: 'ended'; end: EndedInfo };

export type EventsMode = 'tty' | 'lines' | 'json';

export interface Renderer {
  render(event: ConnectEvent): void;
  /** Stops the live status line; call before exiting. */
  close(): void;
}

/** The exit code for how a tunnel ended (docs/exit-codes.md). */
export function exitCodeForTunnelEnd(reason: TunnelEndReason, error?: unknown): ExitCode {
  switch (reason) {
    case 'gateway_lost':
      return ExitCodes.UNREACHABLE;
    case 'interrupted':
      return ExitCodes.INTERRUPTED;
    case 'not_signed_in':
      return ExitCodes.NOT_SIGNED_IN;
    case 'failed':
      return exitCodeForError(isLogproxyError(error) ? error.code : undefined);
    default:
      return exitCodeForEndReason(reason);
  }
}

/** Why the tunnel ended, in words that say what to do next. */
export function describeEnd(
  reason: TunnelEndReason,
  target: string,
  facts: { session?: SessionState; gateway: string; error?: unknown; reauthFailed?: boolean },
): string {
  const again = `run \`logproxy connect ${target}\` to start a new one`;
  const policy = facts.session?.policy;
  const cause = facts.error instanceof Error ? facts.error.message : undefined;
  const reauth = facts.reauthFailed && cause ? ` (signing in again failed: ${cause})` : '';
  switch (reason) {
    case 'idle_timeout':
      return (
        `session for ${target} expired after ` +
        `${policy ? formatDuration(policy.idle_timeout_s * 1000) + ' ' : ''}idle${reauth}; ${again}`
      );
    case 'max_lifetime':
      return (
        `session for ${target} reached its maximum lifetime` +
        `${policy ? ' of ' + formatDuration(policy.max_lifetime_s * 1000) : ''}${reauth}; ${again}`
      );
    case 'revoked':
      return `session for ${target} was revoked by an administrator`;
    case 'client_lost':
      return (
        `the gateway ended the session for ${target}: it did not hear from this tunnel in ` +
        `time (was the machine asleep?); ${again}`
      );
    case 'gateway_shutdown':
      return `the gateway at ${facts.gateway} shut down; ${again} once it is back`;
    case 'ended':
      return `session for ${target} was ended`;
    case 'gateway_lost':
      return (
        `lost the gateway at ${facts.gateway}: no answer within the heartbeat grace` +
        `${cause ? ` (${cause})` : ''}; the tunnel is closed`
      );
    case 'interrupted':
      return `interrupted; session for ${target} ended`;
    case 'not_signed_in':
      return `your sign-in ran out and could not be renewed${reauth}; run \`logproxy login\``;
    case 'failed':
      return cause ?? 'the tunnel failed';
  }
}

/** A warning in words, from the gateway's numbers. */
export function describeWarning(
  event: Extract<KeeperEvent, { type: 'warning' }>,
  target: string,
  reauth: boolean,
): string {
  const left = formatDuration(event.secondsLeft * 1000);
  if (event.kind === 'idle') {
    return `idle for ${formatDuration(event.idleS * 1000)}; the session closes in ${left} unless used`;
  }
  const after = reauth
    ? 'you will be asked to sign in again'
    : `then run \`logproxy connect ${target}\``;
  return `the session for ${target} ends in ${left} (maximum lifetime); ${after}`;
}

export interface RendererOptions {
  stream: Writable;
  mode: EventsMode;
  target: string;
  gateway: string;
  clock: Clock;
  /** Inline re-authentication is on (changes the wording of lifetime warnings). */
  reauth: boolean;
  color?: boolean;
}

export function createRenderer(options: RendererOptions): Renderer {
  if (options.mode === 'json') return jsonRenderer(options);
  if (options.mode === 'lines') return lineRenderer(options);
  return ttyRenderer(options);
}

/** One JSON object per event: stable snake_case fields, never a token. */
export function eventToJson(event: ConnectEvent, now: number): Record<string, unknown> {
  const ts = new Date(now).toISOString();
  switch (event.type) {
    case 'listening':
      return {
        event: 'listening',
        ts,
        url: event.info.url,
        addresses: event.info.addresses,
        ...(event.info.unixSocket ? { unix_socket: event.info.unixSocket } : {}),
        ...sessionFields(event.info.session),
        ...(event.info.secret ? { secret: event.info.secret } : {}),
      };
    case 'session':
    case 'heartbeat':
      return { event: event.type, ts, ...sessionFields(event.session) };
    case 'heartbeat_failed':
      return {
        event: 'heartbeat_failed',
        ts,
        attempt: event.attempt,
        retry_in_ms: event.retryInMs,
        error: event.error instanceof Error ? event.error.message : String(event.error),
      };
    case 'warning':
      return {
        event: 'warning',
        ts,
        kind: event.kind,
        seconds_left: event.secondsLeft,
        idle_s: event.idleS,
        threshold_s: event.thresholdS,
        session_id: event.session.id,
        ends_at: event.kind === 'idle' ? event.session.idle_expires_at : event.session.expires_at,
      };
    case 'refreshed':
      return {
        event: 'refreshed',
        ts,
        access_token_expires_at: new Date(event.accessTokenExpiresAt).toISOString(),
      };
    case 'reauthenticating':
      return { event: 'reauthenticating', ts, reason: event.reason, session_id: event.sessionId };
    case 'device_code':
      return {
        event: 'device_code',
        ts,
        user_code: event.code.userCode,
        verification_uri: event.code.verificationUri,
        verification_uri_complete: event.code.verificationUriComplete,
        expires_at: new Date(event.code.expiresAt).toISOString(),
      };
    case 'resumed':
      return {
        event: 'resumed',
        ts,
        previous_session_id: event.previousSessionId,
        ...sessionFields(event.session),
      };
    case 'ended':
      return {
        event: 'ended',
        ts,
        reason: event.end.reason,
        exit_code: event.end.exitCode,
        session_id: event.end.sessionId,
        message: event.end.message,
      };
  }
}

function sessionFields(s: SessionState): Record<string, unknown> {
  return {
    target: s.target,
    session_id: s.id,
    idle_timeout_s: s.policy.idle_timeout_s,
    idle_expires_at: s.idle_expires_at,
    expires_at: s.expires_at,
    seconds_to_idle_expiry: s.seconds_to_idle_expiry,
    seconds_to_absolute_end: s.seconds_to_absolute_end,
  };
}

function jsonRenderer(o: RendererOptions): Renderer {
  return {
    render(event) {
      // Heartbeats are frequent and carry nothing new for scripts beyond `session`.
      if (event.type === 'heartbeat') return;
      o.stream.write(`${JSON.stringify(eventToJson(event, o.clock.now()))}\n`);
    },
    close() {},
  };
}

/** Text for an event, or undefined for events people need not see. */
function describeEvent(event: ConnectEvent, o: RendererOptions): string | undefined {
  switch (event.type) {
    case 'listening': {
      const s = event.info.session;
      const lines = [
        `tunnel to ${o.target} listening on ${event.info.unixSocket ?? event.info.url}`,
        `  idle timeout ${formatDuration(s.policy.idle_timeout_s * 1000)}; ` +
          `the session ends at ${localTime(s.expires_at)} at the latest ` +
          `(in ${formatDuration(s.seconds_to_absolute_end * 1000)})`,
      ];
      if (event.info.secret) {
        lines.push(`  secret: ${event.info.secret} (send as X-Logproxy-Secret)`);
      }
      if (event.info.unixSocket) {
        lines.push(`  e.g. curl --unix-socket ${event.info.unixSocket} http://localhost/`);
      }
      lines.push('  press Ctrl-C to close it');
      return lines.join('\n');
    }
    case 'warning':
      return `warning: ${describeWarning(event, o.target, o.reauth)}`;
    case 'heartbeat_failed':
      return event.attempt === 1
        ? `gateway not answering (${errorText(event.error)}); retrying`
        : undefined;
    case 'reauthenticating':
      return `the session needs a new sign-in; requests wait meanwhile`;
    case 'device_code': {
      const url = event.code.verificationUriComplete ?? event.code.verificationUri;
      return `to continue, open ${url} and confirm the code ${event.code.userCode}`;
    }
    case 'resumed':
      return `signed in again; traffic continues on a new session (ends at ${localTime(event.session.expires_at)} at the latest)`;
    case 'refreshed':
    case 'session':
    case 'heartbeat':
      return undefined;
    case 'ended':
      return event.end.message;
  }
}

function lineRenderer(o: RendererOptions): Renderer {
  return {
    render(event) {
      const text = describeEvent(event, o);
      if (text !== undefined) o.stream.write(`logproxy: ${text}\n`);
    },
    close() {},
  };
}

/** How often the status line's countdown is redrawn. */
const STATUS_REDRAW_MS = 1_000;

function ttyRenderer(o: RendererOptions): Renderer {
  let last: { session: SessionState; atMs: number } | undefined;
  let status = '';
  let warning = '';
  let paused = false;
  /** Nothing is drawn before the tunnel announced itself, nor after its end. */
  let shown = false;
  let over = false;
  let timer: ReturnType<Clock['setTimeout']> | undefined;

  const clear = (): void => {
    if (status) o.stream.write('\r\x1b[2K');
  };
  const draw = (): void => {
    if (!last || paused || !shown || over) return;
    const elapsedS = Math.floor((o.clock.now() - last.atMs) / 1000);
    const s = last.session;
    const end = formatDuration(Math.max(0, s.seconds_to_absolute_end - elapsedS) * 1000);
    const idle = formatDuration(Math.max(0, s.seconds_to_idle_expiry - elapsedS) * 1000);
    const text = `${o.target} · ends in ${end} · closes in ${idle} if idle${warning ? ` · ${warning}` : ''}`;
    clear();
    status = text;
    o.stream.write(text);
  };
  const tick = (): void => {
    draw();
    timer = o.clock.setTimeout(tick, STATUS_REDRAW_MS);
  };
  const print = (text: string): void => {
    clear();
    status = '';
    o.stream.write(`${text}\n`);
    draw();
  };

  return {
    render(event) {
      if (event.type === 'listening') {
        last = { session: event.info.session, atMs: o.clock.now() };
        shown = true;
        print(describeEvent(event, o)!);
        tick();
        return;
      }
      if (event.type === 'session' || event.type === 'heartbeat' || event.type === 'resumed') {
        last = { session: event.session, atMs: o.clock.now() };
        if (event.type !== 'heartbeat') warning = '';
      }
      if (event.type === 'warning') warning = `${event.kind} warning`;
      if (event.type === 'reauthenticating' || event.type === 'device_code') paused = true;
      if (event.type === 'resumed') paused = false;
      if (event.type === 'ended') over = true;
      const text = describeEvent(event, o);
      if (text !== undefined) print(text);
      else draw();
    },
    close() {
      timer?.cancel();
      clear();
      status = '';
    },
  };
}

function localTime(iso: string): string {
  const d = new Date(iso);
  const pad = (n: number): string => String(n).padStart(2, '0');
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** An inline device login (re-authentication) whose code is shown through the renderer. */
export function signInThrough(
  signIn: (callbacks: DeviceLoginCallbacks, signal: AbortSignal) => Promise<void>,
  renderer: Renderer,
  signal: AbortSignal,
): Promise<void> {
  return signIn(
    {
      onCode: (prompt) =>
        renderer.render({
          type: 'device_code',
          code: {
            userCode: prompt.userCode,
            verificationUri: prompt.verificationUri,
            ...(prompt.verificationUriComplete
              ? { verificationUriComplete: prompt.verificationUriComplete }
              : {}),
            expiresAt: prompt.expiresAt,
          },
        }),
    },
    signal,
  );
}
