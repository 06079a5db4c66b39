import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  chooseLoginStore,
  KeychainBroker,
  probeKeychain,
  storeForProfile,
  type StorePaths,
} from '../../src/auth/token-store.js';
import { isLogproxyError, ErrorCodes } from '../../src/util/errors.js';
import {
  lastJsonLine,
  requireSecretServiceTools,
  runWithSecretService,
} from '../helpers/keyring.js';

const SCENARIOS = fileURLToPath(new URL('./fixtures/keychain-scenarios.js', import.meta.url));
const linuxOnly = process.platform !== 'linux' ? 'Secret Service tests run on Linux' : false;

test(
  'credentials round-trip through a real Secret Service, one entry per gateway and profile',
  {
    skip: linuxOnly,
  },
  async (t) => {
    if (!requireSecretServiceTools(t)) return;
    const result = await runWithSecretService(SCENARIOS, ['roundtrip']);
    assert.equal(result.code, 0, result.stderr);
    const r = lastJsonLine<{
      probe: { available: boolean };
      first: Record<'a' | 'b' | 'c', { gateway: string; profile: string; accessToken: string }>;
      afterRewrite: { a: string; b: string };
      deleted: boolean;
      afterDeleteMissing: boolean;
      deletedAgain: boolean;
      survivor: string;
      fromOtherProcess: string;
    }>(result);

    assert.deepEqual(r.probe, { available: true });
    assert.equal(r.first.a.accessToken, 'token-a1');
    assert.equal(r.first.a.gateway, 'https://logs.example.com');
    assert.equal(r.first.b.accessToken, 'token-b1', 'a second gateway has its own entry');
    assert.equal(r.first.c.accessToken, 'token-c1', 'a second profile has its own entry');
    assert.deepEqual(r.afterRewrite, { a: 'token-a2', b: 'token-b1' });
    assert.equal(r.deleted, true);
    assert.equal(r.afterDeleteMissing, true);
    assert.equal(r.deletedAgain, false);
    assert.equal(r.survivor, 'token-b1');
    assert.equal(r.fromOtherProcess, 'token-c1');
  },
);

test(
  'a hung Secret Service fails the probe and reads with a clear error instead of hanging',
  {
    skip: linuxOnly,
  },
  async (t) => {
    if (!requireSecretServiceTools(t)) return;
    const result = await runWithSecretService(SCENARIOS, ['hung']);
    assert.equal(result.code, 0, result.stderr);
    const r = lastJsonLine<{
      before: { available: boolean };
      probe: { available: boolean; reason?: string };
      readError?: { code?: string; message: string };
    }>(result);

    assert.deepEqual(r.before, { available: true }, 'the daemon worked before it was stopped');
    assert.equal(r.probe.available, false);
    assert.match(r.probe.reason ?? '', /did not answer within 500 ms/);
    assert.equal(r.readError?.code, ErrorCodes.KEYCHAIN_UNAVAILABLE);
    assert.match(r.readError?.message ?? '', /could not read from the OS keychain/);
  },
);

test(
  'a keyring that is locked with nobody to unlock it counts as no keychain',
  {
    skip: linuxOnly,
  },
  async (t) => {
    if (!requireSecretServiceTools(t)) return;
    const result = await runWithSecretService(SCENARIOS, ['locked'], { startKeyring: false });
    assert.equal(result.code, 0, result.stderr);
    const r = lastJsonLine<{ probe: { available: boolean; reason?: string } }>(result);
    assert.equal(r.probe.available, false);
    assert.match(
      r.probe.reason ?? '',
      /no usable default keyring|locked and cannot be unlocked without a desktop prompt/,
    );
  },
);

async function tempPaths(t: { after(fn: () => Promise<void>): void }): Promise<StorePaths> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'logproxy-nokeychain-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return {
    credentialsDir: path.join(dir, 'credentials'),
    configFile: path.join(dir, 'config.yaml'),
    profilesFile: path.join(dir, 'profiles.json'),
  };
}

test(
  'without a session bus the probe fails fast and login offers the file fallback',
  {
    skip: linuxOnly,
  },
  async (t) => {
    const paths = await tempPaths(t);
    const emptyRuntime = await mkdtemp(path.join(os.tmpdir(), 'logproxy-noruntime-'));
    t.after(() => rm(emptyRuntime, { recursive: true, force: true }));
    const env: NodeJS.ProcessEnv = { ...process.env, XDG_RUNTIME_DIR: emptyRuntime };
    delete env.DBUS_SESSION_BUS_ADDRESS;
    delete env.DISPLAY;
    const broker = new KeychainBroker({ env });
    t.after(() => broker.close());

    const probe = await probeKeychain({ broker });
    assert.equal(probe.available, false);
    assert.match(probe.available ? '' : probe.reason, /no D-Bus session bus/);

    await assert.rejects(chooseLoginStore(paths, undefined, { broker }), (err: unknown) => {
      assert.ok(isLogproxyError(err, ErrorCodes.KEYCHAIN_UNAVAILABLE));
      assert.match(err.message, /^no OS keychain is available \(no D-Bus session bus/);
      assert.ok(err.message.includes('--insecure-storage'));
      assert.ok(err.message.includes(paths.credentialsDir));
      assert.ok(err.message.includes(`token_store: file" in ${paths.configFile}`));
      return true;
    });

    // A profile nothing says was ever signed in reads as "not signed in", not as a D-Bus error.
    const unknown = await storeForProfile('https://logs.example.com', 'default', paths, undefined, {
      broker,
    });
    assert.equal(unknown.kind, 'keychain');
    assert.equal(await unknown.read('https://logs.example.com', 'default'), undefined);

    const store = await chooseLoginStore(paths, 'file', { broker });
    assert.equal(store.kind, 'file');
    await store.write({
      version: 1,
      gateway: 'https://logs.example.com',
      profile: 'default',
      issuer: 'https://logs.example.com/oidc',
      clientId: 'logproxy-cli',
      audience: 'https://logs.example.com',
      subject: 'alice',
      accessToken: 'at-1',
      accessTokenExpiresAt: 1_900_000_000_000,
      refreshToken: 'rt-1',
    });
    const files = await readdir(paths.credentialsDir);
    assert.equal(files.length, 1);
    const file = path.join(paths.credentialsDir, files[0]!);
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    assert.equal((await stat(paths.credentialsDir)).mode & 0o777, 0o700);
    assert.equal(JSON.parse(await readFile(file, 'utf8')).refreshToken, 'rt-1');
    assert.equal((await store.read('https://logs.example.com', 'default'))?.subject, 'alice');
  },
);
