/**
 * A file-backed store for oidc-provider's models (grants, refresh tokens, device codes,
 * sessions, interactions), so restarting the gateway signs nobody out.
 *
 * Everything lives in one JSON file, rewritten whole on every change (temp file, fsync,
 * rename), which keeps each write atomic. That is plenty for a development provider with a
 * handful of people; it is not a database. One process owns a data directory at a time: two
 * gateways on the same directory would overwrite each other's changes.
 */
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Adapter, AdapterPayload } from 'oidc-provider';
import { removeStaleTempFiles, writeFileAtomic } from '../util/atomic-file.js';

interface StoredEntry {
  payload: AdapterPayload;
  /** Epoch ms after which the entry is ignored and dropped at the next write. */
  expiresAtMs: number;
}

interface StoreFile {
  version: 1;
  entries: Record<string, StoredEntry>;
}

/** Models whose entries carry a grantId and go away when that grant is revoked. */
const GRANT_BOUND_MODELS = new Set([
  'AccessToken',
  'AuthorizationCode',
  'RefreshToken',
  'DeviceCode',
  'BackchannelAuthenticationRequest',
]);

export class FileModelStore {
  private readonly entries = new Map<string, StoredEntry>();
  /** Bumped on every change; a write records the version it captured. */
  private version = 0;
  private writtenVersion = 0;
  private writing: Promise<void> | undefined;

  private constructor(
    private readonly file: string,
    private readonly now: () => number,
  ) {}

  /** Loads the store from `file` (missing file: empty store), dropping expired entries. */
  static async open(file: string, now: () => number = Date.now): Promise<FileModelStore> {
    const store = new FileModelStore(file, now);
    await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
    await removeStaleTempFiles(file);

    let text: string | undefined;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (text !== undefined) {
      let parsed: Partial<StoreFile> | undefined;
      try {
        parsed = JSON.parse(text) as Partial<StoreFile>;
      } catch {
        parsed = undefined;
      }
      if (parsed?.version !== 1 || typeof parsed.entries !== 'object' || !parsed.entries) {
        throw new Error(
          `${file} is not a logproxy provider store; move it away to start afresh ` +
            '(everyone signed in through the development provider will have to sign in again)',
        );
      }
      const nowMs = now();
      for (const [key, entry] of Object.entries(parsed.entries)) {
        if (entry.expiresAtMs > nowMs) store.entries.set(key, entry);
      }
    }
    return store;
  }

  /** An oidc-provider adapter for one model name; pass `(name) => store.adapterFor(name)`. */
  adapterFor(model: string): Adapter {
    return new FileModelAdapter(this, model);
  }

  /** Waits until every change made so far is on disk. */
  async flush(): Promise<void> {
    const target = this.version;
    while (this.writtenVersion < target) {
      this.writing ??= this.writeOnce().finally(() => {
        this.writing = undefined;
      });
      await this.writing;
    }
  }

  get(key: string): AdapterPayload | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    if (entry.expiresAtMs <= this.now()) return undefined;
    return structuredClone(entry.payload);
  }

  /** The first live payload of `model` for which `match` holds. */
  findWhere(model: string, match: (p: AdapterPayload) => boolean): AdapterPayload | undefined {
    const prefix = `${model}:`;
    const nowMs = this.now();
    for (const [key, entry] of this.entries) {
      if (key.startsWith(prefix) && entry.expiresAtMs > nowMs && match(entry.payload)) {
        return structuredClone(entry.payload);
      }
    }
    return undefined;
  }

  async set(key: string, payload: AdapterPayload, expiresInS: number): Promise<void> {
    const expiresAtMs = this.now() + expiresInS * 1000;
    this.entries.set(key, { payload: structuredClone(payload), expiresAtMs });
    await this.changed();
  }

  async update(key: string, change: (payload: AdapterPayload) => void): Promise<void> {
    const entry = this.entries.get(key);
    if (!entry) return;
    change(entry.payload);
    await this.changed();
  }

  async deleteWhere(match: (key: string, payload: AdapterPayload) => boolean): Promise<void> {
    let removed = false;
    for (const [key, entry] of this.entries) {
      if (match(key, entry.payload)) {
        this.entries.delete(key);
        removed = true;
      }
    }
    if (removed) await this.changed();
  }

  private async changed(): Promise<void> {
    this.version += 1;
    await this.flush();
  }

  private async writeOnce(): Promise<void> {
    const captured = this.version;
    const nowMs = this.now();
    const live: Record<string, StoredEntry> = {};
    for (const [key, entry] of this.entries) {
      if (entry.expiresAtMs > nowMs) live[key] = entry;
      else this.entries.delete(key);
    }
    const body = JSON.stringify({ version: 1, entries: live } satisfies StoreFile);

    await writeFileAtomic(this.file, body);
    this.writtenVersion = Math.max(this.writtenVersion, captured);
  }
}

class FileModelAdapter implements Adapter {
  constructor(
    private readonly store: FileModelStore,
    private readonly model: string,
  ) {}

  private key(id: string): string {
    return `${this.model}:${id}`;
  }

  async upsert(id: string, payload: AdapterPayload, expiresIn: number): Promise<void> {
    await this.store.set(this.key(id), payload, expiresIn);
  }

  async find(id: string): Promise<AdapterPayload | undefined> {
    return this.store.get(this.key(id));
  }

  async findByUserCode(userCode: string): Promise<AdapterPayload | undefined> {
    return this.store.findWhere(this.model, (p) => p.userCode === userCode);
  }

  async findByUid(uid: string): Promise<AdapterPayload | undefined> {
    return this.store.findWhere(this.model, (p) => p.uid === uid);
  }

  async consume(id: string): Promise<void> {
    // Seconds, as oidc-provider's own adapter stores it.
    await this.store.update(this.key(id), (p) => {
      p.consumed = Math.floor(Date.now() / 1000);
    });
  }

  async destroy(id: string): Promise<void> {
    const target = this.key(id);
    await this.store.deleteWhere((key) => key === target);
  }

  async revokeByGrantId(grantId: string): Promise<void> {
    if (!GRANT_BOUND_MODELS.has(this.model)) return;
    const prefix = `${this.model}:`;
    await this.store.deleteWhere((key, p) => key.startsWith(prefix) && p.grantId === grantId);
  }
}
