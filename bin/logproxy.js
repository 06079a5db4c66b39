#!/usr/bin/env node
// Thin entry point: wire the process to the CLI and turn its result into an exit code.
import { main } from '../dist/src/cli/main.js';
import { createProcessIO } from '../dist/src/cli/io.js';

const controller = new AbortController();
let interrupts = 0;
const onSignal = (name) => {
  interrupts += 1;
  // A second Ctrl-C means "now": skip the graceful teardown.
  if (interrupts > 1) process.exit(130);
  controller.abort(name);
};
process.on('SIGINT', () => onSignal('SIGINT'));
process.on('SIGTERM', () => onSignal('SIGTERM'));
// A closed pipe (`| head`) is a normal way for output to end, not a crash.
process.stdout.on('error', (err) => {
  if (err.code === 'EPIPE') controller.abort('EPIPE');
});

const code = await main(process.argv.slice(2), createProcessIO(controller.signal));
process.exit(code);
