/**
 * The gateway's YAML config, parsed once into a validated `GatewayConfig` (durations in ms,
 * paths absolute). Every mistake is reported with the file, line and key path, e.g.
 * `gateway.yaml:14: targets.prod-logs.session.idle_timout: unknown key (did you mean
 * idle_timeout?)`, and all mistakes of a file are reported together, so a person fixes them
 * in one pass. Every key is documented in docs/gateway.md.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { LineCounter, isMap, isScalar, isSeq, parseDocument } from 'yaml';
import type { Node as YamlNode, Pair, YAMLMap } from 'yaml';
import { DurationSyntaxError, parseDuration } from '../util/durations.js';
import { ErrorCodes, LogproxyError } from '../util/errors.js';
import { loosenedFields } from './policy.js';
import type {
  AuthConfig,
  DevAuthConfig,
  GatewayConfig,
  SessionPolicyConfig,
  SourceConfig,
  TargetConfig,
} from './types.js';

export const DEFAULT_LISTEN = { host: '127.0.0.1', port: 7480 };
export const DEFAULT_ALGORITHMS = ['RS256', 'ES256', 'PS256', 'EdDSA'];
export const DEFAULT_CLOCK_TOLERANCE_S = 30;
export const DEFAULT_CLIENT_ID = 'logproxy-cli';

export const DEFAULT_SESSION: SessionPolicyConfig = {
  idleTimeoutMs: 15 * 60_000,
  maxLifetimeMs: 12 * 3_600_000,
  heartbeatIntervalMs: 30_000,
  warnBeforeMs: [5 * 60_000, 60_000],
  // Three missed beats tolerate a laptop's short network hiccup without keeping a dead
  // client's session open for long.
  heartbeatMissesAllowed: 3,
  silentResume: false,
};

export const DEFAULT_DEV: Omit<DevAuthConfig, 'dataDir' | 'users'> = {
  accessTokenTtlMs: 5 * 60_000,
  refreshTokenTtlMs: 12 * 3_600_000,
  deviceCodeTtlMs: 10 * 60_000,
  pollIntervalS: 5,
};

export const DEFAULT_HTTP_TIMEOUT_MS = 30_000;
export const DEFAULT_DEMO = { ratePerSec: 2, historyLines: 200, seed: 1 };

const TARGET_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;

export interface LoadedConfig {
  config: GatewayConfig;
  /** Things that load but deserve a word at start (e.g. issuer ignored in dev mode). */
  warnings: string[];
}

export interface ParseOptions {
  /** Shown in messages, e.g. `gateway.yaml`. */
  fileLabel: string;
  /** Relative paths in the file resolve against this directory. */
  baseDir: string;
}

/** Reads and validates a config file; throws LogproxyError(CONFIG_INVALID). */
export async function loadConfigFile(file: string): Promise<LoadedConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new LogproxyError(
      ErrorCodes.CONFIG_INVALID,
      code === 'ENOENT'
        ? `${file}: no such file; pass --config with the path of your gateway.yaml, or --dev`
        : `${file}: cannot read (${code ?? String(err)})`,
      { cause: err },
    );
  }
  return parseConfig(text, { fileLabel: file, baseDir: path.dirname(path.resolve(file)) });
}

/** Validates config text; throws LogproxyError(CONFIG_INVALID) listing every mistake. */
export function parseConfig(text: string, options: ParseOptions): LoadedConfig {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const r = new Reader(options, lineCounter);
  for (const e of doc.errors) {
    r.problems.push(`${options.fileLabel}:${r.lineAt(e.pos[0])}: ${firstLine(e.message)}`);
  }
  if (r.problems.length === 0) {
    const root = doc.contents as YamlNode | null;
    if (root === null || (isScalar(root) && root.value === null)) {
      r.problems.push(`${options.fileLabel}:1: the file is empty; see examples/gateway.yaml`);
    } else {
      const config = readRoot(r, root);
      if (r.problems.length === 0 && config) return { config, warnings: r.warnings };
    }
  }
  throw new LogproxyError(ErrorCodes.CONFIG_INVALID, r.problems.join('\n'), {
    details: { problems: r.problems },
  });
}

function firstLine(s: string): string {
  return s.split('\n')[0]!.trim();
}

// ---------- the reader: typed access to YAML nodes with located error messages ----------

type Fields = Map<string, { key: YamlNode; value: YamlNode | null; line: number }>;

class Reader {
  readonly problems: string[] = [];
  readonly warnings: string[] = [];

  constructor(
    private readonly options: ParseOptions,
    private readonly lines: LineCounter,
  ) {}

  lineAt(offset: number): number {
    return this.lines.linePos(offset).line;
  }

  lineOf(node: YamlNode | null | undefined, fallback = 1): number {
    return node?.range ? this.lineAt(node.range[0]) : fallback;
  }

  fail(node: YamlNode | null | undefined, keyPath: string, message: string, line?: number): void {
    const at = line ?? this.lineOf(node);
    this.problems.push(`${this.options.fileLabel}:${at}: ${keyPath}: ${message}`);
  }

  resolvePath(p: string): string {
    return path.resolve(this.options.baseDir, p);
  }

  /** A mapping whose keys must all be in `known`; returns them with their nodes. */
  map(node: YamlNode | null, keyPath: string, known: readonly string[]): Fields | undefined {
    if (!isMap(node)) {
      this.fail(node, keyPath, `must be a mapping of keys (${known.join(', ')})`);
      return undefined;
    }
    const fields: Fields = new Map();
    for (const pair of (node as YAMLMap).items as Pair<YamlNode, YamlNode | null>[]) {
      const name = isScalar(pair.key) ? String(pair.key.value) : '';
      const line = this.lineOf(pair.key);
      if (!known.includes(name)) {
        const hint = closest(name, known);
        const tail = hint ? ` (did you mean ${hint}?)` : ` (known keys: ${known.join(', ')})`;
        this.fail(pair.key, join(keyPath, name), `unknown key${tail}`);
        continue;
      }
      fields.set(name, { key: pair.key, value: pair.value, line });
    }
    return fields;
  }

  /** A mapping with free keys (targets, headers). */
  entries(node: YamlNode | null, keyPath: string): Array<[string, YamlNode | null, number]> {
    if (!isMap(node)) {
      this.fail(node, keyPath, 'must be a mapping');
      return [];
    }
    return ((node as YAMLMap).items as Pair<YamlNode, YamlNode | null>[]).map((pair) => [
      isScalar(pair.key) ? String(pair.key.value) : '',
      pair.value,
      this.lineOf(pair.key),
    ]);
  }

  required(fields: Fields, name: string, parentPath: string, parent: YamlNode | null): boolean {
    if (fields.has(name) && fields.get(name)!.value !== null) return true;
    const line = fields.get(name)?.line ?? this.lineOf(parent);
    this.fail(null, join(parentPath, name), 'missing required key', line);
    return false;
  }

  string(fields: Fields, name: string, keyPath: string): string | undefined {
    const f = fields.get(name);
    if (!f) return undefined;
    if (!isScalar(f.value) || typeof f.value.value !== 'string' || f.value.value === '') {
      this.fail(f.value, join(keyPath, name), 'must be a non-empty string', f.line);
      return undefined;
    }
    return f.value.value;
  }

  number(fields: Fields, name: string, keyPath: string, min: number, int: boolean) {
    const f = fields.get(name);
    if (!f) return undefined;
    const v = isScalar(f.value) ? f.value.value : undefined;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || (int && !Number.isInteger(v))) {
      const what = int ? 'an integer' : 'a number';
      this.fail(f.value, join(keyPath, name), `must be ${what} >= ${min}`, f.line);
      return undefined;
    }
    return v;
  }

  boolean(fields: Fields, name: string, keyPath: string): boolean | undefined {
    const f = fields.get(name);
    if (!f) return undefined;
    if (!isScalar(f.value) || typeof f.value.value !== 'boolean') {
      this.fail(f.value, join(keyPath, name), 'must be true or false', f.line);
      return undefined;
    }
    return f.value.value;
  }

  duration(fields: Fields, name: string, keyPath: string): number | undefined {
    const f = fields.get(name);
    if (!f) return undefined;
    return this.durationNode(f.value, join(keyPath, name), f.line);
  }

  durationNode(node: YamlNode | null, keyPath: string, line?: number): number | undefined {
    const v = isScalar(node) ? node.value : undefined;
    try {
      if (typeof v !== 'string') throw new DurationSyntaxError(String(v ?? ''));
      const ms = parseDuration(v);
      if (ms <= 0) {
        this.fail(node, keyPath, 'must be longer than zero', line);
        return undefined;
      }
      return ms;
    } catch (err) {
      if (!(err instanceof DurationSyntaxError)) throw err;
      const shown = v === undefined || v === null ? 'this' : `"${String(v)}"`;
      this.fail(
        node,
        keyPath,
        `${shown} is not a duration; write a number with a unit, e.g. 30s, 15m, 1h30m`,
        line,
      );
      return undefined;
    }
  }

  stringList(fields: Fields, name: string, keyPath: string): string[] | undefined {
    const f = fields.get(name);
    if (!f) return undefined;
    const node = f.value;
    if (isScalar(node) && typeof node.value === 'string' && node.value !== '') return [node.value];
    if (!isSeq(node)) {
      this.fail(node, join(keyPath, name), 'must be a list of strings', f.line);
      return undefined;
    }
    const out: string[] = [];
    node.items.forEach((item, i) => {
      const n = item as YamlNode;
      if (!isScalar(n) || typeof n.value !== 'string' || n.value === '') {
        this.fail(n, `${join(keyPath, name)}[${i}]`, 'must be a non-empty string');
      } else out.push(n.value);
    });
    return out;
  }
}

function join(parent: string, name: string): string {
  return parent ? `${parent}.${name}` : name;
}

/** The known key nearest to a misspelt one, when it is plausibly a typo. */
function closest(input: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const k of known) {
    const d = editDistance(input.toLowerCase(), k);
    if (d < bestDistance) [best, bestDistance] = [k, d];
  }
  return bestDistance <= Math.max(2, Math.floor(input.length / 3)) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + cost);
    }
    prev = row;
  }
  return prev[b.length]!;
}

// ---------- sections ----------

const ROOT_KEYS = [
  'listen',
  'public_url',
  'tls',
  'auth',
  'admins',
  'session',
  'audit',
  'log',
  'targets',
] as const;

function readRoot(r: Reader, root: YamlNode): GatewayConfig | undefined {
  const f = r.map(root, '', ROOT_KEYS);
  if (!f) return undefined;
  r.required(f, 'auth', '', root);
  r.required(f, 'targets', '', root);

  const listenText = r.string(f, 'listen', '');
  const listen = listenText === undefined ? DEFAULT_LISTEN : parseListen(r, f, listenText);
  const publicUrl = readPublicUrl(r, f);
  const tls = readTls(r, f);
  const auth = f.get('auth')?.value ? readAuth(r, f.get('auth')!.value) : undefined;
  const admins = r.stringList(f, 'admins', '') ?? [];
  const session = readDefaultSession(r, f.get('session')?.value);
  const audit = readAudit(r, f.get('audit')?.value);
  const log = readLog(r, f.get('log')?.value);
  const targets = f.get('targets')?.value
    ? readTargets(r, f.get('targets')!.value, session ?? DEFAULT_SESSION)
    : {};

  if (!listen || !auth || !session || !audit || !log) return undefined;
  const config: GatewayConfig = { listen, auth, admins, session, audit, log, targets };
  if (publicUrl) config.publicUrl = publicUrl;
  if (tls) config.tls = tls;
  return config;
}

function parseListen(r: Reader, f: Fields, text: string): GatewayConfig['listen'] | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) {
    r.fail(f.get('listen')!.value, 'listen', `"${text}" must be HOST:PORT, e.g. 127.0.0.1:7480`);
    return undefined;
  }
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

function readPublicUrl(r: Reader, f: Fields): string | undefined {
  const text = r.string(f, 'public_url', '');
  if (text === undefined) return undefined;
  let url: URL | undefined;
  try {
    url = new URL(text);
  } catch {
    url = undefined;
  }
  if (!url || !/^https?:$/.test(url.protocol) || url.search || url.hash) {
    r.fail(f.get('public_url')!.value, 'public_url', 'must be an http(s) URL without query');
    return undefined;
  }
  return url.href.replace(/\/+$/, '');
}

function readTls(r: Reader, f: Fields): GatewayConfig['tls'] {
  const node = f.get('tls')?.value;
  if (node === undefined) return undefined;
  const t = r.map(node, 'tls', ['cert', 'key']);
  if (!t) return undefined;
  const ok = r.required(t, 'cert', 'tls', node) && r.required(t, 'key', 'tls', node);
  const cert = r.string(t, 'cert', 'tls');
  const key = r.string(t, 'key', 'tls');
  if (!ok || !cert || !key) return undefined;
  return { certFile: r.resolvePath(cert), keyFile: r.resolvePath(key) };
}

const AUTH_KEYS = [
  'issuer',
  'audience',
  'client_id',
  'algorithms',
  'clock_tolerance',
  'introspection',
  'dev',
] as const;

function readAuth(r: Reader, node: YamlNode | null): AuthConfig | undefined {
  const f = r.map(node, 'auth', AUTH_KEYS);
  if (!f) return undefined;
  r.required(f, 'audience', 'auth', node);
  const issuer = r.string(f, 'issuer', 'auth');
  const audience = r.string(f, 'audience', 'auth');
  const clientId = r.string(f, 'client_id', 'auth') ?? DEFAULT_CLIENT_ID;
  const algorithms = r.stringList(f, 'algorithms', 'auth') ?? DEFAULT_ALGORITHMS;
  const tolMs = r.duration(f, 'clock_tolerance', 'auth');
  const devNode = f.get('dev')?.value;
  const dev = devNode === undefined ? undefined : readDev(r, devNode);

  if (issuer !== undefined) checkUrl(r, f, 'issuer', 'auth.issuer');
  if (!f.has('issuer') && !f.has('dev')) {
    r.fail(node, 'auth', 'needs issuer (your OIDC provider) or dev (the embedded provider)');
  }
  if (algorithms.some((a) => a.toLowerCase() === 'none' || a.startsWith('HS'))) {
    r.fail(f.get('algorithms')?.value, 'auth.algorithms', 'none and HS* are never accepted');
  }
  if (issuer && dev) {
    r.warnings.push('auth.issuer is ignored while auth.dev runs the embedded provider');
  }
  const introspection = readIntrospection(r, f.get('introspection')?.value);
  if (!audience || (dev === undefined && devNode !== undefined)) return undefined;

  const auth: AuthConfig = {
    audience,
    clientId,
    algorithms,
    clockToleranceS: tolMs === undefined ? DEFAULT_CLOCK_TOLERANCE_S : tolMs / 1000,
  };
  if (dev) auth.dev = dev;
  else if (issuer) auth.issuer = issuer.replace(/\/+$/, '');
  if (introspection) auth.introspection = introspection;
  return auth;
}

function checkUrl(r: Reader, f: Fields, name: string, keyPath: string): void {
  const text = (f.get(name)!.value as { value?: unknown }).value;
  try {
    if (!/^https?:$/.test(new URL(String(text)).protocol)) throw new Error('scheme');
  } catch {
    r.fail(f.get(name)!.value, keyPath, `"${String(text)}" must be an http(s) URL`);
  }
}

function readIntrospection(r: Reader, node: YamlNode | null | undefined) {
  if (node === undefined) return undefined;
  const f = r.map(node, 'auth.introspection', ['url', 'client_id', 'client_secret']);
  if (!f) return undefined;
  const names = ['url', 'client_id', 'client_secret'];
  const ok = names.map((n) => r.required(f, n, 'auth.introspection', node)).every(Boolean);
  if (f.has('url')) checkUrl(r, f, 'url', 'auth.introspection.url');
  const url = r.string(f, 'url', 'auth.introspection');
  const clientId = r.string(f, 'client_id', 'auth.introspection');
  const clientSecret = r.string(f, 'client_secret', 'auth.introspection');
  if (!ok || !url || !clientId || !clientSecret) return undefined;
  return { url, clientId, clientSecret };
}

const DEV_KEYS = [
  'users',
  'auto_approve',
  'access_token_ttl',
  'refresh_token_ttl',
  'device_code_ttl',
  'poll_interval',
  'data_dir',
] as const;

function readDev(r: Reader, node: YamlNode | null): DevAuthConfig | undefined {
  const p = 'auth.dev';
  const f = r.map(node, p, DEV_KEYS);
  if (!f) return undefined;
  const before = r.problems.length;
  r.required(f, 'users', p, node);
  const users = r.stringList(f, 'users', p) ?? [];
  const autoApprove = r.string(f, 'auto_approve', p);
  if (autoApprove !== undefined && !users.includes(autoApprove)) {
    r.fail(f.get('auto_approve')!.value, `${p}.auto_approve`, `must be one of users`);
  }
  const pollMs = r.duration(f, 'poll_interval', p);
  const dev: DevAuthConfig = {
    users,
    accessTokenTtlMs: r.duration(f, 'access_token_ttl', p) ?? DEFAULT_DEV.accessTokenTtlMs,
    refreshTokenTtlMs: r.duration(f, 'refresh_token_ttl', p) ?? DEFAULT_DEV.refreshTokenTtlMs,
    deviceCodeTtlMs: r.duration(f, 'device_code_ttl', p) ?? DEFAULT_DEV.deviceCodeTtlMs,
    pollIntervalS: pollMs === undefined ? DEFAULT_DEV.pollIntervalS : Math.max(1, pollMs / 1000),
    dataDir: r.resolvePath(r.string(f, 'data_dir', p) ?? 'idp-data'),
  };
  if (autoApprove) dev.autoApprove = autoApprove;
  return r.problems.length === before ? dev : undefined;
}

const SESSION_KEYS = [
  'idle_timeout',
  'max_lifetime',
  'heartbeat_interval',
  'heartbeat_misses_allowed',
  'warn_before',
  'silent_resume',
] as const;

/** Reads session fields; only those present are returned. */
function readSessionFields(
  r: Reader,
  node: YamlNode | null,
  keyPath: string,
): { fields: Partial<SessionPolicyConfig>; lines: Record<string, number> } | undefined {
  const f = r.map(node, keyPath, SESSION_KEYS);
  if (!f) return undefined;
  const out: Partial<SessionPolicyConfig> = {};
  const lines: Record<string, number> = {};
  const set = <K extends keyof SessionPolicyConfig>(
    key: K,
    yamlKey: string,
    v: SessionPolicyConfig[K] | undefined,
  ) => {
    if (v === undefined) return;
    out[key] = v;
    lines[key] = f.get(yamlKey)!.line;
  };
  set('idleTimeoutMs', 'idle_timeout', r.duration(f, 'idle_timeout', keyPath));
  set('maxLifetimeMs', 'max_lifetime', r.duration(f, 'max_lifetime', keyPath));
  set('heartbeatIntervalMs', 'heartbeat_interval', r.duration(f, 'heartbeat_interval', keyPath));
  set(
    'heartbeatMissesAllowed',
    'heartbeat_misses_allowed',
    r.number(f, 'heartbeat_misses_allowed', keyPath, 1, true),
  );
  set('silentResume', 'silent_resume', r.boolean(f, 'silent_resume', keyPath));
  const warn = f.get('warn_before');
  if (warn) {
    const node = warn.value;
    const items = isSeq(node) ? (node.items as YamlNode[]) : [node];
    const ms = items.map((n, i) =>
      r.durationNode(n, `${keyPath}.warn_before${isSeq(node) ? `[${i}]` : ''}`, warn.line),
    );
    if (ms.every((v) => v !== undefined)) set('warnBeforeMs', 'warn_before', descending(ms));
  }
  return { fields: out, lines };
}

function descending(values: number[]): number[] {
  return [...new Set(values)].sort((a, b) => b - a);
}

function readDefaultSession(r: Reader, node: YamlNode | null | undefined) {
  if (node === undefined) return { ...DEFAULT_SESSION };
  const read = readSessionFields(r, node, 'session');
  if (!read) return undefined;
  const s: SessionPolicyConfig = { ...DEFAULT_SESSION, ...read.fields };
  if (s.maxLifetimeMs < s.idleTimeoutMs) {
    r.fail(node, 'session.max_lifetime', 'must not be shorter than session.idle_timeout');
  }
  if (s.heartbeatIntervalMs >= s.idleTimeoutMs) {
    r.fail(node, 'session.heartbeat_interval', 'must be shorter than session.idle_timeout');
  }
  return s;
}

function readAudit(r: Reader, node: YamlNode | null | undefined) {
  if (node === undefined) return { file: '-' };
  const f = r.map(node, 'audit', ['file']);
  if (!f) return undefined;
  if (!r.required(f, 'file', 'audit', node)) return undefined;
  const file = r.string(f, 'file', 'audit');
  if (file === undefined) return undefined;
  return { file: file === '-' ? '-' : r.resolvePath(file) };
}

function readLog(r: Reader, node: YamlNode | null | undefined): GatewayConfig['log'] | undefined {
  if (node === undefined) return { level: 'info' };
  const f = r.map(node, 'log', ['level']);
  if (!f) return undefined;
  const level = r.string(f, 'level', 'log') ?? 'info';
  if (!(LOG_LEVELS as readonly string[]).includes(level)) {
    r.fail(f.get('level')!.value, 'log.level', `must be one of ${LOG_LEVELS.join(', ')}`);
    return undefined;
  }
  return { level: level as GatewayConfig['log']['level'] };
}

// ---------- targets ----------

const TARGET_KEYS = ['description', 'source', 'allow', 'session', 'activity'] as const;

function readTargets(r: Reader, node: YamlNode | null, defaults: SessionPolicyConfig) {
  const targets: Record<string, TargetConfig> = {};
  for (const [name, value, line] of r.entries(node, 'targets')) {
    const p = `targets.${name}`;
    if (!TARGET_NAME.test(name)) {
      r.fail(null, p, 'a target name is letters, digits, ".", "_" or "-" (max 63)', line);
      continue;
    }
    const t = readTarget(r, name, value, defaults, line);
    if (t) targets[name] = t;
  }
  return targets;
}

function readTarget(
  r: Reader,
  name: string,
  node: YamlNode | null,
  defaults: SessionPolicyConfig,
  line: number,
): TargetConfig | undefined {
  const p = `targets.${name}`;
  if (node === null) {
    r.fail(null, p, 'needs at least source and allow', line);
    return undefined;
  }
  const f = r.map(node, p, TARGET_KEYS);
  if (!f) return undefined;
  const before = r.problems.length;
  r.required(f, 'source', p, node);
  r.required(f, 'allow', p, node);
  const description = r.string(f, 'description', p);
  const allow = r.stringList(f, 'allow', p) ?? [];
  const source = f.get('source')?.value ? readSource(r, f.get('source')!.value, p) : undefined;
  const activity = r.string(f, 'activity', p) ?? 'requests';
  if (activity !== 'requests' && activity !== 'bytes') {
    r.fail(f.get('activity')!.value, `${p}.activity`, 'must be requests or bytes');
  }

  let session: Partial<SessionPolicyConfig> = {};
  const sessionNode = f.get('session')?.value;
  if (sessionNode !== undefined) {
    const read = readSessionFields(r, sessionNode, `${p}.session`);
    if (read) {
      session = read.fields;
      for (const key of loosenedFields(defaults, session)) {
        r.fail(
          null,
          `${p}.session.${SNAKE[key]}`,
          LOOSEN_MESSAGE[key] ?? 'a target may only tighten the defaults',
          read.lines[key],
        );
      }
    }
  }
  if (!source || r.problems.length !== before) return undefined;
  const target: TargetConfig = {
    name,
    source,
    allow,
    session,
    activity: activity as TargetConfig['activity'],
  };
  if (description) target.description = description;
  return target;
}

const SNAKE: Record<keyof SessionPolicyConfig, string> = {
  idleTimeoutMs: 'idle_timeout',
  maxLifetimeMs: 'max_lifetime',
  heartbeatIntervalMs: 'heartbeat_interval',
  heartbeatMissesAllowed: 'heartbeat_misses_allowed',
  warnBeforeMs: 'warn_before',
  silentResume: 'silent_resume',
};

const LOOSEN_MESSAGE: Partial<Record<keyof SessionPolicyConfig, string>> = {
  idleTimeoutMs: 'a target may only tighten the defaults: longer than session.idle_timeout',
  maxLifetimeMs: 'a target may only tighten the defaults: longer than session.max_lifetime',
  heartbeatIntervalMs:
    'a target may only tighten the defaults: longer than session.heartbeat_interval',
  heartbeatMissesAllowed:
    'a target may only tighten the defaults: more than session.heartbeat_misses_allowed',
};

const SOURCE_KEYS: Record<SourceConfig['type'], readonly string[]> = {
  file: ['type', 'paths'],
  http: ['type', 'url', 'headers', 'timeout'],
  demo: ['type', 'rate', 'history', 'seed'],
};

function readSource(r: Reader, node: YamlNode | null, targetPath: string) {
  const p = `${targetPath}.source`;
  const probe = r.map(node, p, [
    'type',
    'paths',
    'url',
    'headers',
    'timeout',
    'rate',
    'history',
    'seed',
  ]);
  if (!probe) return undefined;
  if (!r.required(probe, 'type', p, node)) return undefined;
  const type = r.string(probe, 'type', p);
  if (type === undefined) return undefined;
  if (!(type in SOURCE_KEYS)) {
    const types = Object.keys(SOURCE_KEYS).join(', ');
    r.fail(
      probe.get('type')!.value,
      `${p}.type`,
      `unknown source type "${type}" (one of ${types})`,
    );
    return undefined;
  }
  // Second pass with the keys this type knows, so a stray `url` on a file source is named.
  const f = r.map(node, p, SOURCE_KEYS[type as SourceConfig['type']]);
  if (!f) return undefined;
  if (type === 'file') {
    if (!r.required(f, 'paths', p, node)) return undefined;
    const paths = r.stringList(f, 'paths', p);
    if (!paths) return undefined;
    if (paths.length === 0) r.fail(f.get('paths')!.value, `${p}.paths`, 'needs at least one path');
    return { type: 'file', paths: paths.map((x) => r.resolvePath(x)) } satisfies SourceConfig;
  }
  if (type === 'http') {
    if (!r.required(f, 'url', p, node)) return undefined;
    checkUrl(r, f, 'url', `${p}.url`);
    const url = r.string(f, 'url', p);
    const headers = readHeaders(r, f.get('headers')?.value, `${p}.headers`);
    const timeoutMs = r.duration(f, 'timeout', p) ?? DEFAULT_HTTP_TIMEOUT_MS;
    if (!url || !headers) return undefined;
    return { type: 'http', url, headers, timeoutMs } satisfies SourceConfig;
  }
  return {
    type: 'demo',
    ratePerSec: r.number(f, 'rate', p, 0, false) ?? DEFAULT_DEMO.ratePerSec,
    historyLines: r.number(f, 'history', p, 0, true) ?? DEFAULT_DEMO.historyLines,
    seed: r.number(f, 'seed', p, 0, true) ?? DEFAULT_DEMO.seed,
  } satisfies SourceConfig;
}

function readHeaders(r: Reader, node: YamlNode | null | undefined, p: string) {
  if (node === undefined) return {};
  const headers: Record<string, string> = {};
  for (const [name, value, line] of r.entries(node, p)) {
    const v = isScalar(value) ? value.value : undefined;
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) {
      r.fail(null, `${p}.${name}`, 'is not a valid header name', line);
    } else if (typeof v !== 'string' && typeof v !== 'number') {
      r.fail(value, `${p}.${name}`, 'must be a string', line);
    } else headers[name.toLowerCase()] = String(v);
  }
  return headers;
}
