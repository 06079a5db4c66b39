import type { Command as CommandType } from 'commander';
import { ExitCodes, exitCodeForError } from './exit-codes.js';
import type { CommandContext, GlobalOptions } from './context.js';
import type { IO } from './io.js';
import { isAbortError, isLogproxyError } from '../util/errors.js';
import { VERSION } from './version.js';

/**
 * Parses argv, runs one command and returns its exit code. Heavy modules are imported by
 * each command's action, never here, so `--help` and `--version` stay fast.
 */
export async function main(argv: string[], io: IO): Promise<number> {
  // `--version` alone is answered before commander loads: scripts call it often, and it is
  // the one answer that needs no parsing (bench/startup.ts measures the difference).
  if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-V')) {
    io.stdout.write(`${VERSION}\n`);
    return 0;
  }
  const { Command, CommanderError } = await import('commander');
  const ctx: CommandContext = {
    io,
    exitCode: ExitCodes.OK,
    globals: () => program.opts<GlobalOptions>(),
  };
  const program: CommandType = new Command('logproxy');
  program
    .description('Time-boxed, audited access to production logs through a logproxy gateway.')
    .version(VERSION, '-V, --version', 'print the version and exit')
    .option('-v, --verbose', 'trace HTTP requests to stderr (tokens redacted)', false)
    .option('--no-color', 'never colour output (also: NO_COLOR=1)')
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
    })
    .exitOverride();

  const { registerCommands } = await import('./commands.js');
  registerCommands(program, ctx);
  // Commands made with `new Command()` do not inherit exitOverride or output settings: without
  // this a usage error in a subcommand would exit 1 from inside commander, not 2 from here.
  for (const command of program.commands) command.copyInheritedSettings(program);
  program.addHelpText('after', HELP_FOOTER);

  try {
    await program.parseAsync(argv, { from: 'user' });
    return ctx.exitCode;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return 0;
      if (err.code === 'commander.help') return 0;
      return ExitCodes.USAGE;
    }
    return reportError(err, io, program.opts<GlobalOptions>().verbose);
  }
}

const HELP_FOOTER = `
Examples:
  $ logproxy login --gateway https://logs.example.com
  $ logproxy targets
  $ logproxy connect prod-logs            # local URL for curl, Grafana, logcli
  $ logproxy tail prod-logs -f | jq .line

Exit codes: 0 ok, 1 error, 2 usage, 3 sign in needed, 4 access denied, 5 unreachable,
10 idle timeout, 11 maximum lifetime, 12 revoked, 130 interrupted (docs/exit-codes.md).
Environment: LOGPROXY_GATEWAY, LOGPROXY_PROFILE, LOGPROXY_CONFIG_DIR, NO_COLOR, HTTPS_PROXY.
`;

/** Prints an error for people (no stack trace unless --verbose) and picks its exit code. */
export function reportError(err: unknown, io: IO, verbose: boolean): number {
  if (isLogproxyError(err)) {
    io.stderr.write(`logproxy: ${err.message}\n`);
    if (verbose && err.cause) io.stderr.write(`  cause: ${describeCause(err.cause)}\n`);
    return exitCodeForError(err.code);
  }
  if (isAbortError(err) || io.signal.aborted) {
    io.stderr.write('logproxy: interrupted\n');
    return ExitCodes.INTERRUPTED;
  }
  const message = err instanceof Error ? err.message : String(err);
  io.stderr.write(`logproxy: unexpected error: ${message}\n`);
  if (verbose && err instanceof Error && err.stack) io.stderr.write(`${err.stack}\n`);
  else io.stderr.write('  (run again with --verbose for details)\n');
  return ExitCodes.ERROR;
}

function describeCause(cause: unknown): string {
  if (cause instanceof Error) {
    const code = (cause as { code?: string }).code;
    return code ? `${cause.message} (${code})` : cause.message;
  }
  return String(cause);
}
