import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  configPaths,
  normalizeGatewayUrl,
  requireGateway,
  resolveClientSettings,
  validateProfileName,
} from '../../src/cli/config.js';
import { upsertProfileRecord } from '../../src/auth/profiles.js';
import { ErrorCodes, isLogproxyError } from '../../src/util/errors.js';

async function tempDir(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'logproxy-config-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test('paths follow XDG, and LOGPROXY_CONFIG_DIR moves config and state together', () => {
  const xdg = configPaths({ XDG_CONFIG_HOME: '/x/cfg', XDG_STATE_HOME: '/x/state' }, '/home/a');
  assert.equal(xdg.configDir, '/x/cfg/logproxy');
  assert.equal(xdg.stateDir, '/x/state/logproxy');
  assert.equal(xdg.configFile, '/x/cfg/logproxy/config.yaml');
  assert.equal(xdg.locksDir, '/x/state/logproxy/locks');

  const home = configPaths({ XDG_CONFIG_HOME: 'relative/ignored' }, '/home/a');
  assert.equal(home.configDir, '/home/a/.config/logproxy');
  assert.equal(home.stateDir, '/home/a/.local/state/logproxy');
  assert.equal(home.credentialsDir, '/home/a/.config/logproxy/credentials');

  const moved = configPaths({ LOGPROXY_CONFIG_DIR: '/tmp/lp', XDG_STATE_HOME: '/x' }, '/home/a');
  assert.equal(moved.configDir, '/tmp/lp');
  assert.equal(moved.stateDir, '/tmp/lp/state');
  assert.equal(moved.profilesFile, '/tmp/lp/profiles.json');
});

test('gateway URLs are normalised and bad ones get an error that names the fix', () => {
  assert.equal(normalizeGatewayUrl('https://LOGS.example.com/'), 'https://logs.example.com');
  assert.equal(normalizeGatewayUrl(' https://logs.example.com:443 '), 'https://logs.example.com');
  assert.equal(normalizeGatewayUrl('http://127.0.0.1:8080/gw//'), 'http://127.0.0.1:8080/gw');

  const cases: Array<[string, RegExp]> = [
    ['logs.example.com', /no scheme; did you mean https:\/\/logs\.example\.com/],
    ['ftp://logs.example.com', /must start with https:\/\//],
    ['https://u:p@logs.example.com', /must not contain credentials/],
    ['https://logs.example.com/?x=1', /must not have a query/],
    ['', /empty/],
  ];
  for (const [input, message] of cases) {
    assert.throws(
      () => normalizeGatewayUrl(input, '--gateway'),
      (err: unknown) =>
        isLogproxyError(err, ErrorCodes.USAGE) &&
        err.message.startsWith('--gateway: ') &&
        message.test(err.message),
      input,
    );
  }
});

test('profile names are restricted to what is safe in file names and keychain accounts', () => {
  assert.equal(validateProfileName('prod-eu_1.a'), 'prod-eu_1.a');
  for (const bad of ['', '../x', 'a b', '-x', 'x'.repeat(65)]) {
    assert.throws(() => validateProfileName(bad, '--profile'), /not a valid profile name/, bad);
  }
});

test('flag beats env beats config file beats default', async (t) => {
  const dir = await tempDir(t);
  await writeFile(
    path.join(dir, 'config.yaml'),
    'gateway: https://from-config.example/\nprofile: cfg\ntoken_store: file\n',
  );
  const env = { LOGPROXY_CONFIG_DIR: dir };

  const fromConfig = await resolveClientSettings({}, env);
  assert.equal(fromConfig.gateway, 'https://from-config.example');
  assert.equal(fromConfig.gatewaySource, 'config');
  assert.equal(fromConfig.profile, 'cfg');
  assert.equal(fromConfig.tokenStore, 'file');

  const fromEnv = await resolveClientSettings(
    {},
    { ...env, LOGPROXY_GATEWAY: 'https://from-env.example', LOGPROXY_PROFILE: 'envp' },
  );
  assert.equal(fromEnv.gateway, 'https://from-env.example');
  assert.equal(fromEnv.gatewaySource, 'env');
  assert.equal(fromEnv.profile, 'envp');

  const fromFlags = await resolveClientSettings(
    { gateway: 'https://from-flag.example', profile: 'flagp', insecureStorage: true },
    { ...env, LOGPROXY_GATEWAY: 'https://from-env.example', LOGPROXY_TOKEN_STORE: 'keychain' },
  );
  assert.equal(fromFlags.gateway, 'https://from-flag.example');
  assert.equal(fromFlags.profile, 'flagp');
  assert.equal(fromFlags.tokenStore, 'file');
  assert.equal(fromFlags.tokenStoreSource, 'flag');

  const empty = await tempDir(t);
  const defaults = await resolveClientSettings({}, { LOGPROXY_CONFIG_DIR: empty });
  assert.equal(defaults.profile, 'default');
  assert.equal(defaults.profileSource, 'default');
  assert.equal(defaults.gateway, undefined);
  assert.equal(defaults.tokenStore, undefined);
  await assert.rejects(requireGateway(defaults), (err: unknown) => {
    assert.ok(isLogproxyError(err, ErrorCodes.USAGE));
    assert.match(err.message, /pass --gateway URL, set LOGPROXY_GATEWAY/);
    assert.ok(err.message.includes(path.join(empty, 'config.yaml')));
    return true;
  });
});

test('a bad config file is an error naming the key and the file', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'config.yaml');
  const env = { LOGPROXY_CONFIG_DIR: dir };
  const cases: Array<[string, RegExp]> = [
    ['gatway: https://x.example\n', /unknown key "gatway"/],
    ['gateway: logs.example.com\n', /"gateway" in .*no scheme/],
    ['token_store: vault\n', /token_store: vault; use "keychain" or "file"/],
    ['profile: 12\n', /profile: 12; it must be a string/],
    ['- a\n- b\n', /must be a mapping/],
    ['gateway: [unclosed\n', /not valid YAML/],
  ];
  for (const [text, message] of cases) {
    await writeFile(file, text);
    await assert.rejects(
      resolveClientSettings({}, env),
      (err: unknown) =>
        isLogproxyError(err, ErrorCodes.CONFIG_INVALID) &&
        err.message.includes(file) &&
        message.test(err.message),
      text,
    );
  }
});

test('without a named gateway, the one gateway this profile signed in to is used', async (t) => {
  const dir = await tempDir(t);
  const paths = configPaths({ LOGPROXY_CONFIG_DIR: dir });
  const record = {
    gateway: 'https://one.example',
    profile: 'default',
    subject: 'alice',
    store: 'file' as const,
    location: paths.credentialsDir,
    issuer: 'https://one.example/oidc',
    lastLoginAt: new Date(0).toISOString(),
  };
  await upsertProfileRecord(paths.profilesFile, paths.locksDir, record);
  const one = await resolveClientSettings({}, { LOGPROXY_CONFIG_DIR: dir });
  assert.equal(one.gateway, 'https://one.example');
  assert.equal(one.gatewaySource, 'profiles');

  await upsertProfileRecord(paths.profilesFile, paths.locksDir, {
    ...record,
    gateway: 'https://two.example',
  });
  const two = await resolveClientSettings({}, { LOGPROXY_CONFIG_DIR: dir });
  assert.equal(two.gateway, undefined);
  await assert.rejects(requireGateway(two), /signed in to https:\/\/one\.example, https:\/\/two/);
});
