import { test } from 'node:test';
import assert from 'node:assert/strict';
import { main } from '../../src/cli/main.js';
import { createTestIO } from '../../src/cli/test-io.js';

test('usage errors in any subcommand exit 2 with the reason on stderr', async () => {
  for (const argv of [['connect'], ['tail', '--bogus'], ['login', 'extra', 'args'], ['nosuch']]) {
    const io = createTestIO();
    assert.equal(await main(argv, io), 2, argv.join(' '));
    assert.match(io.stderr.text(), /error: /, argv.join(' '));
    assert.equal(io.stdout.text(), '', `${argv.join(' ')}: stdout stays empty`);
  }
});

test('help goes to stdout and exits 0, for the program and a subcommand', async () => {
  for (const argv of [['--help'], ['connect', '--help']]) {
    const io = createTestIO();
    assert.equal(await main(argv, io), 0);
    assert.match(io.stdout.text(), /^Usage: logproxy/);
    assert.match(io.stdout.text(), /Examples:/);
  }
});
