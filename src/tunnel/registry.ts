/**
 * Running tunnels, one JSON file each under `<stateDir>/tunnels/<pid>.json`, so `logproxy
 * status` can list them and `logproxy tail` can use one. A record whose process is gone (a
 * crash, a kill -9) is stale: readers delete it.
 *
 * Records never hold a secret: the state dir is for facts, not credentials. A tunnel started
 * with `--require-secret` says so (`secretRequired`); a client then needs the secret from the
 * person (LOGPROXY_TUNNEL_SECRET) or opens its own session.
 */
import { unlinkSync } from 'node:fs';
import { mkdir, readFile, readdir, rename, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';

export interface TunnelRecord {
  version: 1;
  pid: number;
  target: string;
  gateway: string;
  profile: string;
  /** `http://127.0.0.1:PORT`, or `http://localhost` with `unixSocket`. */
  localUrl: string;
  unixSocket?: string;
  sessionId: string;
  /** RFC 3339: when the current session ends at the latest. */
  expiresAt: string;
  /** RFC 3339. */
  startedAt: string;
  /** Requests must carry the tunnel's secret (`--require-secret`). */
  secretRequired: boolean;
}

export function tunnelsDir(stateDir: string): string {
  return path.join(stateDir, 'tunnels');
}

function recordPath(stateDir: string, pid: number): string {
  return path.join(tunnelsDir(stateDir), `${pid}.json`);
}

/** Writes (or rewrites, after a session switch) this process's record atomically. */
export async function writeTunnelRecord(stateDir: string, record: TunnelRecord): Promise<void> {
  await mkdir(tunnelsDir(stateDir), { recursive: true, mode: 0o700 });
  const file = recordPath(stateDir, record.pid);
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(record, null, 2)}\n`, { mode: 0o600 });
  await rename(tmp, file);
}

export async function removeTunnelRecord(stateDir: string, pid: number): Promise<void> {
  await unlink(recordPath(stateDir, pid)).catch(() => undefined);
}

/** Removes the record synchronously: for `process.on('exit')`, where nothing async runs. */
export function removeTunnelRecordSync(stateDir: string, pid: number): void {
  try {
    unlinkSync(recordPath(stateDir, pid));
  } catch {
    // already gone
  }
}

/** Live tunnels, oldest first; stale records are deleted on the way. */
export async function listTunnels(stateDir: string): Promise<TunnelRecord[]> {
  let names: string[];
  try {
    names = await readdir(tunnelsDir(stateDir));
  } catch {
    return [];
  }
  const records: TunnelRecord[] = [];
  for (const name of names) {
    if (!/^\d+\.json$/.test(name)) continue;
    const file = path.join(tunnelsDir(stateDir), name);
    const record = await readRecord(file);
    if (!record) continue;
    if (!isAlive(record.pid)) {
      await unlink(file).catch(() => undefined);
      continue;
    }
    records.push(record);
  }
  return records.sort((a, b) => a.startedAt.localeCompare(b.startedAt));
}

/**
 * A live tunnel for `target` (any target when omitted), preferring one that needs no secret
 * and, among those, the newest.
 */
export async function findTunnel(
  stateDir: string,
  target?: string,
  gateway?: string,
): Promise<TunnelRecord | undefined> {
  const all = await listTunnels(stateDir);
  const matching = all.filter(
    (r) => (target === undefined || r.target === target) && (!gateway || r.gateway === gateway),
  );
  const open = matching.filter((r) => !r.secretRequired);
  return (open.length ? open : matching).at(-1);
}

async function readRecord(file: string): Promise<TunnelRecord | undefined> {
  try {
    const parsed = JSON.parse(await readFile(file, 'utf8')) as Partial<TunnelRecord>;
    if (parsed.version !== 1 || typeof parsed.pid !== 'number') return undefined;
    if (typeof parsed.target !== 'string' || typeof parsed.localUrl !== 'string') return undefined;
    return parsed as TunnelRecord;
  } catch {
    // Half-written by a crash, or not ours: neither is a tunnel we can use.
    return undefined;
  }
}

/** Signal 0 checks existence; EPERM means alive but someone else's. */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
