/**
 * Where the client keeps its files and which gateway, profile and token store a command uses.
 *
 * Resolution order for each setting: command-line flag > environment variable > config file
 * (`config.yaml` in the config dir) > default. Only `node:` built-ins are imported at the top:
 * this module is loaded by every command, so `yaml` is imported only when a config file exists.
 */
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { StoreKind } from '../auth/types.js';
import { ErrorCodes, LogproxyError, type ErrorCode } from '../util/errors.js';

/** The profile used when nothing names one. */
export const DEFAULT_PROFILE = 'default';

/** Every file and folder the client uses, derived from the environment once. */
export interface ConfigPaths {
  /** `$LOGPROXY_CONFIG_DIR`, `$XDG_CONFIG_HOME/logproxy` or `~/.config/logproxy`. */
  configDir: string;
  /** Tunnel records and lock files: never secrets. */
  stateDir: string;
  /** Optional `config.yaml` in the config dir. */
  configFile: string;
  /** Non-secret facts about each signed-in profile (see auth/profiles.ts). */
  profilesFile: string;
  /** 0700 folder of 0600 credential files, used only by the file token store. */
  credentialsDir: string;
  /** Cross-process lock files (token refresh, profiles index). */
  locksDir: string;
}

/**
 * The client's paths for an environment. `LOGPROXY_CONFIG_DIR` moves everything (state goes to
 * its `state/` sub-folder) so a test or a second identity can live in one folder.
 */
export function configPaths(
  env: NodeJS.ProcessEnv = process.env,
  homeDir: string = os.homedir(),
): ConfigPaths {
  const override = nonEmpty(env.LOGPROXY_CONFIG_DIR);
  const configDir = override
    ? path.resolve(override)
    : path.join(absoluteOr(env.XDG_CONFIG_HOME, path.join(homeDir, '.config')), 'logproxy');
  const stateDir = override
    ? path.join(configDir, 'state')
    : path.join(absoluteOr(env.XDG_STATE_HOME, path.join(homeDir, '.local', 'state')), 'logproxy');
  return {
    configDir,
    stateDir,
    configFile: path.join(configDir, 'config.yaml'),
    profilesFile: path.join(configDir, 'profiles.json'),
    credentialsDir: path.join(configDir, 'credentials'),
    locksDir: path.join(stateDir, 'locks'),
  };
}

/** What `config.yaml` may hold, validated. */
export interface ClientConfigFile {
  gateway?: string;
  profile?: string;
  tokenStore?: StoreKind;
}

const CONFIG_KEYS = ['gateway', 'profile', 'token_store'] as const;

/**
 * Parses the text of `config.yaml`. Unknown keys, wrong types and bad values are errors that
 * name the key and the file, because a silently ignored typo sends tokens to the wrong place.
 */
export async function parseConfigFile(text: string, file: string): Promise<ClientConfigFile> {
  const { parse } = await import('yaml');
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (err) {
    const reason = err instanceof Error ? err.message.split('\n')[0] : String(err);
    throw configError(file, `is not valid YAML: ${reason}`, err);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) {
    throw configError(file, 'must be a mapping of keys (gateway, profile, token_store)');
  }

  const record = doc as Record<string, unknown>;
  for (const key of Object.keys(record)) {
    if (!(CONFIG_KEYS as readonly string[]).includes(key)) {
      throw configError(file, `has an unknown key "${key}" (known: ${CONFIG_KEYS.join(', ')})`);
    }
  }

  const result: ClientConfigFile = {};
  const source = `"gateway" in ${file}`;
  if (record.gateway !== undefined) {
    const gateway = stringValue(record.gateway, 'gateway', file);
    result.gateway = normalizeGatewayUrl(gateway, source, ErrorCodes.CONFIG_INVALID);
  }
  if (record.profile !== undefined) {
    const profile = stringValue(record.profile, 'profile', file);
    result.profile = validateProfileName(
      profile,
      `"profile" in ${file}`,
      ErrorCodes.CONFIG_INVALID,
    );
  }
  if (record.token_store !== undefined) {
    const store = stringValue(record.token_store, 'token_store', file);
    if (store !== 'keychain' && store !== 'file') {
      throw configError(file, `has token_store: ${store}; use "keychain" or "file"`);
    }
    result.tokenStore = store;
  }
  return result;
}

/** Reads and validates `config.yaml`; a missing file is an empty config. */
export async function loadConfigFile(file: string): Promise<ClientConfigFile> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw configError(file, `cannot be read: ${(err as Error).message}`, err);
  }
  return parseConfigFile(text, file);
}

/**
 * A gateway URL in its one canonical form: scheme required (http or https), lower-case host,
 * no default port, no trailing slash, no query, fragment or credentials. The canonical form
 * keys stored credentials, so `https://logs.example.com/` and `https://LOGS.example.com`
 * share one sign-in.
 *
 * @param source where the value came from, for the error ("--gateway", "LOGPROXY_GATEWAY").
 * @param code CONFIG_INVALID for values from a file, USAGE (default) for flags and env.
 * @throws LogproxyError naming the source and the fix.
 */
export function normalizeGatewayUrl(
  input: string,
  source = 'gateway',
  code: ErrorCode = ErrorCodes.USAGE,
): string {
  const fail = (why: string): never => {
    throw new LogproxyError(code, `${source}: ${why}`, { details: { source } });
  };
  const value = input.trim();
  if (value === '') return fail('the gateway URL is empty');
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) {
    return fail(`"${value}" has no scheme; did you mean https://${value.replace(/^\/+/, '')} ?`);
  }

  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return fail(`"${value}" is not a valid URL`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    return fail(`"${value}" must start with https:// (or http:// for local testing)`);
  }
  if (url.username || url.password) return fail('the gateway URL must not contain credentials');
  if (url.search || url.hash) {
    return fail(`"${value}" must not have a query or fragment; give the gateway's base URL`);
  }
  const pathname = url.pathname.replace(/\/+$/, '');
  return `${url.protocol}//${url.host}${pathname}`;
}

const PROFILE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/**
 * Profile names become parts of keychain accounts and file names, so they are kept simple:
 * letters, digits, `.`, `_` and `-`, starting with a letter or digit, at most 64 characters.
 */
export function validateProfileName(
  name: string,
  source = 'profile',
  code: ErrorCode = ErrorCodes.USAGE,
): string {
  if (PROFILE_NAME.test(name)) return name;
  throw new LogproxyError(
    code,
    `${source}: "${name}" is not a valid profile name (letters, digits, ".", "_" and "-", ` +
      'starting with a letter or digit, at most 64 characters)',
    { details: { source } },
  );
}

/** The flags that feed settings; all optional. */
export interface ClientFlags {
  gateway?: string;
  profile?: string;
  /** `--insecure-storage`: keep tokens in a 0600 file instead of the OS keychain. */
  insecureStorage?: boolean;
}

/** Where a resolved setting came from, for `status` and for error messages. */
export type SettingSource = 'flag' | 'env' | 'config' | 'profiles' | 'default';

export interface ClientSettings {
  paths: ConfigPaths;
  /** Canonical gateway URL, or undefined when nothing names one (see `requireGateway`). */
  gateway?: string;
  gatewaySource?: SettingSource;
  profile: string;
  profileSource: SettingSource;
  /** An explicit store choice; undefined means "keychain if there is one" (login decides). */
  tokenStore?: StoreKind;
  tokenStoreSource?: SettingSource;
  /** The config file's contents, already validated. */
  config: ClientConfigFile;
}

/**
 * Resolves gateway, profile and token store: flag > env (`LOGPROXY_GATEWAY`,
 * `LOGPROXY_PROFILE`, `LOGPROXY_TOKEN_STORE`) > `config.yaml` > profiles index > defaults.
 * When nothing names a gateway and exactly one gateway has this profile signed in, that one
 * is used, so `logproxy targets` works right after `logproxy login --gateway URL`.
 */
export async function resolveClientSettings(
  flags: ClientFlags = {},
  env: NodeJS.ProcessEnv = process.env,
): Promise<ClientSettings> {
  const paths = configPaths(env);
  const config = await loadConfigFile(paths.configFile);
  const settings: ClientSettings = {
    paths,
    config,
    profile: DEFAULT_PROFILE,
    profileSource: 'default',
  };

  if (flags.profile !== undefined) {
    settings.profile = validateProfileName(flags.profile, '--profile');
    settings.profileSource = 'flag';
  } else if (nonEmpty(env.LOGPROXY_PROFILE)) {
    settings.profile = validateProfileName(env.LOGPROXY_PROFILE!, 'LOGPROXY_PROFILE');
    settings.profileSource = 'env';
  } else if (config.profile) {
    settings.profile = config.profile;
    settings.profileSource = 'config';
  }

  if (flags.gateway !== undefined) {
    settings.gateway = normalizeGatewayUrl(flags.gateway, '--gateway');
    settings.gatewaySource = 'flag';
  } else if (nonEmpty(env.LOGPROXY_GATEWAY)) {
    settings.gateway = normalizeGatewayUrl(env.LOGPROXY_GATEWAY!, 'LOGPROXY_GATEWAY');
    settings.gatewaySource = 'env';
  } else if (config.gateway) {
    settings.gateway = config.gateway;
    settings.gatewaySource = 'config';
  } else {
    const known = await gatewaysForProfile(paths.profilesFile, settings.profile);
    if (known.length === 1) {
      settings.gateway = known[0];
      settings.gatewaySource = 'profiles';
    }
  }

  const envStore = nonEmpty(env.LOGPROXY_TOKEN_STORE);
  if (flags.insecureStorage) {
    settings.tokenStore = 'file';
    settings.tokenStoreSource = 'flag';
  } else if (envStore) {
    if (envStore !== 'keychain' && envStore !== 'file') {
      throw new LogproxyError(
        ErrorCodes.USAGE,
        `LOGPROXY_TOKEN_STORE: "${envStore}" is not a token store; use "keychain" or "file"`,
      );
    }
    settings.tokenStore = envStore;
    settings.tokenStoreSource = 'env';
  } else if (config.tokenStore) {
    settings.tokenStore = config.tokenStore;
    settings.tokenStoreSource = 'config';
  }
  return settings;
}

/**
 * The gateway of resolved settings, or a usage error that says every way to name one
 * (and lists the gateways this profile is signed in to when there are several).
 */
export async function requireGateway(settings: ClientSettings): Promise<string> {
  if (settings.gateway) return settings.gateway;
  const known = await gatewaysForProfile(settings.paths.profilesFile, settings.profile);
  const hint =
    known.length > 1
      ? ` (profile "${settings.profile}" is signed in to ${known.join(', ')}: pick one)`
      : '';
  throw new LogproxyError(
    ErrorCodes.USAGE,
    `no gateway given${hint}; pass --gateway URL, set LOGPROXY_GATEWAY, ` +
      `or put "gateway: URL" in ${settings.paths.configFile}`,
  );
}

/** Gateways the profiles index lists for a profile; a missing or broken index lists none. */
async function gatewaysForProfile(profilesFile: string, profile: string): Promise<string[]> {
  const { readProfileRecords } = await import('../auth/profiles.js');
  try {
    const records = await readProfileRecords(profilesFile);
    return [...new Set(records.filter((r) => r.profile === profile).map((r) => r.gateway))];
  } catch {
    // A damaged index must not stop a command that names its gateway another way; `status`
    // reports the damage.
    return [];
  }
}

function stringValue(value: unknown, key: string, file: string): string {
  if (typeof value === 'string') return value;
  throw configError(file, `has ${key}: ${JSON.stringify(value)}; it must be a string`);
}

function configError(file: string, why: string, cause?: unknown): LogproxyError {
  return new LogproxyError(ErrorCodes.CONFIG_INVALID, `config file ${file} ${why}`, {
    cause,
    details: { file },
  });
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === '' ? undefined : value.trim();
}

function absoluteOr(value: string | undefined, fallback: string): string {
  // The XDG spec says relative paths in these variables are invalid and must be ignored.
  const v = nonEmpty(value);
  return v && path.isAbsolute(v) ? v : fallback;
}
