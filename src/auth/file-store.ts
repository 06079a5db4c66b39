/**
 * The fallback token store: one JSON file per gateway + profile in a 0700 folder, each file
 * 0600, replaced atomically. Anyone who can read the file (root, backups, a stolen disk) can
 * use the refresh token, which is why it is opt-in (`--insecure-storage`, `token_store: file`).
 */
import { createHash } from 'node:crypto';
import { readFile, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { parseStoredCredentials } from './credentials.js';
import { ensurePrivateDir, writeFileAtomic } from '../util/atomic-file.js';
import type { StoredCredentials, TokenStore } from './types.js';
import { ErrorCodes, LogproxyError } from '../util/errors.js';

/**
 * The credentials file of one gateway + profile: `<dir>/<host-port-path>-<hash>__<profile>.json`.
 * The readable part helps people find the file; the hash of the exact gateway URL keeps
 * `https://a.example/x_y` and `https://a.example/x/y` apart.
 */
export function credentialsFileName(gateway: string, profile: string): string {
  const readable = gateway
    .replace(/^[a-z]+:\/\//i, '')
    .replace(/[^A-Za-z0-9.-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 80);
  const hash = createHash('sha256').update(gateway).digest('hex').slice(0, 8);
  return `${readable}-${hash}__${profile}.json`;
}

/** A TokenStore of 0600 files in `dir`. */
export class FileTokenStore implements TokenStore {
  readonly kind = 'file' as const;
  readonly location: string;

  constructor(readonly dir: string) {
    this.location = dir;
  }

  /** The file that holds (or would hold) one profile's credentials. */
  pathFor(gateway: string, profile: string): string {
    return path.join(this.dir, credentialsFileName(gateway, profile));
  }

  /**
   * Reads one profile's credentials.
   * @throws LogproxyError CONFIG_INVALID when the file is readable by group or others: like
   *   ssh with a private key, a secret that others could have copied is not used.
   */
  async read(gateway: string, profile: string): Promise<StoredCredentials | undefined> {
    const file = this.pathFor(gateway, profile);
    let text: string;
    try {
      await this.checkPermissions(file);
      text = await readFile(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    return parseStoredCredentials(text, file);
  }

  /** Replaces one profile's credentials atomically (temp file, fsync, rename). */
  async write(creds: StoredCredentials): Promise<void> {
    await ensurePrivateDir(this.dir);
    await writeFileAtomic(this.pathFor(creds.gateway, creds.profile), `${JSON.stringify(creds)}\n`);
  }

  async delete(gateway: string, profile: string): Promise<boolean> {
    try {
      await unlink(this.pathFor(gateway, profile));
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
  }

  private async checkPermissions(file: string): Promise<void> {
    if (process.platform === 'win32') return;
    const info = await stat(file);
    if ((info.mode & 0o077) === 0) return;
    const mode = (info.mode & 0o777).toString(8).padStart(4, '0');
    throw new LogproxyError(
      ErrorCodes.CONFIG_INVALID,
      `credentials file ${file} is readable by other users (mode ${mode}); ` +
        `run \`chmod 600 ${file}\` if nobody else could have read it, ` +
        'otherwise run `logproxy logout` and `logproxy login` to replace the tokens',
      { details: { file, mode } },
    );
  }
}
