/**
 * The file source through the real data plane and real files: history, resume from every
 * cursor, following appends, rotation by rename and by truncation, new files, lost data.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  appendFile,
  mkdtemp,
  rename,
  rm,
  truncate,
  unlink,
  utimes,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { LogNotice, LogRecord, StreamRecord } from '../../src/protocol/api.js';
import {
  followLogs,
  linesOf,
  logsUrl,
  readLogs,
  startHarness,
  targetOf,
  type Harness,
} from './log-stream-harness.js';

async function setup(t: { after(fn: () => Promise<void>): void }, globs: string[] = ['*.log']) {
  const dir = await mkdtemp(path.join(tmpdir(), 'lp-file-'));
  const h = await startHarness(
    targetOf({ type: 'file', paths: globs.map((g) => path.join(dir, g)) }),
  );
  t.after(async () => {
    await h.close();
    await rm(dir, { recursive: true, force: true });
  });
  return { dir, h };
}

const recordsOnly = (records: StreamRecord[]): LogRecord[] =>
  records.filter((r): r is LogRecord => 'line' in r);
const notices = (records: StreamRecord[]): LogNotice[] =>
  records.filter((r): r is LogNotice => 'notice' in r);

/** Lines that exercise escaping and byte offsets: quotes, backslashes, tabs, multi-byte. */
function sampleLine(i: number): string {
  const kinds = [
    () => `plain line ${i}`,
    () => JSON.stringify({ level: i % 7 === 0 ? 'ERROR' : 'info', msg: `json ${i}`, n: i }),
    () => `quote "${i}" and back\\slash\tand tab`,
    () => `unicode ${i}: grüße, 日本語, emoji 🚀`,
    () => `${'x'.repeat(i % 300)} long ${i}`,
    () => JSON.stringify({ lvl: 50, msg: `pino ${i}` }),
  ];
  return kinds[i % kinds.length]!();
}

async function history(h: Harness, params: Record<string, string> = {}) {
  const result = await readLogs(logsUrl(h, params));
  assert.equal(result.status, 200, result.body);
  return result.records;
}

test('history: files oldest first, every line once, a partial last line held back', async (t) => {
  const { dir, h } = await setup(t);
  const older = path.join(dir, 'a-older.log');
  const newer = path.join(dir, 'b-newer.log');
  await writeFile(newer, 'new 1\nnew 2\npartial without newline');
  await writeFile(older, 'old 1\r\nold 2\n');
  // b is written first but made newer: ordering is by modification time, not by name
  await utimes(older, new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));

  const records = await history(h);
  assert.deepEqual(linesOf(records), ['old 1', 'old 2', 'new 1', 'new 2']);
  const recs = recordsOnly(records);
  assert.equal(recs[0]!.source, older);
  assert.equal(recs[2]!.source, newer);
  assert.ok(recs.every((r) => !Number.isNaN(Date.parse(r.ts))));
});

test('json lines carry level and fields; plain lines do not', async (t) => {
  const { dir, h } = await setup(t);
  await writeFile(
    path.join(dir, 'app.log'),
    [
      '{"level":"WARN","msg":"disk"}',
      '{"lvl":30,"msg":"pino"}',
      '{"severity":"Error"}',
      '{not json',
      '[1,2]',
      'plain',
    ].join('\n') + '\n',
  );
  const recs = recordsOnly(await history(h));
  assert.deepEqual(
    recs.map((r) => [r.level, r.fields]),
    [
      ['warn', { level: 'WARN', msg: 'disk' }],
      ['info', { lvl: 30, msg: 'pino' }],
      ['error', { severity: 'Error' }],
      [undefined, undefined],
      [undefined, undefined],
      [undefined, undefined],
    ],
  );
});

test('resuming from every cursor gives exactly the rest, across two files', async (t) => {
  const { dir, h } = await setup(t);
  const first = Array.from({ length: 60 }, (_, i) => sampleLine(i));
  const second = Array.from({ length: 60 }, (_, i) => sampleLine(i + 1000));
  await writeFile(path.join(dir, 'one.log'), first.join('\n') + '\n');
  await utimes(path.join(dir, 'one.log'), new Date(0), new Date(Date.now() - 10_000));
  await writeFile(path.join(dir, 'two.log'), second.join('\n') + '\n');
  const all = [...first, ...second];

  const records = recordsOnly(await history(h));
  assert.deepEqual(
    records.map((r) => r.line),
    all,
  );
  for (let i = 0; i < records.length; i++) {
    const rest = linesOf(await history(h, { cursor: records[i]!.cursor }));
    assert.deepEqual(rest, all.slice(i + 1), `resume after line ${i}`);
  }
});

test('limit, since and grep choose where to start and what to show', async (t) => {
  const { dir, h } = await setup(t);
  const now = Date.now();
  const iso = (ms: number): string => new Date(ms).toISOString();
  const lines = [
    `${iso(now - 3_600_000)} INFO an hour ago`,
    `  at stack frame of the old line`,
    `${iso(now - 1_800_000)} ERROR half an hour ago`,
    `${iso(now - 60_000)} INFO a minute ago`,
    `  at stack frame of the new line`,
    `${iso(now - 30_000)} ERROR half a minute ago`,
  ];
  await writeFile(path.join(dir, 'app.log'), lines.join('\n') + '\n');

  assert.deepEqual(linesOf(await history(h, { limit: '2' })), lines.slice(4));
  assert.deepEqual(linesOf(await history(h, { limit: '0' })), []);
  assert.deepEqual(linesOf(await history(h, { limit: '100' })), lines);
  assert.deepEqual(linesOf(await history(h, { since: '10m' })), lines.slice(3));
  assert.deepEqual(linesOf(await history(h, { since: iso(now - 2_000_000) })), lines.slice(2));
  assert.deepEqual(linesOf(await history(h, { grep: 'ERROR' })), [lines[2], lines[5]]);
  assert.deepEqual(linesOf(await history(h, { grep: '(?i)error', limit: '1' })), [lines[5]]);
  assert.deepEqual(linesOf(await history(h, { grep: 'stack', since: '10m' })), [lines[4]]);
});

test('following: appends arrive, a partial line waits for its newline', async (t) => {
  const { dir, h } = await setup(t);
  const file = path.join(dir, 'app.log');
  await writeFile(file, 'first\n');
  const f = followLogs(logsUrl(h, { follow: 'true' }));
  t.after(() => f.close());
  await f.waitFor((r) => linesOf(r).length === 1, 'the first line');

  await appendFile(file, 'second\nthird is hal');
  await f.waitFor((r) => linesOf(r).length === 2, 'the second line');
  await appendFile(file, 'f done\n');
  await f.waitFor((r) => linesOf(r).length === 3, 'the completed third line');
  assert.deepEqual(linesOf(f.records), ['first', 'second', 'third is half done']);
});

test('following: a new file matching the glob is read from its start', async (t) => {
  const { dir, h } = await setup(t);
  await writeFile(path.join(dir, 'a.log'), 'a1\n');
  await writeFile(path.join(dir, 'ignored.txt'), 'not a log\n');
  const f = followLogs(logsUrl(h, { follow: 'true' }));
  t.after(() => f.close());
  await f.waitFor((r) => linesOf(r).length === 1, 'a1');
  await writeFile(path.join(dir, 'b.log'), 'b1\nb2\n');
  await f.waitFor((r) => linesOf(r).length === 3, 'the new file');
  assert.deepEqual(linesOf(f.records), ['a1', 'b1', 'b2']);
  await appendFile(path.join(dir, 'ignored.txt'), 'still not\n');
  await appendFile(path.join(dir, 'a.log'), 'a2\n');
  await f.waitFor((r) => linesOf(r).length === 4, 'a2');
  assert.deepEqual(linesOf(f.records), ['a1', 'b1', 'b2', 'a2']);
});

test('rotation by rename: the old file is read to its end, the new one from 0', async (t) => {
  const { dir, h } = await setup(t);
  const file = path.join(dir, 'app.log');
  await writeFile(file, 'before 1\nbefore 2\n');
  const f = followLogs(logsUrl(h, { follow: 'true' }));
  t.after(() => f.close());
  await f.waitFor((r) => linesOf(r).length === 2, 'the first lines');

  // logrotate's default: rename, then the writer (still holding the old file) writes a bit
  // more, then reopens the path and starts a new file.
  await rename(file, path.join(dir, 'app.log.1'));
  await appendFile(path.join(dir, 'app.log.1'), 'late 1\nlate partial');
  await writeFile(file, 'after 1\nafter 2\n');
  await f.waitFor((r) => linesOf(r).length === 6, 'every line');

  const got = linesOf(f.records);
  assert.deepEqual(got.slice(0, 2), ['before 1', 'before 2']);
  assert.deepEqual(
    [...got].sort(),
    ['after 1', 'after 2', 'before 1', 'before 2', 'late 1', 'late partial'].sort(),
  );
  assert.ok(got.indexOf('late 1') < got.indexOf('late partial'));
  const late = recordsOnly(f.records).find((r) => r.line === 'late partial')!;
  assert.equal(late.source, path.join(dir, 'app.log.1'), 'named by where it was rotated to');
  assert.ok(got.indexOf('after 1') < got.indexOf('after 2'));
});

test('rotation by truncation: the file is read again from its start', async (t) => {
  const { dir, h } = await setup(t);
  const file = path.join(dir, 'app.log');
  await writeFile(file, 'one\ntwo\nthree\n');
  const f = followLogs(logsUrl(h, { follow: 'true' }));
  t.after(() => f.close());
  await f.waitFor((r) => linesOf(r).length === 3, 'the first lines');

  await truncate(file, 0); // copytruncate; what follows is shorter than what was there
  await appendFile(file, 'fresh\n');
  await f.waitFor((r) => linesOf(r).includes('fresh'), 'the line after truncation');
  assert.deepEqual(linesOf(f.records), ['one', 'two', 'three', 'fresh']);
  assert.deepEqual(notices(f.records), [], 'nothing unread was lost');
});

test('following: a truncation that loses an unfinished line says how much', async (t) => {
  const { dir, h } = await setup(t);
  const file = path.join(dir, 'app.log');
  await writeFile(file, 'complete\nunfinished');
  const f = followLogs(logsUrl(h, { follow: 'true' }));
  t.after(() => f.close());
  await f.waitFor((r) => linesOf(r).length === 1, 'the complete line');

  await truncate(file, 0);
  await appendFile(file, 'new\n');
  await f.waitFor((r) => linesOf(r).includes('new'), 'the line after truncation');
  const lost = notices(f.records);
  assert.equal(lost.length, 1);
  assert.equal(lost[0]!.notice, 'data_lost');
  assert.equal(lost[0]!.lost_bytes, 'unfinished'.length);
  assert.deepEqual(linesOf(f.records), ['complete', 'new']);
});

test('a cursor into a file truncated since then reports data_lost and reads from 0', async (t) => {
  const { dir, h } = await setup(t);
  const file = path.join(dir, 'app.log');
  await writeFile(file, 'aaaaaaaaaa 1\naaaaaaaaaa 2\naaaaaaaaaa 3\n');
  const records = recordsOnly(await history(h));
  const cursor = records[1]!.cursor;

  await writeFile(file, 'new\n'); // truncated and rewritten, shorter than the cursor's offset
  const after = await history(h, { cursor });
  const lost = notices(after);
  assert.equal(lost.length, 1);
  assert.equal(lost[0]!.notice, 'data_lost');
  assert.equal(lost[0]!.source, file);
  assert.ok(lost[0]!.cursor);
  assert.deepEqual(linesOf(after), ['new']);
});

test('a cursor whose file is gone reports data_lost, then the files there are now', async (t) => {
  const { dir, h } = await setup(t);
  await writeFile(path.join(dir, 'app.log'), 'x1\nx2\nx3\n');
  const cursor = recordsOnly(await history(h))[0]!.cursor;

  await unlink(path.join(dir, 'app.log'));
  await writeFile(path.join(dir, 'other.log'), 'o1\n');
  const after = await history(h, { cursor });
  assert.equal(after[0] && 'notice' in after[0] && after[0].notice, 'data_lost');
  // tmpfs may give the new file the deleted one's inode: the fingerprint tells them apart
  assert.match((after[0] as LogNotice).detail ?? '', /app\.log (is gone|was replaced)/);
  assert.deepEqual(linesOf(after), ['o1']);

  // Resuming from the notice's own cursor does not report the loss again.
  const again = await history(h, { cursor: (after[0] as LogNotice).cursor! });
  assert.deepEqual(notices(again), []);
  assert.deepEqual(linesOf(again), ['o1']);
});

test('a cursor finds its file renamed out of the glob (by inode) and finishes it', async (t) => {
  const { dir, h } = await setup(t);
  const file = path.join(dir, 'app.log');
  await writeFile(file, 'r1\nr2\nr3\n');
  const cursor = recordsOnly(await history(h))[0]!.cursor;

  await rename(file, path.join(dir, 'app.log.1'));
  await writeFile(file, 'n1\n');
  const after = await history(h, { cursor });
  assert.deepEqual(notices(after), []);
  assert.deepEqual(linesOf(after), ['r2', 'r3', 'n1']);
});

test('a reader that hangs up mid-stream resumes with no gap and no repeat', async (t) => {
  const { dir, h } = await setup(t);
  const count = 40_000;
  const lines = Array.from({ length: count }, (_, i) => sampleLine(i));
  await writeFile(path.join(dir, 'big.log'), lines.join('\n') + '\n');

  const got: string[] = [];
  let cursor: string | undefined;
  for (let round = 0; round < 20 && got.length < count; round++) {
    const stopAt = 1 + ((round * 7919) % 5000);
    const r = await readLogs(logsUrl(h, cursor ? { cursor } : {}), (_rec, all) => {
      return all.length >= stopAt;
    });
    const recs = recordsOnly(r.records);
    got.push(...recs.map((x) => x.line));
    if (recs.length > 0) cursor = recs[recs.length - 1]!.cursor;
  }
  const rest = linesOf(await history(h, cursor ? { cursor } : {}));
  got.push(...rest);
  assert.equal(got.length, count);
  assert.deepEqual(got, lines);
});

test('a reader that left during a half-written line gets the whole line on resume', async (t) => {
  const { dir, h } = await setup(t);
  const file = path.join(dir, 'app.log');
  await writeFile(file, 'done\nhalf a li');
  const first = recordsOnly(await history(h));
  assert.deepEqual(
    first.map((r) => r.line),
    ['done'],
  );
  await appendFile(file, 'ne\n');
  assert.deepEqual(linesOf(await history(h, { cursor: first[0]!.cursor })), ['half a line']);
});
