import type { Command } from 'commander';
import type { CommandContext } from './context.js';

/**
 * Adds every subcommand. Each `createXCommand` only declares flags; its action imports what
 * it needs when it runs.
 */
export function registerCommands(program: Command, ctx: CommandContext): void {
  void ctx;
  void program;
}
