/**
 * Entry of `logproxy-gateway`: parse flags, load (or build, with --dev) the config, start
 * the server, stop cleanly on SIGTERM/SIGINT. Returns the exit code; bin/ sets it.
 * Exit codes: 0 stopped cleanly (or --check passed), 1 failed at run time, 2 bad flags or
 * an invalid config.
 */
import { mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { isLogproxyError } from '../util/errors.js';
import {
  DEFAULT_ALGORITHMS,
  DEFAULT_CLIENT_ID,
  DEFAULT_CLOCK_TOLERANCE_S,
  DEFAULT_DEMO,
  DEFAULT_DEV,
  DEFAULT_LISTEN,
  DEFAULT_SESSION,
  loadConfigFile,
} from './config.js';
import type { GatewayConfig, TargetConfig } from './types.js';

const EXIT_OK = 0;
const EXIT_FAILED = 1;
const EXIT_USAGE = 2;

const HELP = `Usage: logproxy-gateway (--config FILE | --dev) [options]

The logproxy gateway: signs people in (OIDC), opens time-boxed sessions on log targets,
enforces idle timeouts and lifetimes, audits every session, and serves logs to the
logproxy CLI and to third-party clients (docs/api.md).

Options:
  -c, --config FILE        gateway.yaml to run (docs/gateway.md lists every key)
      --check              validate the config and exit (0 valid, 2 invalid)
      --dev                run with built-in defaults and the embedded development
                           identity provider (users alice and bob; alice is admin)
      --listen HOST:PORT   override listen (dev default 127.0.0.1:7480; port 0 = any)
      --auto-approve USER  dev: approve every device code as USER at once (scripts)
      --data-dir DIR       dev: where keys, grants and the audit file live
                           (default $XDG_STATE_HOME/logproxy-gateway/dev)
      --target-file NAME=GLOB
                           dev: also serve files matching GLOB as target NAME
                           (repeatable)
      --log-level LEVEL    debug, info, warn or error (default info)
  -V, --version            print the version
  -h, --help               print this help

Examples:
  $ logproxy-gateway --dev
  $ logproxy-gateway --dev --auto-approve alice --target-file app='/var/log/app/*.log'
  $ logproxy-gateway --config /etc/logproxy/gateway.yaml --check
  $ logproxy-gateway --config /etc/logproxy/gateway.yaml

Logs are JSON lines on stderr; the audit trail goes to audit.file. SIGTERM or Ctrl-C stops
the gateway cleanly: sessions end as gateway_shutdown and the audit file is flushed.
`;

interface Flags {
  config?: string;
  check: boolean;
  dev: boolean;
  listen?: string;
  autoApprove?: string;
  dataDir?: string;
  targetFiles: string[];
  logLevel?: string;
  help: boolean;
  version: boolean;
}

function parseFlags(argv: string[]): Flags {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      config: { type: 'string', short: 'c' },
      check: { type: 'boolean', default: false },
      dev: { type: 'boolean', default: false },
      listen: { type: 'string' },
      'auto-approve': { type: 'string' },
      'data-dir': { type: 'string' },
      'target-file': { type: 'string', multiple: true, default: [] },
      'log-level': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
      version: { type: 'boolean', short: 'V', default: false },
    },
  });
  const flags: Flags = {
    check: values.check,
    dev: values.dev,
    targetFiles: values['target-file'],
    help: values.help,
    version: values.version,
  };
  if (values.config !== undefined) flags.config = values.config;
  if (values.listen !== undefined) flags.listen = values.listen;
  if (values['auto-approve'] !== undefined) flags.autoApprove = values['auto-approve'];
  if (values['data-dir'] !== undefined) flags.dataDir = values['data-dir'];
  if (values['log-level'] !== undefined) flags.logLevel = values['log-level'];
  return flags;
}

class UsageError extends Error {}

export async function main(argv: string[]): Promise<number> {
  let flags: Flags;
  try {
    flags = parseFlags(argv);
    validateFlags(flags);
  } catch (err) {
    process.stderr.write(`logproxy-gateway: ${(err as Error).message}\n(run with --help)\n`);
    return EXIT_USAGE;
  }
  if (flags.help) {
    process.stdout.write(HELP);
    return EXIT_OK;
  }
  if (flags.version) {
    process.stdout.write(`logproxy-gateway ${await packageVersion()}\n`);
    return EXIT_OK;
  }

  let config: GatewayConfig;
  let notes: string[];
  try {
    ({ config, notes } = await buildConfig(flags));
  } catch (err) {
    if (isLogproxyError(err) || err instanceof UsageError) {
      process.stderr.write(`logproxy-gateway: invalid configuration\n${(err as Error).message}\n`);
      return EXIT_USAGE;
    }
    throw err;
  }
  if (flags.check) {
    try {
      const { readTlsFiles } = await import('./server.js');
      readTlsFiles(config);
    } catch (err) {
      process.stderr.write(`logproxy-gateway: invalid configuration\n${(err as Error).message}\n`);
      return EXIT_USAGE;
    }
    process.stdout.write(
      `${flags.config}: valid (${Object.keys(config.targets).length} targets)\n`,
    );
    for (const n of notes) process.stderr.write(`warning: ${n}\n`);
    return EXIT_OK;
  }
  return run(config, notes, flags);
}

/** The version in package.json (bin/ runs dist/src/gateway/main.js, three levels below). */
async function packageVersion(): Promise<string> {
  const { readFile } = await import('node:fs/promises');
  const file = new URL('../../../package.json', import.meta.url);
  return (JSON.parse(await readFile(file, 'utf8')) as { version: string }).version;
}

function validateFlags(flags: Flags): void {
  if (flags.help || flags.version) return;
  if (Boolean(flags.config) === flags.dev) {
    throw new UsageError('pass either --config FILE or --dev');
  }
  if (flags.check && !flags.config) throw new UsageError('--check needs --config FILE');
  const devOnly = [
    ['--auto-approve', flags.autoApprove],
    ['--data-dir', flags.dataDir],
    ['--target-file', flags.targetFiles.length ? 'x' : undefined],
  ] as const;
  for (const [name, value] of devOnly) {
    if (value !== undefined && !flags.dev) {
      throw new UsageError(`${name} works with --dev only; set it in the config file instead`);
    }
  }
  if (flags.logLevel && !['debug', 'info', 'warn', 'error'].includes(flags.logLevel)) {
    throw new UsageError('--log-level must be debug, info, warn or error');
  }
}

async function buildConfig(flags: Flags): Promise<{ config: GatewayConfig; notes: string[] }> {
  let config: GatewayConfig;
  let notes: string[] = [];
  if (flags.config) {
    const loaded = await loadConfigFile(flags.config);
    config = loaded.config;
    notes = loaded.warnings;
  } else {
    config = devConfig(flags);
  }
  if (flags.listen) config.listen = parseListenFlag(flags.listen);
  if (flags.logLevel) config.log = { level: flags.logLevel as GatewayConfig['log']['level'] };
  return { config, notes };
}

function parseListenFlag(text: string): GatewayConfig['listen'] {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(text);
  if (!m || Number(m[3]) > 65535) {
    throw new UsageError(`--listen "${text}" must be HOST:PORT, e.g. 127.0.0.1:7480`);
  }
  return { host: m[1] ?? (m[2] || '127.0.0.1'), port: Number(m[3]) };
}

/** `--dev`: a gateway that works on a laptop with nothing configured. */
export function devConfig(flags: {
  autoApprove?: string;
  dataDir?: string;
  targetFiles?: string[];
}): GatewayConfig {
  const users = ['alice', 'bob'];
  if (flags.autoApprove && !users.includes(flags.autoApprove)) {
    throw new UsageError(`--auto-approve must be one of ${users.join(', ')}`);
  }
  const stateHome = process.env.XDG_STATE_HOME || path.join(os.homedir(), '.local', 'state');
  const dataDir = path.resolve(flags.dataDir ?? path.join(stateHome, 'logproxy-gateway', 'dev'));
  const targets: Record<string, TargetConfig> = {
    demo: {
      name: 'demo',
      description: 'Synthetic application logs generated by the gateway',
      source: { type: 'demo', ...DEFAULT_DEMO },
      allow: ['*'],
      session: {},
      activity: 'requests',
    },
  };
  for (const spec of flags.targetFiles ?? []) {
    const eq = spec.indexOf('=');
    const name = spec.slice(0, eq);
    if (eq < 1 || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(name) || name in targets) {
      throw new UsageError(`--target-file "${spec}" must be NAME=GLOB with a new target name`);
    }
    targets[name] = {
      name,
      description: `Files matching ${spec.slice(eq + 1)}`,
      source: { type: 'file', paths: [path.resolve(spec.slice(eq + 1))] },
      allow: ['*'],
      session: {},
      activity: 'requests',
    };
  }
  const dev = {
    users,
    ...DEFAULT_DEV,
    dataDir: path.join(dataDir, 'idp'),
    ...(flags.autoApprove ? { autoApprove: flags.autoApprove } : {}),
  };
  return {
    listen: { ...DEFAULT_LISTEN },
    auth: {
      audience: 'urn:logproxy:dev-gateway',
      clientId: DEFAULT_CLIENT_ID,
      algorithms: DEFAULT_ALGORITHMS,
      clockToleranceS: DEFAULT_CLOCK_TOLERANCE_S,
      dev,
    },
    admins: ['alice'],
    session: { ...DEFAULT_SESSION },
    audit: { file: path.join(dataDir, 'audit.jsonl') },
    log: { level: 'info' },
    targets,
  };
}

async function run(config: GatewayConfig, notes: string[], flags: Flags): Promise<number> {
  const { createLogger } = await import('./logger.js');
  const { createGateway } = await import('./server.js');
  const logger = createLogger(config.log.level);
  for (const n of notes) logger.warn({}, n);
  if (config.auth.dev) {
    mkdirSync(path.dirname(config.auth.dev.dataDir), { recursive: true, mode: 0o700 });
  }

  let gateway: Awaited<ReturnType<typeof createGateway>>;
  try {
    gateway = await createGateway(config, { logger });
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    process.stderr.write(`logproxy-gateway: ${message}\n`);
    return isLogproxyError(err) ? EXIT_USAGE : EXIT_FAILED;
  }
  if (flags.dev) printDevBanner(gateway.url, gateway.issuer, config);

  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  logger.info({ signal }, 'stopping');
  await gateway.close();
  return EXIT_OK;
}

function printDevBanner(url: string, issuer: string, config: GatewayConfig): void {
  const dev = config.auth.dev!;
  const lines = [
    '',
    'logproxy-gateway: DEVELOPMENT MODE (embedded identity provider; never use in production)',
    `  gateway      ${url}`,
    `  discovery    ${url}/.well-known/logproxy`,
    `  issuer       ${issuer}`,
    `  approve at   ${issuer}/device`,
    `  users        ${dev.users.join(', ')} (admins: ${config.admins.join(', ')})` +
      (dev.autoApprove ? `; every device code is approved as ${dev.autoApprove}` : ''),
    `  targets      ${Object.keys(config.targets).join(', ')}`,
    `  audit file   ${config.audit.file}`,
    `  data dir     ${path.dirname(dev.dataDir)}`,
    '',
    `  sign in:     logproxy login --gateway ${url}`,
    '',
  ];
  process.stderr.write(`${lines.join('\n')}\n`);
}
