/**
 * A person approves (or denies) the device code in a real browser: `logproxy login
 * --no-browser` runs as a child, the test reads the URL and code from its stderr like a person
 * would, and Debian chromium (playwright-core) completes the embedded provider's pages as bob.
 * Also: Ctrl-C while login waits.
 */
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { approveDeviceCode, browserSkipReason, launchBrowser } from '../helpers/browser.js';
import { createCliEnv, type CliEnv } from '../helpers/cli.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import type { StatusDocument } from '../../src/cli/status.js';

/** What a person reads on the terminal: the URL to open and the code to type. */
function parsePrompt(stderr: string): { uri: string; userCode: string } {
  const userCode = /one-time code: (\S+)/.exec(stderr)?.[1];
  const uri = /Then open (\S+) in a browser/.exec(stderr)?.[1];
  assert.ok(userCode && uri, `no code or URL in:\n${stderr}`);
  return { uri, userCode };
}

describe('login approved in a real browser (no auto-approve)', () => {
  let gw: TestGateway;

  before(async () => {
    gw = await startGateway({ autoApprove: null });
  });
  after(() => gw.close());

  test(
    'bob approves the code; status --json shows bob',
    { skip: browserSkipReason() },
    async (t) => {
      const cli = await createCliEnv();
      t.after(() => cli.cleanup());
      const browser = await launchBrowser();
      t.after(() => browser.close());

      const login = cli.spawn(['login', '--gateway', gw.url, '--no-browser', '--insecure-storage']);
      const prompt = parsePrompt(await login.waitFor(/Waiting for approval/));
      await approveDeviceCode(browser.context, prompt, 'bob');
      const result = await login.result;

      assert.equal(result.code, 0, result.stderr);
      assert.match(
        result.stderr,
        new RegExp(`Logged in to ${gw.url} as bob \\(profile default\\)`),
      );
      const status = await cli.run(['status', '--json']);
      assert.equal(status.code, 0, status.stderr);
      const doc = JSON.parse(status.stdout) as StatusDocument;
      assert.equal(doc.subject, 'bob');
      assert.equal(doc.refresh_token, true);
    },
  );

  test(
    'a code denied in the browser ends login with exit 4 and the next step',
    { skip: browserSkipReason() },
    async (t) => {
      const cli = await createCliEnv();
      t.after(() => cli.cleanup());
      const browser = await launchBrowser();
      t.after(() => browser.close());

      const login = cli.spawn(['login', '--gateway', gw.url, '--no-browser', '--insecure-storage']);
      const prompt = parsePrompt(await login.waitFor(/Waiting for approval/));
      await approveDeviceCode(browser.context, prompt, 'bob', { deny: true });
      const result = await login.result;

      assert.equal(result.code, 4, result.stderr);
      assert.match(result.stderr, /denied in the browser; run `logproxy login` to try again/);
      assert.equal((await cli.run(['status'])).code, 3);
    },
  );

  test('Ctrl-C while waiting for approval exits 130 and stores nothing', async (t) => {
    const cli: CliEnv = await createCliEnv();
    t.after(() => cli.cleanup());
    const login = cli.spawn(['login', '--gateway', gw.url, '--no-browser', '--insecure-storage']);
    await login.waitFor(/Waiting for approval/);
    login.kill('SIGINT');
    const result = await login.result;

    assert.equal(result.code, 130, result.stderr);
    assert.match(result.stderr, /sign-in interrupted \(SIGINT\); nothing was stored/);
    const stored = await readdir(path.join(cli.configDir, 'credentials')).catch(() => []);
    assert.deepEqual(stored, []);
  });
});
