import type { IO } from './io.js';

/** What every command's wiring receives from main: the IO and a place to put its exit code. */
export interface CommandContext {
  io: IO;
  /** Commands set this when they finish with something other than 0. */
  exitCode: number;
  /** Global flags, read after parsing. */
  globals(): GlobalOptions;
}

export interface GlobalOptions {
  /** Trace HTTP to stderr with tokens redacted. */
  verbose: boolean;
  /** --no-color */
  color: boolean;
}
