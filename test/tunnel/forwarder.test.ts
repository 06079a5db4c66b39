/**
 * The forwarder with the real gateway and the real auth pieces, while the keeper switches
 * sessions: requests wait for the new session, get 503 with Retry-After when the wait runs
 * out, and flow again on the new session.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { configPaths } from '../../src/cli/config.js';
import { createHttpClient } from '../../src/auth/http.js';
import { createGatewayApi } from '../../src/auth/gateway-api.js';
import { createTokenManager } from '../../src/auth/refresh.js';
import { signIn } from '../../src/auth/sign-in.js';
import { storeForProfile } from '../../src/auth/token-store.js';
import { systemClock } from '../../src/util/clock.js';
import { SessionKeeper } from '../../src/tunnel/session-keeper.js';
import { createForwarder } from '../../src/tunnel/forwarder.js';
import { listen } from '../../src/tunnel/listener.js';
import { startGateway } from '../helpers/gateway.js';
import { signedIn, startUpstream, until } from '../cli/connect-helpers.js';

test('during a re-auth requests wait, then get 503 + Retry-After, then flow again', async (t) => {
  const upstream = await startUpstream();
  t.after(() => upstream.close());
  const gw = await startGateway({
    targets: {
      api: {
        source: { type: 'http', url: upstream.url, headers: {}, timeoutMs: 30_000 },
        session: { maxLifetimeMs: 3_000, heartbeatIntervalMs: 1_000, warnBeforeMs: [] },
      },
    },
  });
  t.after(() => gw.close());
  const user = await signedIn(gw.url);
  t.after(() => user.cleanup());

  const paths = configPaths(user.env);
  const client = createHttpClient({ env: user.env });
  t.after(() => client.close());
  const store = await storeForProfile(gw.url, 'default', paths, 'file');
  const tokens = createTokenManager({
    gateway: gw.url,
    profile: 'default',
    store,
    locksDir: paths.locksDir,
    fetch: client,
    allowInsecure: true,
  });
  const api = createGatewayApi({ baseUrl: gw.url, tokens, fetch: client });

  // The "person" signs in only when the test says so.
  let approve!: () => void;
  const approved = new Promise<void>((r) => (approve = r));
  const keeper = new SessionKeeper({
    api,
    tokens,
    target: 'api',
    clock: systemClock,
    reauth: async (signal) => {
      await approved;
      await signIn({
        gateway: gw.url,
        profile: 'default',
        paths,
        store,
        fetch: client,
        signal,
        callbacks: { onCode: () => undefined },
      });
    },
  });
  const forwarder = createForwarder({ gateway: gw.url, keeper, holdMs: 300 });
  const listener = await listen(
    { address: '127.0.0.1', clock: systemClock },
    forwarder.handleRequest,
    forwarder.handleUpgrade,
  );
  t.after(async () => {
    keeper.stop();
    await listener.close(0);
    await keeper.release();
    await forwarder.close();
  });
  const events: string[] = [];
  keeper.on((e) => events.push(e.type));
  const first = await keeper.start();

  const ok = await fetch(`${listener.url}/echo/a`);
  assert.equal(ok.status, 200);
  await ok.arrayBuffer();

  await until(() => events.includes('reauthenticating'), 'the session to need a sign-in');
  const held = await fetch(`${listener.url}/echo/b`);
  assert.equal(held.status, 503);
  assert.equal(held.headers.get('retry-after'), '5');
  assert.equal(held.headers.get('access-control-allow-origin'), null);
  assert.match(await held.text(), /waiting for a new session/);

  const waiting = fetch(`${listener.url}/echo/c`);
  approve();
  // This one may be answered 503 if the sign-in outlasts the short hold; retry as told.
  let after = await waiting;
  if (after.status === 503) {
    await after.arrayBuffer();
    await until(() => events.includes('resumed'), 'the new session');
    after = await fetch(`${listener.url}/echo/c`);
  }
  assert.equal(after.status, 200);
  assert.equal(JSON.parse(await after.text()).url, '/echo/c');
  assert.notEqual(keeper.current()?.id, first.id);
});
