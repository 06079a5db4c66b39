import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { credentialsFileName, FileTokenStore } from '../../src/auth/file-store.js';
import {
  findProfileRecord,
  readProfileRecords,
  removeProfileRecord,
  upsertProfileRecord,
} from '../../src/auth/profiles.js';
import { insecureStoreWarning, storeForProfile } from '../../src/auth/token-store.js';
import type { StoredCredentials } from '../../src/auth/types.js';
import { ErrorCodes, isLogproxyError } from '../../src/util/errors.js';

async function tempDir(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'logproxy-filestore-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function creds(gateway: string, profile: string, n: number): StoredCredentials {
  return {
    version: 1,
    gateway,
    profile,
    issuer: `${gateway}/oidc`,
    clientId: 'logproxy-cli',
    audience: gateway,
    subject: 'alice',
    // Large enough that a torn write would be visible as invalid JSON.
    accessToken: `at-${n}-${'x'.repeat(64 * 1024)}`,
    accessTokenExpiresAt: 1_900_000_000_000 + n,
    refreshToken: `rt-${n}`,
  };
}

test('file names keep gateways and profiles apart', () => {
  const names = new Set([
    credentialsFileName('https://a.example/x_y', 'default'),
    credentialsFileName('https://a.example/x/y', 'default'),
    credentialsFileName('https://a.example', 'default'),
    credentialsFileName('https://a.example', 'ops'),
    credentialsFileName('http://a.example', 'default'),
  ]);
  assert.equal(names.size, 5);
  assert.match(
    credentialsFileName('https://a.example:8443', 'ops'),
    /^a\.example-8443-[0-9a-f]{8}__ops\.json$/,
  );
});

test('writes are 0600 in a 0700 folder, atomic under concurrent readers, no temp files left', async (t) => {
  const dir = path.join(await tempDir(t), 'credentials');
  const store = new FileTokenStore(dir);
  const gw = 'https://logs.example.com';
  await store.write(creds(gw, 'default', 0));

  let reads = 0;
  let writing = true;
  const reader = (async () => {
    while (writing) {
      // Throws if it ever sees a half-written file (parseStoredCredentials rejects bad JSON).
      const seen = await store.read(gw, 'default');
      assert.ok(seen && seen.refreshToken?.startsWith('rt-'));
      reads += 1;
    }
  })();
  for (let n = 1; n <= 40; n += 1) await store.write(creds(gw, 'default', n));
  writing = false;
  await reader;
  assert.ok(reads > 0);

  assert.equal((await store.read(gw, 'default'))?.refreshToken, 'rt-40');
  assert.deepEqual(await readdir(dir), [credentialsFileName(gw, 'default')]);
  assert.equal((await stat(store.pathFor(gw, 'default'))).mode & 0o777, 0o600);
  assert.equal((await stat(dir)).mode & 0o777, 0o700);

  await store.write(creds('https://other.example', 'default', 1));
  assert.equal((await store.read(gw, 'default'))?.refreshToken, 'rt-40');
  assert.equal(await store.delete(gw, 'default'), true);
  assert.equal(await store.read(gw, 'default'), undefined);
  assert.equal(await store.delete(gw, 'default'), false);
  assert.equal((await store.read('https://other.example', 'default'))?.refreshToken, 'rt-1');
  assert.match(insecureStoreWarning(store) ?? '', /unencrypted in .*credentials/);
});

test('a credentials file readable by others is refused with the fix', async (t) => {
  const dir = await tempDir(t);
  const store = new FileTokenStore(dir);
  const gw = 'https://logs.example.com';
  await store.write(creds(gw, 'default', 1));
  await chmod(store.pathFor(gw, 'default'), 0o644);
  await assert.rejects(store.read(gw, 'default'), (err: unknown) => {
    assert.ok(isLogproxyError(err, ErrorCodes.CONFIG_INVALID));
    assert.match(err.message, /readable by other users \(mode 0644\); run `chmod 600 /);
    assert.ok(!err.message.includes('rt-1'));
    return true;
  });
});

test('a damaged credentials file says to sign in again, without echoing its content', async (t) => {
  const dir = await tempDir(t);
  const store = new FileTokenStore(dir);
  const file = store.pathFor('https://logs.example.com', 'default');
  await writeFile(file, '{"version":1,"accessToken":"secret-at"', { mode: 0o600 });
  await assert.rejects(store.read('https://logs.example.com', 'default'), (err: unknown) => {
    assert.ok(isLogproxyError(err, ErrorCodes.NOT_SIGNED_IN));
    assert.match(err.message, /not valid JSON; run `logproxy login`/);
    assert.ok(!err.message.includes('secret-at'));
    return true;
  });
});

test('the profiles index survives concurrent updates and tells where credentials are', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'profiles.json');
  const locks = path.join(dir, 'state', 'locks');
  const record = (profile: string) => ({
    gateway: 'https://logs.example.com',
    profile,
    subject: 'alice',
    store: 'file' as const,
    location: path.join(dir, 'credentials'),
    issuer: 'https://logs.example.com/oidc',
    lastLoginAt: new Date(0).toISOString(),
  });
  await Promise.all(
    ['p1', 'p2', 'p3', 'p4', 'p5'].map((p) => upsertProfileRecord(file, locks, record(p))),
  );
  assert.deepEqual((await readProfileRecords(file)).map((r) => r.profile).sort(), [
    'p1',
    'p2',
    'p3',
    'p4',
    'p5',
  ]);
  assert.equal((await stat(file)).mode & 0o777, 0o600);
  assert.ok(!(await readFile(file, 'utf8')).includes('Token'));

  assert.equal(await removeProfileRecord(file, locks, 'https://logs.example.com', 'p2'), true);
  assert.equal(await removeProfileRecord(file, locks, 'https://logs.example.com', 'p2'), false);
  assert.equal(await findProfileRecord(file, 'https://logs.example.com', 'p2'), undefined);

  const paths = {
    credentialsDir: path.join(dir, 'credentials'),
    configFile: path.join(dir, 'c.yaml'),
    profilesFile: file,
  };
  assert.equal((await storeForProfile('https://logs.example.com', 'p1', paths)).kind, 'file');
  assert.equal((await storeForProfile('https://logs.example.com', 'p2', paths)).kind, 'keychain');
  assert.equal(
    (await storeForProfile('https://logs.example.com', 'p2', paths, 'file')).kind,
    'file',
  );
});
