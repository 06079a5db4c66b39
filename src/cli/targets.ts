/**
 * `logproxy targets`: the targets this person may open on the gateway, with their session
 * policy (idle timeout, maximum lifetime). A table on stdout, or the gateway's document with
 * `--json`.
 */
// commander is loaded by main before any command file, so this import costs nothing.
import { Command } from 'commander';
import type { CommandContext } from './context.js';
import type { IO } from './io.js';
import type { TargetList } from '../protocol/api.js';
import { ExitCodes, type ExitCode } from './exit-codes.js';
import type { formatTable as FormatTable } from './output.js';
import { formatDuration } from '../util/durations.js';

export interface TargetsOptions {
  gateway?: string;
  profile?: string;
  json: boolean;
  verbose: boolean;
}

export function createTargetsCommand(ctx: CommandContext): Command {
  return new Command('targets')
    .description('list the targets you may open, with their idle timeout and lifetime')
    .option('--json', 'print the gateway\u2019s target list as JSON on stdout', false)
    .option('--gateway <url>', 'gateway to ask (default: the one this profile uses)')
    .option('--profile <name>', 'profile to use (default: LOGPROXY_PROFILE or "default")')
    .addHelpText(
      'after',
      `
Examples:
  $ logproxy targets
  $ logproxy targets --json | jq -r '.targets[].name'

Exit codes: 0 ok, 3 not signed in, 5 gateway unreachable (docs/exit-codes.md).`,
    )
    .action(async (flags: Record<string, unknown>) => {
      ctx.exitCode = await runTargets(
        {
          gateway: flags.gateway as string | undefined,
          profile: flags.profile as string | undefined,
          json: Boolean(flags.json),
          verbose: ctx.globals().verbose,
        },
        ctx.io,
      );
    });
}

export async function runTargets(options: TargetsOptions, io: IO): Promise<ExitCode> {
  const { openAuthServices } = await import('./auth-services.js');
  const services = await openAuthServices(options, io);
  let list: TargetList;
  try {
    list = await services.api.listTargets(io.signal);
  } finally {
    await services.close();
  }

  const { formatTable, writeJson } = await import('./output.js');
  if (options.json) {
    writeJson(io, list);
    return ExitCodes.OK;
  }
  if (list.targets.length === 0) {
    io.stderr.write(
      `No targets on ${services.gateway} allow ${services.tokens.describe()?.subject ?? 'you'}; ` +
        'ask the gateway operator for access.\n',
    );
    return ExitCodes.OK;
  }
  io.stdout.write(renderTargets(list, formatTable));
  return ExitCodes.OK;
}

/** The table: name, source, idle timeout, max lifetime, and the description when any. */
export function renderTargets(list: TargetList, formatTable: typeof FormatTable): string {
  const rows = [...list.targets]
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((t) => [
      t.name,
      t.source_type,
      formatDuration(t.policy.idle_timeout_s * 1000),
      formatDuration(t.policy.max_lifetime_s * 1000),
      t.description ?? '',
    ]);
  return formatTable(['NAME', 'SOURCE', 'IDLE TIMEOUT', 'MAX LIFETIME', 'DESCRIPTION'], rows);
}
