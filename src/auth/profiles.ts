/**
 * The profiles index (`profiles.json` in the config dir): non-secret facts about each
 * signed-in (gateway, profile) pair, so `status` can list them and `logout` and refresh know
 * which store holds the credentials. Tokens are never written here.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { StoreKind } from './types.js';
import { ensurePrivateDir, writeFileAtomic } from '../util/atomic-file.js';
import { ErrorCodes, LogproxyError } from '../util/errors.js';

/** One signed-in profile, without secrets. */
export interface ProfileRecord {
  gateway: string;
  profile: string;
  subject: string;
  store: StoreKind;
  /** Where the credentials are: the keychain's description or the file path. */
  location: string;
  issuer: string;
  /** RFC 3339 time of the last successful `login`. */
  lastLoginAt: string;
}

interface ProfilesFile {
  version: 1;
  profiles: ProfileRecord[];
}

/**
 * Reads every record; a missing file has none.
 * @throws LogproxyError CONFIG_INVALID when the file is not a profiles index.
 */
export async function readProfileRecords(file: string): Promise<ProfileRecord[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  return parseProfiles(text, file).profiles;
}

/** Finds the record of one (gateway, profile) pair. */
export async function findProfileRecord(
  file: string,
  gateway: string,
  profile: string,
): Promise<ProfileRecord | undefined> {
  const records = await readProfileRecords(file);
  return records.find((r) => r.gateway === gateway && r.profile === profile);
}

/**
 * Adds or replaces the record of `record.gateway` + `record.profile`. Read-modify-write under a
 * cross-process lock, so two logins to different profiles at once both survive.
 */
export async function upsertProfileRecord(
  file: string,
  locksDir: string,
  record: ProfileRecord,
): Promise<void> {
  await updateProfiles(file, locksDir, (records) => [
    ...records.filter((r) => !(r.gateway === record.gateway && r.profile === record.profile)),
    record,
  ]);
}

/** Removes one record; resolves whether there was one. */
export async function removeProfileRecord(
  file: string,
  locksDir: string,
  gateway: string,
  profile: string,
): Promise<boolean> {
  let removed = false;
  await updateProfiles(file, locksDir, (records) => {
    const kept = records.filter((r) => !(r.gateway === gateway && r.profile === profile));
    removed = kept.length !== records.length;
    return kept;
  });
  return removed;
}

async function updateProfiles(
  file: string,
  locksDir: string,
  change: (records: ProfileRecord[]) => ProfileRecord[],
): Promise<void> {
  await ensurePrivateDir(path.dirname(file), false);
  await ensurePrivateDir(locksDir, false);
  const lockfile = await import('proper-lockfile');
  const release = await lockfile.lock(path.join(locksDir, 'profiles'), {
    realpath: false,
    stale: 10_000,
    retries: { retries: 40, factor: 1.3, minTimeout: 20, maxTimeout: 500 },
    onCompromised: () => undefined,
  });
  try {
    const records = await readProfileRecords(file);
    const next: ProfilesFile = { version: 1, profiles: change(records) };
    await writeFileAtomic(file, `${JSON.stringify(next, null, 2)}\n`, 0o600);
  } finally {
    await release().catch(() => undefined);
  }
}

function parseProfiles(text: string, file: string): ProfilesFile {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw damaged(file, 'is not valid JSON');
  }
  const d = doc as Partial<ProfilesFile> | null;
  if (!d || typeof d !== 'object' || d.version !== 1 || !Array.isArray(d.profiles)) {
    throw damaged(file, 'is not a logproxy profiles index (version 1)');
  }
  const profiles = d.profiles.filter(isRecord);
  return { version: 1, profiles };
}

function isRecord(value: unknown): value is ProfileRecord {
  const r = value as Partial<ProfileRecord> | null;
  return (
    !!r &&
    typeof r.gateway === 'string' &&
    typeof r.profile === 'string' &&
    typeof r.subject === 'string' &&
    (r.store === 'keychain' || r.store === 'file') &&
    typeof r.location === 'string' &&
    typeof r.issuer === 'string' &&
    typeof r.lastLoginAt === 'string'
  );
}

function damaged(file: string, why: string): LogproxyError {
  return new LogproxyError(
    ErrorCodes.CONFIG_INVALID,
    `${file} ${why}; delete it and run \`logproxy login\` again`,
    { details: { file } },
  );
}
