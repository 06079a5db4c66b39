/**
 * The default path: `logproxy login` without --insecure-storage keeps the tokens in a REAL
 * Secret Service (gnome-keyring in a private D-Bus session), and status, targets and logout
 * find them there. The CLI runs as child processes of a small driver script inside the
 * session, one after the other.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import type { StatusDocument } from '../../src/cli/status.js';
import { CLI_BIN } from '../helpers/cli.js';
import { startGateway } from '../helpers/gateway.js';
import {
  lastJsonLine,
  requireSecretServiceTools,
  runWithSecretService,
} from '../helpers/keyring.js';

const DRIVER = `
import { spawnSync } from 'node:child_process';
const [bin, gateway] = process.argv.slice(2);
const run = (args) => {
  const r = spawnSync(process.execPath, [bin, ...args], { env: process.env, encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
};
const steps = {};
steps.login = run(['login', '--gateway', gateway]);
steps.status = run(['status', '--json']);
steps.targets = run(['targets', '--json']);
steps.logout = run(['logout']);
steps.after = run(['status', '--json']);
console.log(JSON.stringify(steps));
`;

interface Step {
  code: number | null;
  stdout: string;
  stderr: string;
}

test('login stores in the OS keychain by default; status, targets, logout use it', async (t) => {
  if (!requireSecretServiceTools(t)) return;
  const gw = await startGateway();
  t.after(() => gw.close());
  const dir = await mkdtemp(path.join(tmpdir(), 'lp-cli-keychain-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const driver = path.join(dir, 'driver.mjs');
  await writeFile(driver, DRIVER);
  const configDir = path.join(dir, 'config');

  const result = await runWithSecretService(driver, [CLI_BIN, gw.url], {
    env: { LOGPROXY_CONFIG_DIR: configDir, NO_COLOR: '1' },
    timeoutMs: 90_000,
  });
  assert.equal(result.code, 0, result.stderr);
  const steps = lastJsonLine<Record<string, Step>>(result);

  assert.equal(steps.login!.code, 0, steps.login!.stderr);
  assert.match(steps.login!.stderr, /Logged in to .* as alice/);
  assert.doesNotMatch(steps.login!.stderr, /unencrypted/, 'no file-store warning');

  const status = JSON.parse(steps.status!.stdout) as StatusDocument;
  assert.equal(steps.status!.code, 0, steps.status!.stderr);
  assert.equal(status.subject, 'alice');
  assert.deepEqual(status.store, { kind: 'keychain', location: 'Secret Service (D-Bus)' });
  assert.equal(steps.targets!.code, 0, steps.targets!.stderr);

  assert.equal(steps.logout!.code, 0, steps.logout!.stderr);
  assert.doesNotMatch(steps.logout!.stderr, /could not revoke/);
  assert.equal(steps.after!.code, 3);
  assert.equal((JSON.parse(steps.after!.stdout) as StatusDocument).signed_in, false);

  const files = await readdir(path.join(configDir, 'credentials')).catch(() => []);
  assert.deepEqual(files, [], 'nothing was written to the file store');
});
