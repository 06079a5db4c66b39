/**
 * `logproxy logout`: revoke the refresh token at the identity provider (RFC 7009) and delete
 * the stored credentials. Local deletion happens even when the provider cannot be reached:
 * the person asked for this machine to forget the sign-in, and it does.
 */
// commander is loaded by main before any command file, so this import costs nothing.
import { Command } from 'commander';
import type { CommandContext } from './context.js';
import type { IO } from './io.js';
import { ExitCodes, type ExitCode } from './exit-codes.js';
import type { StoredCredentials } from '../auth/types.js';
import { ErrorCodes, isLogproxyError } from '../util/errors.js';

export interface LogoutOptions {
  gateway?: string;
  profile?: string;
  verbose: boolean;
  color: boolean;
}

export function createLogoutCommand(ctx: CommandContext): Command {
  return new Command('logout')
    .description('revoke the refresh token and delete the stored credentials')
    .option('--gateway <url>', 'gateway to sign out of (default: the one this profile uses)')
    .option('--profile <name>', 'profile to sign out (default: LOGPROXY_PROFILE or "default")')
    .addHelpText(
      'after',
      `
Examples:
  $ logproxy logout
  $ logproxy logout --gateway https://logs.example.com --profile work

If the identity provider cannot be reached, the credentials are still deleted here and
logout says the refresh token could not be revoked (exit code 0: this machine forgot them).
Signing out when not signed in is not an error.`,
    )
    .action(async (flags: Record<string, unknown>) => {
      const globals = ctx.globals();
      ctx.exitCode = await runLogout(
        {
          gateway: flags.gateway as string | undefined,
          profile: flags.profile as string | undefined,
          verbose: globals.verbose,
          color: globals.color !== false,
        },
        ctx.io,
      );
    });
}

export async function runLogout(options: LogoutOptions, io: IO): Promise<ExitCode> {
  const { resolveClientSettings, requireGateway } = await import('./config.js');
  const { storeForProfile } = await import('../auth/token-store.js');
  const { removeProfileRecord, findProfileRecord } = await import('../auth/profiles.js');
  const { stylesFor } = await import('./output.js');

  const settings = await resolveClientSettings(
    { gateway: options.gateway, profile: options.profile },
    io.env,
  );
  const { profile, paths } = settings;
  if (!settings.gateway) {
    const { readProfileRecords } = await import('../auth/profiles.js');
    const records = await readProfileRecords(paths.profilesFile).catch(() => []);
    if (!records.some((r) => r.profile === profile)) {
      io.stderr.write(`Not signed in (profile ${profile}); nothing to do.\n`);
      return ExitCodes.OK;
    }
  }
  const gateway = await requireGateway(settings);
  const styles = await stylesFor(io, options.color);
  const who = `${gateway} (profile ${profile})`;

  const store = await storeForProfile(gateway, profile, paths, settings.tokenStore);
  const record = await findProfileRecord(paths.profilesFile, gateway, profile).catch(
    () => undefined,
  );
  let creds: StoredCredentials | undefined;
  try {
    creds = await store.read(gateway, profile);
  } catch (err) {
    // No keychain and no record of a sign-in: there is nothing to forget.
    if (!record && isLogproxyError(err, ErrorCodes.KEYCHAIN_UNAVAILABLE)) {
      io.stderr.write(`Not signed in to ${who}; nothing to do.\n`);
      return ExitCodes.OK;
    }
    // Damaged credentials cannot be revoked, but can be deleted.
    io.stderr.write(`${styles.yellow('warning:')} ${(err as Error).message}\n`);
  }

  if (creds?.refreshToken) {
    const failure = await revoke(creds, gateway, options.verbose, io);
    if (failure) {
      io.stderr.write(
        `${styles.yellow('warning:')} could not revoke the refresh token at the identity ` +
          `provider (${failure}); it stays valid until it expires. The credentials are ` +
          'deleted from this machine anyway.\n',
      );
    }
  }

  let deleted = false;
  try {
    deleted = await store.delete(gateway, profile);
  } catch (err) {
    // A keychain that cannot be reached holds nothing we know of unless a sign-in is recorded.
    if (record || creds) throw err;
  }
  const unlisted = await removeProfileRecord(paths.profilesFile, paths.locksDir, gateway, profile);
  if (!deleted && !unlisted && !creds && !record) {
    io.stderr.write(`Not signed in to ${who}; nothing to do.\n`);
    return ExitCodes.OK;
  }
  io.stderr.write(`${styles.green('\u2713')} Logged out of ${who}\n`);
  return ExitCodes.OK;
}

/**
 * Revokes the refresh token (RFC 7009). Returns why it failed, or undefined on success.
 * Access tokens are JWTs the provider cannot revoke; they expire within their short lifetime.
 */
async function revoke(
  creds: { issuer: string; clientId: string; refreshToken?: string },
  gateway: string,
  verbose: boolean,
  io: IO,
): Promise<string | undefined> {
  const [{ createHttpClient }, { getOidcConfiguration, isLoopbackHost }, oidc, authServices] =
    await Promise.all([
      import('../auth/http.js'),
      import('../auth/oidc-config.js'),
      import('openid-client'),
      import('./auth-services.js'),
    ]);
  const { describeOidcError } = await import('../auth/device-flow.js');
  const trace = authServices.verboseWriter(io, verbose);
  const http = createHttpClient({ verbose, ...(trace ? { trace } : {}), env: io.env });
  http.nameServer(gateway, 'the gateway');
  http.nameServer(creds.issuer, 'the identity provider');
  try {
    // A plain-HTTP issuer on a network host was accepted at login only because the gateway
    // said it runs its development provider; the token already travelled that way.
    const issuer = new URL(creds.issuer);
    const allowInsecure = issuer.protocol === 'http:' && !isLoopbackHost(issuer.hostname);
    const config = await getOidcConfiguration(creds.issuer, creds.clientId, {
      fetch: http,
      allowInsecure,
    });
    await oidc.tokenRevocation(config, creds.refreshToken!, { token_type_hint: 'refresh_token' });
    return undefined;
  } catch (err) {
    return describeOidcError(err, 'the identity provider').message;
  } finally {
    await http.close();
  }
}
