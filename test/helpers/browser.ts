/**
 * A real Chromium (Debian's /usr/bin/chromium through playwright-core) for tests in which a
 * person approves a device code on the embedded provider's pages.
 *
 * Availability: declare browser tests with `{ skip: browserSkipReason() }`. Off CI a machine
 * without chromium skips them with a message; under CI=true they run and fail, because a
 * missing browser there is a broken CI image, not a reason to pass.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';

export const CHROMIUM_PATH = process.env.LOGPROXY_CHROMIUM ?? '/usr/bin/chromium';

/** Every step of the approval pages waits at most this long for the next page. */
const STEP_TIMEOUT_MS = 20_000;

const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** A reason to skip browser tests, or false when they must run (chromium present, or CI). */
export function browserSkipReason(): string | false {
  if (existsSync(CHROMIUM_PATH)) return false;
  if (process.env.CI === 'true') return false;
  return `no chromium at ${CHROMIUM_PATH} (apt-get install chromium); browser tests skipped`;
}

export interface LaunchedBrowser {
  context: BrowserContext;
  /** Closes the browser and removes its profile directory. */
  close(): Promise<void>;
}

/**
 * Starts headless Chromium with a throwaway profile. Requests that leave the loopback
 * interface are aborted: nothing outside 127.0.0.1 can be reached here, and a page that
 * tried would hang until its timeout instead of failing clearly.
 */
export async function launchBrowser(): Promise<LaunchedBrowser> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(`no chromium at ${CHROMIUM_PATH}: install it with apt-get install chromium`);
  }
  const { chromium } = await import('playwright-core');
  const profileDir = await mkdtemp(path.join(os.tmpdir(), 'lp-chromium-'));
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(profileDir, {
      executablePath: CHROMIUM_PATH,
      headless: true,
      args: CHROMIUM_ARGS,
    });
  } catch (err) {
    await rm(profileDir, { recursive: true, force: true });
    throw err;
  }
  await context.route('**/*', (route) => {
    const { hostname } = new URL(route.request().url());
    const local = hostname === '127.0.0.1' || hostname === 'localhost' || hostname === '[::1]';
    return local ? route.continue() : route.abort('blockedbyclient');
  });
  context.setDefaultTimeout(STEP_TIMEOUT_MS);

  return {
    context,
    async close() {
      await context.close();
      await rm(profileDir, { recursive: true, force: true });
    },
  };
}

export type DeviceCodeTarget = string | { uri: string; userCode: string };

export interface ApproveOptions {
  /** Deny instead of approving: on the confirm page (`confirm`) or the last page (default). */
  deny?: boolean | 'confirm' | 'consent';
}

export interface ApproveResult {
  page: Page;
  /** The text the last page showed. */
  finalText: string;
}

/**
 * Walks the embedded provider's pages like a person: enter (or follow) the code, confirm it,
 * sign in as `user`, then approve or deny. Resolves on the success (or "denied") page.
 *
 * @param target `verification_uri_complete`, or `{ uri: verification_uri, userCode }`.
 */
export async function approveDeviceCode(
  on: Page | BrowserContext,
  target: DeviceCodeTarget,
  user: string,
  options: ApproveOptions = {},
): Promise<ApproveResult> {
  const page = 'newPage' in on ? await on.newPage() : on;

  if (typeof target === 'string') {
    // The complete URI posts the code by itself and lands on the confirm page.
    await page.goto(target, { waitUntil: 'domcontentloaded' });
  } else {
    await page.goto(target.uri, { waitUntil: 'domcontentloaded' });
    await page.fill('input[name="user_code"]', target.userCode);
    await page.click('#continue');
  }

  await page.waitForSelector('#user-code');
  if (options.deny === 'confirm') {
    await page.click('#deny');
    return finish(page, '#notice');
  }
  await page.click('#continue');

  await page.waitForSelector('#sign-in');
  await page.fill('#user', user);
  await page.click('#sign-in-button');

  await page.waitForSelector('#approve');
  const signedIn = await page.textContent('#signed-in-user');
  if (signedIn !== user) {
    throw new Error(`the approval page shows "${signedIn}" signed in, expected "${user}"`);
  }
  if (options.deny) {
    await page.click('#deny');
    return finish(page, '#notice');
  }
  await page.click('#approve');
  return finish(page, '#success');
}

async function finish(page: Page, selector: string): Promise<ApproveResult> {
  await page.waitForSelector(selector);
  return { page, finalText: (await page.textContent('main')) ?? '' };
}
