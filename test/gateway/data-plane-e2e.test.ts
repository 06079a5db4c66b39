/**
 * The data plane through the real gateway with real tokens from the embedded provider:
 * a followed file stream that ends with its session and resumes in a new one, and a
 * forwarded response cut when the session reaches its lifetime.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { appendFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { LogNotice, LogRecord, SessionState, StreamRecord } from '../../src/protocol/api.js';
import { ManualClock } from '../../src/util/clock.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';

async function createSession(gw: TestGateway, token: string, target: string) {
  const res = await fetch(`${gw.url}/v1/sessions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ target }),
  });
  assert.ok(res.ok, `create session: ${res.status} ${await res.clone().text()}`);
  return (await res.json()) as SessionState;
}

/** Follows a logs URL with a token; collects records until the server ends the stream. */
function follow(url: string, token: string) {
  const records: StreamRecord[] = [];
  const waiters: Array<() => void> = [];
  let req!: http.ClientRequest;
  const ended = new Promise<number>((resolve, reject) => {
    req = http.get(url, { headers: { authorization: `Bearer ${token}` } }, (res) => {
      let carry = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        const parts = (carry + chunk).split('\n');
        carry = parts.pop()!;
        for (const p of parts) records.push(JSON.parse(p) as StreamRecord);
        for (const w of [...waiters]) w();
      });
      res.on('end', () => resolve(res.statusCode!));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
  const waitFor = (pred: () => boolean, what: string) =>
    new Promise<void>((resolve, reject) => {
      if (pred()) return resolve();
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), 20_000);
      waiters.push(() => {
        if (!pred()) return;
        clearTimeout(timer);
        resolve();
      });
    });
  return { records, ended, waitFor, close: () => req.destroy() };
}

const lines = (records: StreamRecord[]) =>
  records.filter((r): r is LogRecord => 'line' in r).map((r) => r.line);

test('logs: follow a file, session ends, a new session resumes from the cursor', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'lp-e2e-'));
  const gw = await startGateway({
    targets: { app: { source: { type: 'file', paths: [path.join(dir, '*.log')] } } },
  });
  t.after(async () => {
    await gw.close();
    await rm(dir, { recursive: true, force: true });
  });
  await writeFile(path.join(dir, 'app.log'), 'line 1\n{"level":"warn","msg":"line 2"}\n');
  const token = await gw.tokenFor();

  const s1 = await createSession(gw, token, 'app');
  const f = follow(`${gw.url}/v1/sessions/${s1.id}/logs?follow=true`, token);
  t.after(() => f.close());
  await f.waitFor(() => lines(f.records).length === 2, 'the history');
  await appendFile(path.join(dir, 'app.log'), 'line 3\n');
  await f.waitFor(() => lines(f.records).length === 3, 'the appended line');
  const warn = f.records[1] as LogRecord;
  assert.equal(warn.level, 'warn');

  const del = await fetch(`${gw.url}/v1/sessions/${s1.id}`, {
    method: 'DELETE',
    headers: { authorization: `Bearer ${token}` },
  });
  assert.equal(del.status, 200);
  await f.ended;
  const last = f.records.at(-1) as LogNotice;
  assert.equal(last.notice, 'session_ended');
  assert.equal(last.reason, 'ended');

  await appendFile(path.join(dir, 'app.log'), 'line 4\n');
  const s2 = await createSession(gw, token, 'app');
  const cursor = encodeURIComponent(last.cursor!);
  const res = await fetch(`${gw.url}/v1/sessions/${s2.id}/logs?cursor=${cursor}`, {
    headers: { authorization: `Bearer ${token}` },
  });
  assert.equal(res.headers.get('content-type'), 'application/x-ndjson');
  const rest = (await res.text())
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as StreamRecord);
  assert.deepEqual(lines(rest), ['line 4']);

  const noToken = await fetch(`${gw.url}/v1/sessions/${s2.id}/logs`);
  assert.equal(noToken.status, 401);
});

test('forward: the body is cut when the session reaches its lifetime', async (t) => {
  const seenAuth: Array<string | undefined> = [];
  const up = http.createServer((req, res) => {
    seenAuth.push(req.headers.authorization);
    res.writeHead(200, { 'content-type': 'text/plain' });
    const timer = setInterval(() => res.write('streaming...\n'), 10);
    res.on('close', () => clearInterval(timer));
  });
  await new Promise<void>((resolve) => up.listen(0, '127.0.0.1', resolve));
  t.after(async () => {
    up.closeAllConnections();
    await new Promise((resolve) => up.close(resolve));
  });
  const upUrl = `http://127.0.0.1:${(up.address() as AddressInfo).port}`;

  const clock = new ManualClock(Date.now());
  const gw = await startGateway({
    clock,
    targets: {
      loki: {
        source: { type: 'http', url: upUrl, headers: {}, timeoutMs: 5000 },
        session: { maxLifetimeMs: 60_000 },
        activity: 'bytes',
      },
    },
  });
  t.after(() => gw.close());
  const token = await gw.tokenFor();
  const s = await createSession(gw, token, 'loki');

  const how = await new Promise<string>((resolve) => {
    const req = http.get(
      `${gw.url}/v1/sessions/${s.id}/forward/loki/api/v1/tail`,
      { headers: { authorization: `Bearer ${token}` } },
      (res) => {
        let bytes = 0;
        res.on('data', (c: Buffer) => {
          bytes += c.length;
          if (bytes > 100) clock.advance(61_000); // past the lifetime, whatever the traffic
        });
        res.on('end', () => resolve('ended cleanly'));
        res.on('aborted', () => resolve('cut'));
        res.on('error', () => resolve('cut'));
      },
    );
    req.on('error', () => resolve('cut'));
  });
  assert.equal(how, 'cut');
  assert.deepEqual(seenAuth, [undefined], 'the user token never reached the upstream');

  const state = await fetch(`${gw.url}/v1/sessions/${s.id}`, {
    headers: { authorization: `Bearer ${token}` },
  });
  assert.equal(((await state.json()) as SessionState).end_reason, 'max_lifetime');
});
