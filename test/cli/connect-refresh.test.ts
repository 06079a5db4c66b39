/**
 * Token refresh under load: access tokens that live seconds, a client sending requests
 * back to back through the tunnel, and not one failed request while tokens rotate.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway } from '../helpers/gateway.js';
import { connectInProcess, signedIn, startUpstream, until } from './connect-helpers.js';

test('tokens are refreshed under load with no failed request', async (t) => {
  const upstream = await startUpstream();
  t.after(() => upstream.close());
  const gw = await startGateway({
    accessTokenTtlMs: 6_000,
    targets: {
      api: {
        source: { type: 'http', url: upstream.url, headers: {}, timeoutMs: 30_000 },
        session: { heartbeatIntervalMs: 1_000 },
      },
    },
  });
  t.after(() => gw.close());
  const user = await signedIn(gw.url);
  t.after(() => user.cleanup());

  const tunnel = await connectInProcess(user.env, 'api', { reauth: false });
  const statuses = new Map<string, number>();
  let running = true;
  const clients = Array.from({ length: 4 }, async () => {
    while (running) {
      const res = await fetch(`${tunnel.url}/echo/x`, {
        method: 'POST',
        body: 'payload',
      }).catch((e: Error) => ({ status: `error ${e.message}`, arrayBuffer: async () => 0 }));
      await res.arrayBuffer();
      statuses.set(String(res.status), (statuses.get(String(res.status)) ?? 0) + 1);
    }
  });
  await until(
    () => tunnel.events().filter((e) => e.event === 'refreshed').length >= 3,
    'three token refreshes',
  );
  running = false;
  await Promise.all(clients);
  assert.equal(await tunnel.stop(), 130);

  assert.deepEqual([...statuses.keys()], ['200'], JSON.stringify([...statuses]));
  assert.ok(statuses.get('200')! > 20);
  // Tokens really rotated: the gateway saw the session's token change.
  const audit = await gw.auditLines();
  const refreshed = audit.filter(
    (l) => l.event === 'session.refreshed' && l.session_id === tunnel.sessionId,
  );
  assert.ok(refreshed.length >= 2, JSON.stringify(audit.map((l) => l.event)));
});
