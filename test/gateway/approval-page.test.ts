/**
 * A person approves (or denies) a device code in a real browser on the embedded provider's
 * pages while the device flow polls, as `logproxy login` would.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { decodeJwt } from 'jose';
import { approveDeviceCode, browserSkipReason, launchBrowser } from '../helpers/browser.js';
import type { LaunchedBrowser } from '../helpers/browser.js';
import { startDevIdp, type DevIdp } from '../helpers/dev-idp.js';
import {
  OAuthResponseError,
  pollDeviceToken,
  startDeviceAuthorization,
  type TokenSet,
} from '../helpers/device-token.js';

/** auth_time has whole seconds; to see a later one, the next second must have begun. */
async function nextSecond(): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, 1000 - (Date.now() % 1000) + 5));
}

/** The poll's outcome, without an unhandled rejection while the browser works. */
function settle(promise: Promise<TokenSet>): Promise<TokenSet | Error> {
  return promise.catch((err: Error) => err);
}

describe('approval pages in a browser', { skip: browserSkipReason() }, () => {
  let idp: DevIdp;
  let browser: LaunchedBrowser;

  before(async () => {
    idp = await startDevIdp({ autoApprove: undefined, pollIntervalS: 1 });
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    await idp?.close();
  });

  test('bob approves a device code while the device polls', async () => {
    const authorization = await startDeviceAuthorization(idp.issuer, idp.clientId);
    const polled = settle(pollDeviceToken(idp.issuer, idp.clientId, authorization));
    assert.ok(authorization.verificationUriComplete);

    const startedS = Math.floor(Date.now() / 1000);
    const { page, finalText } = await approveDeviceCode(
      browser.context,
      authorization.verificationUriComplete,
      'bob',
    );
    const approvedS = Math.ceil(Date.now() / 1000);
    assert.match(finalText, /signed in as bob/i);
    assert.match((await page.textContent('#dev-banner')) ?? '', /Development sign-in/);

    const tokens = await polled;
    assert.ok(!(tokens instanceof Error), `poll failed: ${String(tokens)}`);
    const claims = decodeJwt(tokens.accessToken);
    assert.equal(claims.sub, 'bob');
    assert.equal(claims.aud, idp.audience);
    const authTime = claims.auth_time as number;
    assert.ok(authTime >= startedS && authTime <= approvedS, `auth_time ${authTime}`);
    await page.close();
  });

  test('every approval asks who signs in, even in a browser that signed in before', async () => {
    const authTimes: number[] = [];
    for (const user of ['alice', 'bob']) {
      const authorization = await startDeviceAuthorization(idp.issuer, idp.clientId);
      const polled = settle(pollDeviceToken(idp.issuer, idp.clientId, authorization));
      assert.ok(authorization.verificationUriComplete);
      // approveDeviceCode fails unless the sign-in and approve pages both appear.
      const { page } = await approveDeviceCode(
        browser.context,
        authorization.verificationUriComplete,
        user,
      );
      await page.close();
      const tokens = await polled;
      assert.ok(!(tokens instanceof Error), `poll failed: ${String(tokens)}`);
      const claims = decodeJwt(tokens.accessToken);
      assert.equal(claims.sub, user);
      authTimes.push(claims.auth_time as number);
      if (user === 'alice') await nextSecond();
    }
    assert.ok(authTimes[1] > authTimes[0], 'the second approval is a new sign-in');
  });

  test('an unknown user is refused; denying ends the poll with access_denied', async () => {
    const authorization = await startDeviceAuthorization(idp.issuer, idp.clientId);
    const polled = settle(pollDeviceToken(idp.issuer, idp.clientId, authorization));

    const page = await browser.context.newPage();
    await page.goto(authorization.verificationUri, { waitUntil: 'domcontentloaded' });
    await page.fill('input[name="user_code"]', authorization.userCode.toLowerCase());
    await page.click('#continue');
    await page.waitForSelector('#user-code');
    await page.click('#continue');

    await page.waitForSelector('#sign-in');
    await page.fill('#user', 'mallory');
    await page.click('#sign-in-button');
    await page.waitForSelector('#error');
    const error = (await page.textContent('#error')) ?? '';
    assert.match(error, /no user "mallory"/);
    assert.match(error, /alice, bob/);

    await page.fill('#user', 'bob');
    await page.click('#sign-in-button');
    await page.waitForSelector('#approve');
    await page.click('#deny');
    await page.waitForSelector('#notice');
    assert.match((await page.textContent('#notice')) ?? '', /denied/);

    const outcome = await polled;
    assert.ok(outcome instanceof OAuthResponseError, `expected a refusal, got ${String(outcome)}`);
    assert.equal(outcome.error, 'access_denied');
    await page.close();
  });

  test('denying on the confirm page also ends with access_denied', async () => {
    const authorization = await startDeviceAuthorization(idp.issuer, idp.clientId);
    const polled = settle(pollDeviceToken(idp.issuer, idp.clientId, authorization));

    const { page, finalText } = await approveDeviceCode(
      browser.context,
      { uri: authorization.verificationUri, userCode: authorization.userCode },
      'alice',
      { deny: 'confirm' },
    );
    assert.match(finalText, /denied/);

    const outcome = await polled;
    assert.ok(outcome instanceof OAuthResponseError, `expected a refusal, got ${String(outcome)}`);
    assert.equal(outcome.error, 'access_denied');
    await page.close();
  });
});
