/**
 * `logproxy status`: who you are signed in as, on which gateway, until when, where the
 * credentials live, every known profile and the running tunnels. Works offline: it reads the
 * store and the state dir, and never refreshes or calls the gateway.
 */
// commander is loaded by main before any command file, so this import costs nothing.
import { Command } from 'commander';
import type { CommandContext } from './context.js';
import type { IO } from './io.js';
import type { ProfileRecord } from '../auth/profiles.js';
import type { StoredCredentials, TokenStore } from '../auth/types.js';
import type { TunnelRecord } from '../tunnel/registry.js';
import { systemClock, type Clock } from '../util/clock.js';
import { ErrorCodes, LogproxyError } from '../util/errors.js';
import { ExitCodes, type ExitCode } from './exit-codes.js';

export interface StatusOptions {
  gateway?: string;
  profile?: string;
  json: boolean;
  color: boolean;
}

/** The `--json` document. Field names are stable (scripts rely on them). */
export interface StatusDocument {
  signed_in: boolean;
  gateway: string | null;
  profile: string;
  subject?: string;
  issuer?: string;
  /** RFC 3339. */
  access_token_expires_at?: string;
  access_token_expired?: boolean;
  refresh_token?: boolean;
  refresh_token_expires_at?: string;
  auth_time?: string;
  refreshed_at?: string;
  store?: { kind: string; location: string };
  profiles: Array<{
    gateway: string;
    profile: string;
    subject: string;
    store: string;
    location: string;
    last_login_at: string;
    current: boolean;
  }>;
  tunnels: Array<{
    pid: number;
    target: string;
    local_url: string;
    session_id: string;
    expires_at: string;
    gateway: string;
    profile: string;
  }>;
}

export function createStatusCommand(ctx: CommandContext): Command {
  return new Command('status')
    .description('show the sign-in, token expiry, credential storage, profiles and tunnels')
    .option('--json', 'print one JSON document on stdout', false)
    .option('--gateway <url>', 'gateway to show (default: the one this profile uses)')
    .option('--profile <name>', 'profile to show (default: LOGPROXY_PROFILE or "default")')
    .addHelpText(
      'after',
      `
Examples:
  $ logproxy status
  $ logproxy status --json | jq -r .subject
  $ logproxy status --profile work

Exit codes: 0 signed in, 3 not signed in (run \`logproxy login\`). Makes no network request.`,
    )
    .action(async (flags: Record<string, unknown>) => {
      ctx.exitCode = await runStatus(
        {
          gateway: flags.gateway as string | undefined,
          profile: flags.profile as string | undefined,
          json: Boolean(flags.json),
          color: ctx.globals().color !== false,
        },
        ctx.io,
      );
    });
}

export async function runStatus(
  options: StatusOptions,
  io: IO,
  clock: Clock = systemClock,
): Promise<ExitCode> {
  const { resolveClientSettings } = await import('./config.js');
  const { readProfileRecords } = await import('../auth/profiles.js');
  const { listTunnels } = await import('../tunnel/registry.js');
  const { storeForProfile } = await import('../auth/token-store.js');
  const { storeLocation } = await import('../auth/sign-in.js');

  const settings = await resolveClientSettings(
    { gateway: options.gateway, profile: options.profile },
    io.env,
  );
  const { profile, paths } = settings;
  const profiles = await readProfileRecords(paths.profilesFile).catch((err: unknown) => {
    io.stderr.write(`logproxy: warning: ${(err as Error).message}\n`);
    return [] as ProfileRecord[];
  });
  const tunnels = await listTunnels(paths.stateDir);
  const gateway = settings.gateway;

  let creds: StoredCredentials | undefined;
  let store: TokenStore | undefined;
  if (gateway) {
    store = await storeForProfile(gateway, profile, paths, settings.tokenStore);
    creds = await store.read(gateway, profile);
  }

  const doc = toDocument({
    gateway,
    profile,
    creds,
    store,
    profiles,
    tunnels,
    clock,
    storeLocation,
  });
  if (options.json) (await import('./output.js')).writeJson(io, doc);
  else await printStatus(io, doc, options.color, clock);

  if (!creds) throw notSignedIn(gateway, profile, profiles);
  return ExitCodes.OK;
}

function notSignedIn(
  gateway: string | undefined,
  profile: string,
  profiles: ProfileRecord[],
): LogproxyError {
  const forProfile = profiles.filter((p) => p.profile === profile).map((p) => p.gateway);
  const where = gateway ? ` to ${gateway}` : '';
  const hint =
    !gateway && forProfile.length > 1
      ? ` (profile "${profile}" is signed in to ${forProfile.join(', ')}: pick one with --gateway)`
      : '';
  const login = gateway ? `logproxy login --gateway ${gateway}` : 'logproxy login --gateway URL';
  return new LogproxyError(
    ErrorCodes.NOT_SIGNED_IN,
    `not signed in${where} (profile ${profile})${hint}; run \`${login}${profile === 'default' ? '' : ` --profile ${profile}`}\``,
  );
}

function toDocument(input: {
  gateway?: string;
  profile: string;
  creds?: StoredCredentials;
  store?: TokenStore;
  profiles: ProfileRecord[];
  tunnels: TunnelRecord[];
  clock: Clock;
  storeLocation: (store: TokenStore, gateway: string, profile: string) => string;
}): StatusDocument {
  const { creds, store, gateway, profile } = input;
  const iso = (ms: number | undefined) =>
    ms === undefined ? undefined : new Date(ms).toISOString();
  const doc: StatusDocument = {
    signed_in: Boolean(creds),
    gateway: gateway ?? null,
    profile,
    profiles: input.profiles.map((p) => ({
      gateway: p.gateway,
      profile: p.profile,
      subject: p.subject,
      store: p.store,
      location: p.location,
      last_login_at: p.lastLoginAt,
      current: p.gateway === gateway && p.profile === profile,
    })),
    tunnels: input.tunnels.map((t) => ({
      pid: t.pid,
      target: t.target,
      local_url: t.localUrl,
      session_id: t.sessionId,
      expires_at: t.expiresAt,
      gateway: t.gateway,
      profile: t.profile,
    })),
  };
  if (!creds || !store || !gateway) return doc;
  const { profiles, tunnels, ...head } = doc;
  return {
    ...head,
    subject: creds.subject,
    issuer: creds.issuer,
    access_token_expires_at: iso(creds.accessTokenExpiresAt),
    access_token_expired: creds.accessTokenExpiresAt <= input.clock.now(),
    refresh_token: Boolean(creds.refreshToken),
    ...(creds.refreshTokenExpiresAt
      ? { refresh_token_expires_at: iso(creds.refreshTokenExpiresAt) }
      : {}),
    ...(creds.authTime ? { auth_time: iso(creds.authTime) } : {}),
    ...(creds.refreshedAt ? { refreshed_at: iso(creds.refreshedAt) } : {}),
    store: { kind: store.kind, location: input.storeLocation(store, gateway, profile) },
    profiles,
    tunnels,
  };
}

async function printStatus(io: IO, doc: StatusDocument, color: boolean, clock: Clock) {
  const { stylesFor, formatTable, relativeTime, formatTimestamp } = await import('./output.js');
  const s = await stylesFor(io, color, true);
  const now = clock.now();
  const out: string[] = [];
  const row = (label: string, value: string) => out.push(`${`${label}:`.padEnd(15)}${value}`);

  if (doc.signed_in && doc.gateway) {
    const expires = Date.parse(doc.access_token_expires_at!);
    row('Gateway', `${doc.gateway} (profile ${doc.profile})`);
    row('Signed in as', s.bold(doc.subject!));
    row(
      'Access token',
      doc.access_token_expired
        ? s.yellow(`expired ${relativeTime(expires, now)} (refreshed on next use)`)
        : `valid until ${formatTimestamp(expires)} (${relativeTime(expires, now)})`,
    );
    row(
      'Refresh token',
      doc.refresh_token
        ? `present${doc.refresh_token_expires_at ? `, until ${formatTimestamp(Date.parse(doc.refresh_token_expires_at))}` : ''}`
        : s.yellow('none (sign in again when the access token expires)'),
    );
    if (doc.auth_time) row('Signed in at', formatTimestamp(Date.parse(doc.auth_time)));
    row(
      'Credentials',
      doc.store!.kind === 'file' ? `${doc.store!.location} (0600 file)` : doc.store!.location,
    );
  } else {
    row('Gateway', doc.gateway ? `${doc.gateway} (profile ${doc.profile})` : '(none chosen)');
    row('Signed in as', s.yellow('nobody'));
  }

  if (doc.profiles.length) {
    out.push('', 'Profiles:');
    const table = formatTable(
      ['', 'PROFILE', 'GATEWAY', 'SUBJECT', 'STORE'],
      doc.profiles.map((p) => [p.current ? '*' : ' ', p.profile, p.gateway, p.subject, p.store]),
    );
    out.push(
      ...table
        .trimEnd()
        .split('\n')
        .map((l) => `  ${l}`),
    );
  }
  if (doc.tunnels.length) {
    out.push('', 'Tunnels:');
    const table = formatTable(
      ['TARGET', 'LOCAL URL', 'SESSION', 'ENDS', 'PID'],
      doc.tunnels.map((t) => [
        t.target,
        t.local_url,
        t.session_id,
        `${formatTimestamp(Date.parse(t.expires_at))} (${relativeTime(Date.parse(t.expires_at), now)})`,
        String(t.pid),
      ]),
    );
    out.push(
      ...table
        .trimEnd()
        .split('\n')
        .map((l) => `  ${l}`),
    );
  }
  io.stdout.write(`${out.join('\n')}\n`);
}
