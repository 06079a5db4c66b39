import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatBatch, formatBytes, shortTime, type FormatOptions } from '../../src/tail/format.js';
import type { LogNotice, LogRecord } from '../../src/protocol/api.js';

/** A record as the gateway writes it (JSON.stringify, its key order). */
function rec(line: string, cursor: string, extra: Partial<LogRecord> = {}): string {
  const r: LogRecord = {
    ts: '2026-01-31T14:05:06.789Z',
    source: '/var/log/app/app.log',
    line,
    cursor,
  };
  return JSON.stringify({ ...r, ...extra });
}

function ndjson(...lines: string[]): string {
  return lines.map((l) => `${l}\n`).join('');
}

const raw: FormatOptions = { format: 'raw' };

test('raw prints each line as written, and the last cursor', () => {
  const b = formatBatch(ndjson(rec('one', 'c1'), rec('two', 'c2')), raw);
  assert.equal(b.output, 'one\ntwo\n');
  assert.equal(b.records, 2);
  assert.equal(b.lastCursor, 'c2');
  assert.deepEqual(b.notices, []);
});

test('raw decodes escapes: quotes, backslashes, tabs, unicode, and a JSON line', () => {
  const lines = [
    'say "hi" \\ there\tTAB',
    'caf\u00e9 \u{1F600} \u0001',
    '{"level":"error","line":"inner","msg":"x \\"y\\""}',
    '"line":"looks like a key"',
  ];
  const text = ndjson(...lines.map((l, i) => rec(l, `c${i}`)));
  const b = formatBatch(text, raw);
  assert.equal(b.output, lines.map((l) => `${l}\n`).join(''));
  assert.equal(b.lastCursor, 'c3');
});

test('a record whose fields come before its line is read correctly (slow path)', () => {
  const odd = JSON.stringify({
    fields: { line: 'wrong', cursor: 'wrong' },
    ts: '2026-01-31T14:05:06.789Z',
    source: 's',
    line: 'right',
    cursor: 'c-right',
  });
  const b = formatBatch(ndjson(odd), raw);
  assert.equal(b.output, 'right\n');
  assert.equal(b.lastCursor, 'c-right');
});

test('a JSON log line with its own line/cursor keys in fields does not confuse the scanner', () => {
  const inner = JSON.stringify({ line: 'nested', cursor: 'nested', level: 'info' });
  const r = rec(inner, 'outer', { level: 'info', fields: JSON.parse(inner) });
  const b = formatBatch(ndjson(r), raw);
  assert.equal(b.output, `${inner}\n`);
  assert.equal(b.lastCursor, 'outer');
});

test('json passes each record through as one parseable object per line', () => {
  const records = [
    rec('a', 'c1', { level: 'warn', fields: { level: 'warn', n: 1 } }),
    rec('b', 'c2'),
  ];
  const b = formatBatch(ndjson(...records), { format: 'json' });
  const out = b.output
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l) as LogRecord);
  assert.deepEqual(
    out.map((o) => [o.line, o.cursor, o.level]),
    [
      ['a', 'c1', 'warn'],
      ['b', 'c2', undefined],
    ],
  );
  assert.ok(out.every((o) => typeof o.ts === 'string' && typeof o.source === 'string'));
});

test('notices never reach the output; they come back in order with their cursor', () => {
  const lost: LogNotice = {
    notice: 'data_lost',
    ts: '2026-01-31T14:05:07.000Z',
    source: '/var/log/app/app.log',
    lost_bytes: 1234,
    cursor: 'after-loss',
  };
  const keepalive: LogNotice = { notice: 'keepalive', ts: 'x', cursor: 'k1' };
  for (const format of ['raw', 'json', 'text'] as const) {
    const b = formatBatch(ndjson(rec('a', 'c1'), JSON.stringify(lost), rec('b', 'c2')), { format });
    assert.equal(b.records, 2);
    assert.equal(b.notices.length, 1);
    assert.equal(b.notices[0]!.lost_bytes, 1234);
    assert.equal(b.lastCursor, 'c2');
    assert.ok(!b.output.includes('data_lost'));
  }
  const quiet = formatBatch(ndjson(rec('a', 'c1'), JSON.stringify(keepalive)), raw);
  assert.equal(quiet.lastCursor, 'k1', 'a keepalive after the last record moves the cursor');
  assert.equal(quiet.output, 'a\n');
});

test('an empty batch gives nothing and no cursor', () => {
  assert.deepEqual(formatBatch('', raw), {
    output: '',
    records: 0,
    lastCursor: undefined,
    notices: [],
  });
});

test('garbage from the server is refused, not printed', () => {
  assert.throws(() => formatBatch('<html>oops</html>\n', raw), /not a JSON object/);
  assert.throws(() => formatBatch('{"ts":"x","source":"s"}\n', raw), /neither a log record/);
});

test('text shows local time, the file name, the level and the line', () => {
  const b = formatBatch(ndjson(rec('boom', 'c1', { level: 'error' }), rec('plain', 'c2')), {
    format: 'text',
  });
  const time = shortTime('2026-01-31T14:05:06.789Z');
  assert.match(time, /^\d\d:\d\d:\d\d\.789$/);
  assert.equal(b.output, `${time} app.log ERROR boom\n${time} app.log plain\n`);
});

test('text --timestamps shows the full RFC 3339 time', () => {
  const b = formatBatch(ndjson(rec('x', 'c')), { format: 'text', timestamps: true });
  assert.equal(b.output, '2026-01-31T14:05:06.789Z app.log x\n');
});

test('text colours by level only through the style it is given', () => {
  const style = (level: string) => (level === 'error' ? (s: string) => `<${s}>` : undefined);
  const b = formatBatch(
    ndjson(rec('bad', 'c1', { level: 'error' }), rec('ok', 'c2', { level: 'info' })),
    {
      format: 'text',
      style,
    },
  );
  const lines = b.output.trimEnd().split('\n');
  assert.match(lines[0]!, /<ERROR> <bad>$/);
  assert.ok(lines[1]!.endsWith('INFO  ok'));
  const plain = formatBatch(ndjson(rec('bad', 'c1', { level: 'error' })), { format: 'text' });
  assert.ok(!plain.output.includes('\u001b['));
});

test('shortTime keeps each record its own milliseconds and copes with odd input', () => {
  const a = shortTime('2026-01-31T14:05:06.001Z');
  const b = shortTime('2026-01-31T14:05:06.999Z');
  assert.equal(a.slice(0, 8), b.slice(0, 8));
  assert.equal(a.slice(-3), '001');
  assert.equal(b.slice(-3), '999');
  assert.match(shortTime('2026-01-31T14:05:06+02:00'), /^\d\d:\d\d:\d\d\.000$/);
  assert.equal(shortTime('not a time'), 'not a time');
});

test('a large batch of records comes out complete and in order', () => {
  const lines = Array.from({ length: 5000 }, (_, i) => `line ${i} ${'x'.repeat(i % 50)}`);
  const b = formatBatch(ndjson(...lines.map((l, i) => rec(l, `c${i}`))), raw);
  assert.equal(b.output, lines.map((l) => `${l}\n`).join(''));
  assert.equal(b.lastCursor, 'c4999');
});

test('formatBytes gives raw and json the same output, cursor and notices as formatBatch', () => {
  const lost: LogNotice = { notice: 'data_lost', ts: 't', lost_lines: 3, cursor: 'after-loss' };
  const keepalive: LogNotice = { notice: 'keepalive', ts: 'x', cursor: 'k1' };
  const inner = JSON.stringify({ line: 'nested', cursor: 'nested', level: 'info' });
  const odd = JSON.stringify({
    fields: { line: 'wrong' },
    ts: 't',
    source: 's',
    line: 'right',
    cursor: 'c-odd',
  });
  const batches = [
    ndjson(rec('one', 'c1'), rec('two', 'c2')),
    ndjson(
      rec('say "hi" \\ there\tTAB', 'e1'),
      rec('caf\u00e9 \u{1F600} \u0001 \ud800', 'e2'),
      rec('"line":"looks like a key"', 'e3'),
      rec(inner, 'e4', { level: 'info', fields: JSON.parse(inner) as Record<string, unknown> }),
      odd,
      rec('plain again', 'e5'),
    ),
    ndjson(JSON.stringify(lost), rec('a', 'c1'), JSON.stringify(lost), rec('b', 'c2')),
    ndjson(rec('a', 'c1'), JSON.stringify(keepalive)),
    ndjson(rec('a', 'c1')) + '\n' + ndjson(rec('b', 'c2')),
    ndjson(JSON.stringify(keepalive)),
    '',
    ndjson(
      ...Array.from({ length: 3000 }, (_, i) => rec(`l${i} ${'\u00e9'.repeat(i % 7)}`, `c${i}`)),
    ),
  ];
  for (const text of batches) {
    for (const format of ['raw', 'json'] as const) {
      const want = formatBatch(text, { format });
      const bytes = Buffer.from(text, 'utf8');
      const got = formatBytes(bytes, bytes.length, format);
      // Compared as the bytes stdout gets (a lone surrogate becomes U+FFFD either way).
      assert.deepEqual(got.output, Buffer.from(want.output, 'utf8'), format);
      assert.equal(got.records, want.records);
      assert.equal(got.lastCursor, want.lastCursor);
      assert.deepEqual(got.notices, want.notices);
    }
  }
});

test('formatBytes refuses garbage like formatBatch', () => {
  for (const format of ['raw', 'json'] as const) {
    const html = Buffer.from('<html>oops</html>\n');
    assert.throws(() => formatBytes(html, html.length, format), /not a JSON object/);
    const bad = Buffer.from('{"ts":"x","source":"s"}\n');
    assert.throws(() => formatBytes(bad, bad.length, format), /neither a log record/);
  }
});
