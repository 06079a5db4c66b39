import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { AuditLog, readReauthMarks } from '../../src/gateway/audit.js';
import { ManualClock } from '../../src/util/clock.js';
import { ErrorCodes, isLogproxyError } from '../../src/util/errors.js';

const DIST = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

describe('AuditLog', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'lp-audit-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('creates the file 0600 and writes one JSON object per line with the time first', async () => {
    const clock = new ManualClock(Date.UTC(2026, 4, 1, 12));
    const file = path.join(dir, 'new.jsonl');
    const audit = new AuditLog(file, clock);
    audit.write({ event: 'session.created', session_id: 'ses_x', subject: 'a', target: 't' });
    clock.advance(1500);
    audit.write({ event: 'token.rejected', reason: 'expired', path: '/v1/targets' });
    audit.close();
    audit.close();
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    const text = await readFile(file, 'utf8');
    assert.equal(
      text,
      '{"ts":"2026-05-01T12:00:00.000Z","event":"session.created","session_id":"ses_x",' +
        '"subject":"a","target":"t"}\n' +
        '{"ts":"2026-05-01T12:00:01.500Z","event":"token.rejected","reason":"expired",' +
        '"path":"/v1/targets"}\n',
    );
  });

  it('appends to an existing trail and never truncates it', async () => {
    const file = path.join(dir, 'old.jsonl');
    await writeFile(file, '{"ts":"2025-01-01T00:00:00.000Z","event":"session.ended"}\n');
    const audit = new AuditLog(file, new ManualClock());
    audit.write({ event: 'session.refused', subject: 'bob', target: 't', reason: 'forbidden' });
    audit.close();
    const lines = (await readFile(file, 'utf8')).trim().split('\n');
    assert.equal(lines.length, 2);
    assert.equal(JSON.parse(lines[0]!).event, 'session.ended');
    assert.equal(JSON.parse(lines[1]!).reason, 'forbidden');
  });

  it('creates a missing parent directory, private', async () => {
    const file = path.join(dir, 'sub', 'dir', 'a.jsonl');
    new AuditLog(file, new ManualClock()).close();
    assert.equal((await stat(path.dirname(file))).mode & 0o777, 0o700);
  });

  it('refuses a path it cannot open, naming the key', () => {
    assert.throws(
      () => new AuditLog(path.join(dir, 'new.jsonl', 'a.jsonl'), new ManualClock()),
      (err: Error) =>
        isLogproxyError(err, ErrorCodes.CONFIG_INVALID) &&
        /audit\.file: cannot open .* \((ENOTDIR|EEXIST)\)/.test(err.message),
    );
  });

  it('restores sign-in-again marks from the end of the trail', async () => {
    const file = path.join(dir, 'marks.jsonl');
    const line = (ts: string, event: string, subject: string, target: string, reason = '') =>
      JSON.stringify({ ts, event, subject, target, ...(reason ? { reason } : {}) });
    await writeFile(
      file,
      [
        line('2026-01-01T09:00:00.000Z', 'session.expired', 'old', 't', 'idle_timeout'),
        line('2026-01-01T10:00:00.000Z', 'session.expired', 'alice', 't', 'idle_timeout'),
        line('2026-01-01T10:05:00.000Z', 'session.expired', 'bob', 't', 'max_lifetime'),
        line('2026-01-01T10:06:00.000Z', 'session.expired', 'carol', 't', 'client_lost'),
        line('2026-01-01T10:07:00.000Z', 'session.expired', 'dave', 't', 'revoked'),
        'not json',
        line('2026-01-01T10:10:00.000Z', 'session.created', 'bob', 't'),
        line('2026-01-01T10:11:00.000Z', 'session.expired', 'alice', 'u', 'max_lifetime'),
        '{"ts":"2026-01-01T10:12:00.000Z","event":"session.exp',
      ].join('\n'),
    );
    const size = (await stat(file)).size;
    const firstLine = (await readFile(file, 'utf8')).indexOf('\n') + 1;
    assert.deepEqual(readReauthMarks(file, size - firstLine + 5), [
      { subject: 'alice', target: 't', endedAtMs: Date.UTC(2026, 0, 1, 10) },
      { subject: 'alice', target: 'u', endedAtMs: Date.UTC(2026, 0, 1, 10, 11) },
    ]);
    assert.equal(readReauthMarks(file).length, 3, 'with the whole file, "old" is back');
    assert.deepEqual(readReauthMarks(path.join(dir, 'none.jsonl')), []);
    assert.deepEqual(readReauthMarks('-'), []);
  });

  it('writes to stdout for "-", every line before the process exits', async () => {
    const script = `
      import { AuditLog } from ${JSON.stringify(path.join(DIST, 'src/gateway/audit.js'))};
      const audit = new AuditLog('-', { now: () => 0 });
      for (let i = 0; i < 2000; i++) audit.write({ event: 'session.warned', n: i });
      process.exit(0);
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script]);
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    const code = await new Promise((resolve) => child.on('exit', resolve));
    assert.equal(code, 0);
    const lines = out.trim().split('\n');
    assert.equal(lines.length, 2000);
    assert.deepEqual(JSON.parse(lines[1999]!), {
      ts: '1970-01-01T00:00:00.000Z',
      event: 'session.warned',
      n: 1999,
    });
  });
});
