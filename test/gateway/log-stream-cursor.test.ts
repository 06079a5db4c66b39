import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  CursorSyntaxError,
  decodeCursor,
  encodeFileCursor,
  fileCursorPrefix,
  type FilePosition,
} from '../../src/gateway/cursor.js';

const files: FilePosition[] = [
  {
    path: '/var/log/app/äpp 1.log',
    dev: 2049,
    ino: 1234567,
    fpLen: 42,
    fpHash: 'ab-_Z09',
    offset: 0,
  },
  { path: '/var/log/app/b.log', dev: 2049, ino: 7, fpLen: 0, fpHash: '', offset: 987654321 },
];

test('a file cursor names every file; the record offset overrides its own file', () => {
  const cursor = fileCursorPrefix(files, 1) + '12345';
  assert.match(cursor, /^[A-Za-z0-9_.,;-]+$/, 'needs no escaping in JSON');
  const decoded = decodeCursor(cursor);
  assert.deepEqual(decoded, {
    kind: 'file',
    files: [files[0], { ...files[1], offset: 12345 }],
  });
  assert.deepEqual(decodeCursor(encodeFileCursor(files)), { kind: 'file', files });
  assert.deepEqual(decodeCursor(encodeFileCursor([])), { kind: 'file', files: [] });
});

test('demo cursors and damaged cursors', () => {
  assert.deepEqual(decodeCursor('d1.7.123'), { kind: 'demo', seed: 7, next: 123 });
  const bad = ['', 'x', 'd1.7', 'd1.7.-1', 'f2.zz.0.1', 'f2.1,2,3,h,4,p.5.1', 'f2..x.0'];
  for (const text of bad) {
    assert.throws(() => decodeCursor(text), CursorSyntaxError, JSON.stringify(text));
  }
  assert.throws(() => decodeCursor('d1.1.' + '9'.repeat(70_000)), /too long/);
});
