import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { loadConfigFile, parseConfig } from '../../src/gateway/config.js';
import { effectivePolicy } from '../../src/gateway/policy.js';
import { ErrorCodes, isLogproxyError } from '../../src/util/errors.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const opts = { fileLabel: 'gateway.yaml', baseDir: '/etc/logproxy' };

/** The config of issue 2, verbatim. */
const ISSUE_EXAMPLE = `listen: 127.0.0.1:7480
auth:
  issuer: https://idp.example.com      # OIDC discovery + JWKS; or use dev below
  audience: https://logs.example.com   # required "aud" of access tokens
  client_id: logproxy-cli              # public client the CLI uses
  dev:                                 # embedded provider; development only
    users: [alice, bob]
    auto_approve: alice                # approve every device code as alice (scripts, demo)
    access_token_ttl: 5m
    refresh_token_ttl: 12h
    data_dir: ./idp-data               # keys and grants survive restarts
admins: [alice]
session:                               # defaults; a target may only tighten them
  idle_timeout: 15m
  max_lifetime: 12h
  heartbeat_interval: 30s
  warn_before: [5m, 1m]
audit: { file: ./audit.jsonl }         # "-" for stdout
targets:
  prod-logs:
    source: { type: file, paths: ["/var/log/app/*.log"] }
    allow: [alice]
    session: { idle_timeout: 5m, max_lifetime: 1h }
`;

function problemsOf(text: string): string[] {
  try {
    parseConfig(text, opts);
  } catch (err) {
    assert.ok(isLogproxyError(err, ErrorCodes.CONFIG_INVALID), String(err));
    return err.message.split('\n');
  }
  assert.fail('the config loaded but should not have');
}

describe('gateway config', () => {
  it('loads the example of issue 2 as is, with defaults and resolved paths', () => {
    const { config, warnings } = parseConfig(ISSUE_EXAMPLE, opts);
    assert.deepEqual(config.listen, { host: '127.0.0.1', port: 7480 });
    assert.equal(config.auth.audience, 'https://logs.example.com');
    assert.equal(config.auth.clientId, 'logproxy-cli');
    assert.equal(config.auth.issuer, undefined, 'dev mode: the embedded provider is the issuer');
    assert.match(warnings.join('\n'), /auth\.issuer is ignored/);
    assert.deepEqual(config.auth.algorithms, ['RS256', 'ES256', 'PS256', 'EdDSA']);
    assert.equal(config.auth.clockToleranceS, 30);
    assert.deepEqual(config.auth.dev, {
      users: ['alice', 'bob'],
      autoApprove: 'alice',
      accessTokenTtlMs: 300_000,
      refreshTokenTtlMs: 43_200_000,
      deviceCodeTtlMs: 600_000,
      pollIntervalS: 5,
      dataDir: '/etc/logproxy/idp-data',
    });
    assert.deepEqual(config.admins, ['alice']);
    assert.deepEqual(config.session, {
      idleTimeoutMs: 900_000,
      maxLifetimeMs: 43_200_000,
      heartbeatIntervalMs: 30_000,
      warnBeforeMs: [300_000, 60_000],
      heartbeatMissesAllowed: 3,
      silentResume: false,
    });
    assert.deepEqual(config.audit, { file: '/etc/logproxy/audit.jsonl' });
    assert.deepEqual(config.log, { level: 'info' });
    const t = config.targets['prod-logs']!;
    assert.deepEqual(t.source, { type: 'file', paths: ['/var/log/app/*.log'] });
    assert.deepEqual(t.allow, ['alice']);
    assert.equal(t.activity, 'requests');
    assert.deepEqual(t.session, { idleTimeoutMs: 300_000, maxLifetimeMs: 3_600_000 });
    const p = effectivePolicy(config.session, t);
    assert.equal(p.idleTimeoutMs, 300_000);
    assert.equal(p.maxLifetimeMs, 3_600_000);
    assert.equal(p.heartbeatIntervalMs, 30_000);
  });

  it('loads examples/gateway.yaml from the repository', async () => {
    const { config } = await loadConfigFile(path.join(REPO, 'examples/gateway.yaml'));
    assert.deepEqual(Object.keys(config.targets).sort(), ['app-logs', 'demo']);
    const source = config.targets['app-logs']!.source;
    assert.equal(source.type, 'file');
    assert.deepEqual(source.type === 'file' && source.paths, [
      path.join(REPO, 'examples/logs/*.log'),
    ]);
    assert.deepEqual(config.targets.demo!.source, {
      type: 'demo',
      ratePerSec: 2,
      historyLines: 200,
      seed: 7,
    });
  });

  it('names the key and line of a misspelt key, with a suggestion', () => {
    const text = ISSUE_EXAMPLE.replace(
      'session: { idle_timeout: 5m, max_lifetime: 1h }',
      'session:\n      idle_timout: 5m',
    );
    const problems = problemsOf(text);
    assert.deepEqual(problems, [
      'gateway.yaml:24: targets.prod-logs.session.idle_timout: unknown key ' +
        '(did you mean idle_timeout?)',
    ]);
  });

  it('reports every mistake at once, each with its line', () => {
    const text = [
      'listen: 127.0.0.1:99999', // 1
      'auth:', // 2
      '  dev: { users: [alice] }', // 3
      'admins: 5', // 4
      'session:', // 5
      '  idle_timeout: 15', // 6
      '  warn_before: [5m, soon]', // 7
      'targets:', // 8
      '  a:', // 9
      '    source: { type: ftp }', // 10
      '    allow: [alice]', // 11
      '  b:', // 12
      '    source: { type: file, paths: [x], url: "http://x" }', // 13
      '    allow: [alice]', // 14
      '    sesion: {}', // 15
      '',
    ].join('\n');
    assert.deepEqual(problemsOf(text), [
      'gateway.yaml:1: listen: "127.0.0.1:99999" must be HOST:PORT, e.g. 127.0.0.1:7480',
      'gateway.yaml:3: auth.audience: missing required key',
      'gateway.yaml:4: admins: must be a list of strings',
      'gateway.yaml:6: session.idle_timeout: "15" is not a duration; write a number with a ' +
        'unit, e.g. 30s, 15m, 1h30m',
      'gateway.yaml:7: session.warn_before[1]: "soon" is not a duration; write a number with ' +
        'a unit, e.g. 30s, 15m, 1h30m',
      'gateway.yaml:10: targets.a.source.type: unknown source type "ftp" (one of file, http, ' +
        'demo)',
      'gateway.yaml:15: targets.b.sesion: unknown key (did you mean session?)',
      'gateway.yaml:13: targets.b.source.url: unknown key (known keys: type, paths)',
    ]);
  });

  it('refuses a target policy that loosens the defaults', () => {
    const text = ISSUE_EXAMPLE.replace('idle_timeout: 5m, max_lifetime: 1h', 'idle_timeout: 1h');
    assert.deepEqual(problemsOf(text), [
      'gateway.yaml:23: targets.prod-logs.session.idle_timeout: a target may only tighten ' +
        'the defaults: longer than session.idle_timeout',
    ]);
  });

  it('needs an issuer or the embedded provider, and a source and allow list per target', () => {
    const text = 'auth: { audience: x }\ntargets:\n  t:\n    description: d\n';
    assert.deepEqual(problemsOf(text), [
      'gateway.yaml:1: auth: needs issuer (your OIDC provider) or dev (the embedded provider)',
      'gateway.yaml:4: targets.t.source: missing required key',
      'gateway.yaml:4: targets.t.allow: missing required key',
    ]);
  });

  it('refuses wrong types, never-safe algorithms and YAML syntax errors', () => {
    const base = 'auth: { issuer: https://idp, audience: a, algorithms: [RS256, HS256] }\n';
    assert.deepEqual(problemsOf(`${base}targets: {}\nlog: { level: loud }\n`), [
      'gateway.yaml:1: auth.algorithms: none and HS* are never accepted',
      'gateway.yaml:3: log.level: must be one of debug, info, warn, error',
    ]);
    const syntax = problemsOf('auth: { issuer: x\ntargets: [\n');
    assert.equal(syntax.length >= 1, true);
    assert.match(syntax[0]!, /^gateway\.yaml:\d+: /);
    assert.deepEqual(problemsOf(''), [
      'gateway.yaml:1: the file is empty; see examples/gateway.yaml',
    ]);
  });

  it('reads http and demo sources with their defaults, and an external issuer', () => {
    const text = `
listen: "[::1]:0"
public_url: https://logs.example.com/
tls: { cert: certs/c.pem, key: /k.pem }
auth: { issuer: https://idp.example.com/, audience: logs, clock_tolerance: 5s }
targets:
  api:
    source:
      type: http
      url: http://127.0.0.1:3100
      headers: { X-Scope-OrgID: tenant-1 }
    allow: ['*']
    activity: bytes
    session: { silent_resume: true, heartbeat_interval: 10s }
  demo:
    source: { type: demo }
    allow: [bob]
`;
    const { config } = parseConfig(text, opts);
    assert.deepEqual(config.listen, { host: '::1', port: 0 });
    assert.equal(config.publicUrl, 'https://logs.example.com');
    assert.deepEqual(config.tls, { certFile: '/etc/logproxy/certs/c.pem', keyFile: '/k.pem' });
    assert.equal(config.auth.issuer, 'https://idp.example.com');
    assert.equal(config.auth.clockToleranceS, 5);
    assert.deepEqual(config.targets.api!.source, {
      type: 'http',
      url: 'http://127.0.0.1:3100',
      headers: { 'x-scope-orgid': 'tenant-1' },
      timeoutMs: 30_000,
    });
    assert.equal(config.targets.api!.activity, 'bytes');
    assert.deepEqual(config.targets.api!.session, {
      silentResume: true,
      heartbeatIntervalMs: 10_000,
    });
    assert.deepEqual(config.targets.demo!.source, {
      type: 'demo',
      ratePerSec: 2,
      historyLines: 200,
      seed: 1,
    });
    assert.deepEqual(config.audit, { file: '-' });
  });

  it('tells the path when the file is missing', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'lp-config-'));
    try {
      await assert.rejects(loadConfigFile(path.join(dir, 'nope.yaml')), (err: Error) => {
        assert.ok(isLogproxyError(err, ErrorCodes.CONFIG_INVALID));
        assert.match(err.message, /nope\.yaml: no such file; pass --config/);
        return true;
      });
      const file = path.join(dir, 'g.yaml');
      await writeFile(file, 'auth: { dev: { users: [a] }, audience: x }\ntargets: {}\n');
      const { config } = await loadConfigFile(file);
      assert.equal(config.auth.dev!.dataDir, path.join(dir, 'idp-data'));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
