/**
 * Picks and opens the token store of a profile: the OS keychain by default, a 0600 file when
 * the person asked for it. The stores themselves live in keychain-store.ts and file-store.ts.
 */
import { access } from 'node:fs/promises';
import { FileTokenStore } from './file-store.js';
import {
  KeychainTokenStore,
  probeKeychain,
  type KeychainBroker,
  type KeychainProbeResult,
} from './keychain-store.js';
import { findProfileRecord } from './profiles.js';
import type { StoreKind, TokenStore } from './types.js';
import { ErrorCodes, LogproxyError } from '../util/errors.js';

export { FileTokenStore, credentialsFileName } from './file-store.js';
export {
  KeychainBroker,
  KeychainTokenStore,
  KEYCHAIN_SERVICE,
  keychainAccount,
  keychainDescription,
  probeKeychain,
  type KeychainProbeResult,
} from './keychain-store.js';

/** The paths a store choice depends on (a subset of cli/config.ts's ConfigPaths). */
export interface StorePaths {
  /** Folder of the file store. */
  credentialsDir: string;
  /** `config.yaml`, named in the fallback advice. */
  configFile: string;
  /** `profiles.json`: which store holds which profile. */
  profilesFile: string;
}

/** Options shared by the functions below; tests pass their own broker or probe. */
export interface StoreOptions {
  broker?: KeychainBroker;
  probe?: () => Promise<KeychainProbeResult>;
}

/**
 * The error `login` raises when there is no keychain, with both ways out.
 * Maps to exit code 1 (see cli/exit-codes.ts).
 */
export function keychainUnavailableError(reason: string, paths: StorePaths): LogproxyError {
  return new LogproxyError(
    ErrorCodes.KEYCHAIN_UNAVAILABLE,
    `no OS keychain is available (${reason}); rerun with --insecure-storage to keep tokens ` +
      `in a 0600 file in ${paths.credentialsDir}, or set "token_store: file" in ${paths.configFile}`,
    { details: { reason, credentialsDir: paths.credentialsDir, configFile: paths.configFile } },
  );
}

/** Opens the store of a known kind, without probing. */
export function openTokenStore(
  kind: StoreKind,
  paths: Pick<StorePaths, 'credentialsDir'>,
  options: StoreOptions & { absentIfUnavailable?: boolean } = {},
): TokenStore {
  if (kind === 'file') return new FileTokenStore(paths.credentialsDir);
  return new KeychainTokenStore({
    broker: options.broker,
    absentIfUnavailable: options.absentIfUnavailable,
  });
}

/**
 * The store `login` writes to. `preferred: 'file'` (from --insecure-storage, the env or the
 * config file) gives the file store at once; otherwise the keychain is probed (bounded by
 * KEYCHAIN_PROBE_TIMEOUT_MS) and its absence is a KEYCHAIN_UNAVAILABLE error that offers the
 * file store. The CLI must warn when the result's `kind` is `file` (see `insecureStoreWarning`).
 */
export async function chooseLoginStore(
  paths: StorePaths,
  preferred?: StoreKind,
  options: StoreOptions = {},
): Promise<TokenStore> {
  if (preferred === 'file') return openTokenStore('file', paths);
  const probe = options.probe ?? (() => probeKeychain({ broker: options.broker }));
  const result = await probe();
  if (!result.available) throw keychainUnavailableError(result.reason, paths);
  return openTokenStore('keychain', paths, options);
}

/**
 * The store that holds an existing sign-in: the one the profiles index names; without an
 * index entry, a credentials file if one exists, else `preferred`, else the keychain (whose
 * reads then treat an unusable keychain as "not signed in", since nothing says this profile
 * ever signed in).
 */
export async function storeForProfile(
  gateway: string,
  profile: string,
  paths: StorePaths,
  preferred?: StoreKind,
  options: StoreOptions = {},
): Promise<TokenStore> {
  const record = await findProfileRecord(paths.profilesFile, gateway, profile).catch(
    () => undefined,
  );
  if (record) return openTokenStore(record.store, paths, options);

  const fileStore = new FileTokenStore(paths.credentialsDir);
  const exists = await access(fileStore.pathFor(gateway, profile)).then(
    () => true,
    () => false,
  );
  if (exists) return fileStore;
  return openTokenStore(preferred ?? 'keychain', paths, { ...options, absentIfUnavailable: true });
}

/** The warning the CLI prints after storing tokens in a file; undefined for the keychain. */
export function insecureStoreWarning(store: TokenStore): string | undefined {
  if (store.kind !== 'file') return undefined;
  return (
    `tokens are stored unencrypted in ${store.location} (mode 0600): anyone who can read ` +
    'that file as you or as root can use them until they expire or you run `logproxy logout`'
  );
}
