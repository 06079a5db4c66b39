/**
 * The log stream API through the real data plane: parameter validation, the demo source,
 * keepalives, the end of a session, activity and backpressure.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  ProblemTypes,
  type LogNotice,
  type LogRecord,
  type Problem,
  type StreamRecord,
} from '../../src/protocol/api.js';
import { ManualClock } from '../../src/util/clock.js';
import {
  followLogs,
  linesOf,
  logsUrl,
  readLogs,
  startHarness,
  targetOf,
} from './log-stream-harness.js';

const recordsOnly = (records: StreamRecord[]): LogRecord[] =>
  records.filter((r): r is LogRecord => 'line' in r);
const noticesOf = (records: StreamRecord[]): LogNotice[] =>
  records.filter((r): r is LogNotice => 'notice' in r);

const demo = (ratePerSec = 100, historyLines = 1000) =>
  targetOf({ type: 'demo', ratePerSec, historyLines, seed: 7 });

test('bad parameters are 400 problems that name the parameter', async (t) => {
  const h = await startHarness(demo());
  t.after(() => h.close());
  const cases: Array<[Record<string, string>, string, RegExp]> = [
    [{ grep: 'a(b' }, 'grep', /"a\(b" is not a valid regular expression/],
    [{ grep: '(a+)+$' }, 'grep', /nests quantifiers/],
    [{ grep: 'x'.repeat(1001) }, 'grep', /longer than 1000/],
    [{ since: 'yesterday' }, 'since', /"yesterday"/],
    [{ since: '15' }, 'since', /neither a duration/],
    [{ limit: '-1' }, 'limit', /whole number/],
    [{ limit: 'ten' }, 'limit', /"ten"/],
    [{ limit: '10000001' }, 'limit', /whole number/],
    [{ follow: 'maybe' }, 'follow', /true or false/],
    [{ cursor: 'garbage' }, 'cursor', /not one this gateway issued/],
    [{ cursor: 'f2.!!!.0.0' }, 'cursor', /damaged/],
    [{ cursor: 'd1.8.5' }, 'cursor', /different seed/],
    [{ cursor: 'f2..0.0' }, 'cursor', /file source/],
    [{ limt: '5' }, 'limt', /unknown parameter "limt"/],
  ];
  for (const [params, parameter, detail] of cases) {
    const r = await readLogs(logsUrl(h, params));
    assert.equal(r.status, 400, JSON.stringify(params));
    assert.equal(r.contentType, 'application/problem+json');
    const p = JSON.parse(r.body) as Problem;
    assert.equal(p.type, ProblemTypes.invalidParameter);
    assert.equal(p.parameter, parameter);
    assert.match(p.detail ?? '', detail);
  }
});

test('an http target has no log stream', async (t) => {
  const h = await startHarness(
    targetOf({ type: 'http', url: 'http://127.0.0.1:9', headers: {}, timeoutMs: 1000 }),
  );
  t.after(() => h.close());
  const r = await readLogs(logsUrl(h));
  assert.equal(r.status, 400);
  assert.equal((JSON.parse(r.body) as Problem).type, ProblemTypes.notSupported);
});

test('demo: the same lines for the same position, across gateway restarts', async (t) => {
  const clock = new ManualClock(Date.UTC(2026, 5, 1, 12));
  const a = await startHarness(demo(50, 500), { clock });
  t.after(() => a.close());
  const first = await readLogs(logsUrl(a));
  assert.equal(first.status, 200);
  assert.equal(first.contentType, 'application/x-ndjson');
  const recs = recordsOnly(first.records);
  assert.equal(recs.length, 500, 'the source holds historyLines lines');

  const b = await startHarness(demo(50, 500), { clock }); // "restarted" gateway
  t.after(() => b.close());
  const again = recordsOnly((await readLogs(logsUrl(b))).records);
  assert.deepEqual(again, recs);

  // timestamps follow the schedule: 50 lines a second, the newest not after now
  const last = Date.parse(recs.at(-1)!.ts);
  assert.ok(last <= clock.now() && last > clock.now() - 1000);
  assert.equal(Date.parse(recs[50]!.ts) - Date.parse(recs[0]!.ts), 1000);

  // a realistic mix: mostly info, some debug and warn, JSON and plain text
  const levels = new Map<string, number>();
  for (const r of recs) if (r.level) levels.set(r.level, (levels.get(r.level) ?? 0) + 1);
  const json = recs.filter((r) => r.fields).length;
  assert.ok(json > 100 && json < 400, `json lines: ${json}`);
  assert.ok((levels.get('info') ?? 0) > (levels.get('warn') ?? 0));
  assert.ok((levels.get('debug') ?? 0) > 0 && (levels.get('warn') ?? 0) > 0);
  assert.ok(recs.some((r) => !r.fields && /^\S+Z (INFO|WARN|DEBUG|ERROR)/.test(r.line)));

  // resume exactly after any record
  for (const i of [0, 1, 77, 498]) {
    const rest = recordsOnly((await readLogs(logsUrl(b, { cursor: recs[i]!.cursor }))).records);
    assert.deepEqual(rest, recs.slice(i + 1));
  }
});

test('demo: limit and since, and data_lost when the cursor is older than the history', async (t) => {
  const clock = new ManualClock(Date.UTC(2026, 5, 1, 12));
  const h = await startHarness(demo(10, 100), { clock });
  t.after(() => h.close());
  const all = recordsOnly((await readLogs(logsUrl(h))).records);
  assert.deepEqual(
    recordsOnly((await readLogs(logsUrl(h, { limit: '3' }))).records),
    all.slice(-3),
  );
  const since = recordsOnly((await readLogs(logsUrl(h, { since: '2s' }))).records);
  assert.ok(since.length >= 20 && since.length <= 21, `since 2s gave ${since.length}`);
  assert.deepEqual(since, all.slice(-since.length));
  const errors = recordsOnly((await readLogs(logsUrl(h, { grep: 'WARN|warn' }))).records);
  assert.ok(errors.length > 0 && errors.every((r) => /warn/i.test(r.line)));

  const cursor = all[9]!.cursor;
  clock.advance(5000); // 50 more lines: the first 50 of the old history are gone
  const after = (await readLogs(logsUrl(h, { cursor }))).records;
  const lost = noticesOf(after);
  assert.equal(lost.length, 1);
  assert.equal(lost[0]!.notice, 'data_lost');
  assert.equal(lost[0]!.lost_lines, 40);
  const lines = recordsOnly(after);
  assert.equal(lines.length, 100);
  assert.deepEqual(lines.slice(0, 50), all.slice(50));
});

test('following demo: new lines as their time comes, keepalives carry the cursor', async (t) => {
  const h = await startHarness(demo(40, 5), { keepaliveMs: 50 });
  t.after(() => h.close());
  const f = followLogs(logsUrl(h, { follow: 'true', grep: 'no line contains this' }));
  t.after(() => f.close());
  await f.waitFor((r) => noticesOf(r).length >= 2, 'two keepalives');
  const ka = noticesOf(f.records)[1]!;
  assert.equal(ka.notice, 'keepalive');
  assert.match(ka.cursor ?? '', /^d1\.7\.\d+$/);
  f.close();

  const g = followLogs(logsUrl(h, { follow: 'true', limit: '0' }));
  t.after(() => g.close());
  await g.waitFor((r) => linesOf(r).length >= 10, 'ten new lines');
  const recs = recordsOnly(g.records);
  assert.ok(Date.parse(recs[0]!.ts) >= Date.now() - 2000);
});

test("keepalives are not activity: only log lines keep a follower's session alive", async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'lp-quiet-'));
  const h = await startHarness(targetOf({ type: 'file', paths: [path.join(dir, '*.log')] }), {
    keepaliveMs: 50,
  });
  t.after(async () => {
    await h.close();
    await rm(dir, { recursive: true, force: true });
  });
  await writeFile(path.join(dir, 'app.log'), '');
  const f = followLogs(logsUrl(h, { follow: 'true' }));
  t.after(() => f.close());
  // Well past the once-a-second activity throttle, with a keepalive every 50 ms.
  await f.waitFor((r) => noticesOf(r).length >= 30, 'thirty keepalives');
  assert.equal(h.activity(), 1, 'only the start of the request counted');

  await writeFile(path.join(dir, 'app.log'), 'hello\n');
  await f.waitFor((r) => linesOf(r).length === 1, 'the new line');
  assert.equal(h.activity(), 2, 'a line read is activity');
});

test('when the session ends a follower gets session_ended and can resume exactly', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'lp-end-'));
  const h = await startHarness(targetOf({ type: 'file', paths: [path.join(dir, '*.log')] }));
  t.after(async () => {
    await h.close();
    await rm(dir, { recursive: true, force: true });
  });
  await writeFile(path.join(dir, 'app.log'), 'one\ntwo\n');
  const f = followLogs(logsUrl(h, { follow: 'true' }));
  await f.waitFor((r) => linesOf(r).length === 2, 'two lines');
  assert.ok(h.activity() >= 1, 'starting to read logs is activity');

  h.end('idle_timeout');
  await f.ended;
  const last = f.records.at(-1) as LogNotice;
  assert.equal(last.notice, 'session_ended');
  assert.equal(last.reason, 'idle_timeout');

  await writeFile(path.join(dir, 'app.log'), 'one\ntwo\nthree\n');
  h.renew();
  const rest = await readLogs(logsUrl(h, { cursor: last.cursor! }));
  assert.deepEqual(linesOf(rest.records), ['three']);
});

test('a reader that stops reading holds the stream back instead of gateway memory', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'lp-bp-'));
  const h = await startHarness(targetOf({ type: 'file', paths: [path.join(dir, '*.log')] }));
  t.after(async () => {
    await h.close();
    await rm(dir, { recursive: true, force: true });
  });
  const line = `${'x'.repeat(90)}\n`;
  const lines = 1_500_000; // ~136 MB of file, ~230 MB of NDJSON
  await writeFile(path.join(dir, 'big.log'), line.repeat(lines));
  global.gc?.();
  const before = process.memoryUsage();

  let received = 0;
  const req = http.get(logsUrl(h), (res) => {
    res.once('data', (chunk: Buffer) => {
      received += chunk.length;
      res.pause(); // stop reading entirely
    });
  });
  t.after(() => req.destroy());
  await new Promise((resolve) => setTimeout(resolve, 1500));
  const after = process.memoryUsage();
  const grownMb = (after.rss - before.rss) / 1e6;
  const heapMb = (after.heapUsed + after.external - before.heapUsed - before.external) / 1e6;
  t.diagnostic(
    `received ${received} bytes; rss +${grownMb.toFixed(1)} MB, heap+ext +${heapMb.toFixed(1)} MB`,
  );
  assert.ok(received > 0);
  // Unbounded buffering would hold the whole ~230 MB stream; backpressure keeps it to buffers.
  assert.ok(heapMb < 80, `heap+external grew by ${heapMb.toFixed(1)} MB`);
});
