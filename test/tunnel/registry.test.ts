import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  findTunnel,
  listTunnels,
  removeTunnelRecord,
  tunnelsDir,
  writeTunnelRecord,
  type TunnelRecord,
} from '../../src/tunnel/registry.js';

function record(pid: number, target: string, extra: Partial<TunnelRecord> = {}): TunnelRecord {
  return {
    version: 1,
    pid,
    target,
    gateway: 'http://127.0.0.1:7480',
    profile: 'default',
    localUrl: 'http://127.0.0.1:40000',
    sessionId: 's1',
    expiresAt: new Date(Date.now() + 3_600_000).toISOString(),
    startedAt: new Date().toISOString(),
    secretRequired: false,
    ...extra,
  };
}

/** The pid of a process that has exited (so the number is known not to be running). */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '0']);
  await new Promise((r) => child.once('exit', r));
  return child.pid!;
}

test('records are listed while their process lives; stale ones are deleted', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'lp-reg-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const live = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)']);
  t.after(() => live.kill());
  const dead = await deadPid();

  await writeTunnelRecord(
    dir,
    record(process.pid, 'prod-logs', { startedAt: '2026-01-01T00:00:00Z' }),
  );
  await writeTunnelRecord(dir, record(live.pid!, 'prod-logs', { secretRequired: true }));
  await writeTunnelRecord(dir, record(dead, 'staging'));
  await writeFile(path.join(tunnelsDir(dir), '123.json'), '{"half');
  assert.equal((await stat(path.join(tunnelsDir(dir), `${process.pid}.json`))).mode & 0o777, 0o600);

  const all = await listTunnels(dir);
  assert.deepEqual(
    all.map((r) => r.pid),
    [process.pid, live.pid],
  );
  assert.ok(!(await readdir(tunnelsDir(dir))).includes(`${dead}.json`), 'stale record deleted');

  assert.equal((await findTunnel(dir, 'prod-logs'))?.pid, process.pid, 'prefers no secret');
  assert.equal(await findTunnel(dir, 'staging'), undefined);
  assert.equal((await findTunnel(dir))?.pid, process.pid);

  await removeTunnelRecord(dir, process.pid);
  assert.equal((await findTunnel(dir, 'prod-logs'))?.pid, live.pid);
});

test('an absent state dir lists nothing', async () => {
  assert.deepEqual(await listTunnels(path.join(os.tmpdir(), 'lp-none-' + Date.now())), []);
});
