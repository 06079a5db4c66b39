import type { Command } from 'commander';
import type { CommandContext } from './context.js';
import { createConnectCommand } from './connect.js';
import { createLoginCommand } from './login.js';
import { createLogoutCommand } from './logout.js';
import { createStatusCommand } from './status.js';
import { createTargetsCommand } from './targets.js';
import { createTailCommand } from './tail.js';

/**
 * Adds every subcommand. Each `createXCommand` only declares flags; its action imports what
 * it needs when it runs.
 */
export function registerCommands(program: Command, ctx: CommandContext): void {
  program.addCommand(createLoginCommand(ctx));
  program.addCommand(createLogoutCommand(ctx));
  program.addCommand(createStatusCommand(ctx));
  program.addCommand(createTargetsCommand(ctx));
  program.addCommand(createConnectCommand(ctx));
  program.addCommand(createTailCommand(ctx));
  void ctx;
  void program;
}
