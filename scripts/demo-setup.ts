/**
 * What the demo sets up before it runs anything: a temporary directory holding the gateway's
 * config, its provider data, its audit file, the log file a target serves and the CLI's
 * config dir; a free loopback port; and the writer of numbered log lines.
 */
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

/** The demo's timings: short enough that the whole story fits in about a minute. */
export const DEMO_POLICY = {
  /** No traffic for this long ends a session; long enough to see logs flow first. */
  idleTimeoutS: 12,
  /** Warnings at 8 s and 4 s before the idle end: two visible, distinct warnings. */
  warnBeforeS: [8, 4],
  /** Frequent beats so warnings are announced within a couple of seconds of a threshold. */
  heartbeatS: 2,
  /** Longer than the whole demo needs per session, so only the idle timeout ends one. */
  maxLifetimeS: 45,
  /** How often the CLI polls the device flow: fast approval instead of 5 s per poll. */
  pollIntervalS: 1,
} as const;

export const FILE_TARGET = 'app-logs';
export const DEMO_TARGET = 'demo-logs';
export const DEMO_USER = 'alice';

export interface DemoDirs {
  root: string;
  gatewayConfig: string;
  idpData: string;
  audit: string;
  gatewayLog: string;
  logDir: string;
  logFile: string;
  /** LOGPROXY_CONFIG_DIR of every CLI child. */
  cliConfig: string;
  /** XDG homes of the children, so nothing lands in the person's own. */
  xdg: string;
}

export async function makeDemoDirs(): Promise<DemoDirs> {
  const root = await mkdtemp(path.join(os.tmpdir(), 'logproxy-demo-'));
  const dirs: DemoDirs = {
    root,
    gatewayConfig: path.join(root, 'gateway.yaml'),
    idpData: path.join(root, 'idp-data'),
    audit: path.join(root, 'audit.jsonl'),
    gatewayLog: path.join(root, 'gateway.log'),
    logDir: path.join(root, 'logs'),
    logFile: path.join(root, 'logs', 'app.log'),
    cliConfig: path.join(root, 'cli-config'),
    xdg: path.join(root, 'xdg'),
  };
  for (const d of [dirs.idpData, dirs.logDir, dirs.cliConfig, dirs.xdg]) {
    mkdirSync(d, { recursive: true, mode: 0o700 });
  }
  writeFileSync(dirs.logFile, '');
  return dirs;
}

export function gatewayYaml(dirs: DemoDirs, interactive: boolean): string {
  const p = DEMO_POLICY;
  const approve = interactive
    ? ''
    : `    auto_approve: ${DEMO_USER}            # no browser needed\n`;
  return `# Written by \`npm run demo\`: a development gateway with short timeouts.
listen: 127.0.0.1:0                   # any free port; the gateway logs the one it took
auth:
  audience: https://logs.demo.example   # the "aud" its access tokens must carry
  client_id: logproxy-cli
  dev:
    users: [${DEMO_USER}, bob]
${approve}    poll_interval: ${p.pollIntervalS}s
    data_dir: ${JSON.stringify(dirs.idpData)}
admins: [${DEMO_USER}]
session:
  idle_timeout: ${p.idleTimeoutS}s
  max_lifetime: ${p.maxLifetimeS}s
  heartbeat_interval: ${p.heartbeatS}s
  warn_before: [${p.warnBeforeS.map((s) => `${s}s`).join(', ')}]
audit: { file: ${JSON.stringify(dirs.audit)} }
targets:
  ${FILE_TARGET}:
    description: numbered lines the demo appends to logs/app.log
    source: { type: file, paths: [${JSON.stringify(path.join(dirs.logDir, '*.log'))}] }
    allow: [${DEMO_USER}]
    # Every record streamed to a reader counts as use, so a follower that receives nothing
    # goes idle while one that receives lines does not.
    activity: bytes
  ${DEMO_TARGET}:
    description: generated logs of a made-up web shop
    source: { type: demo, rate: 2, history: 20 }
    allow: ['*']
`;
}

const PATHS = ['/api/orders', '/api/cart', '/api/users/me', '/healthz', '/api/search?q=socks'];
const STATUSES = [200, 200, 200, 201, 204, 304, 404, 500];

/**
 * Appends numbered lines (`seq=1`, `seq=2`, ...) to the target's log file, one write per
 * line, so the demo can check that the reader saw each exactly once and in order.
 */
export class NumberedLogWriter {
  written = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly file: string) {}

  writeOne(): number {
    const n = this.written + 1;
    const status = STATUSES[n % STATUSES.length]!;
    const level = status >= 500 ? 'ERROR' : status >= 400 ? 'WARN' : 'INFO';
    const route = PATHS[n % PATHS.length]!;
    const ms = 3 + ((n * 37) % 120);
    appendFileSync(this.file, `${level} seq=${n} GET ${route} ${status} ${ms}ms\n`);
    this.written = n;
    return n;
  }

  writeMany(count: number): void {
    for (let i = 0; i < count; i++) this.writeOne();
  }

  start(linesPerSecond: number): void {
    this.stop();
    this.timer = setInterval(() => this.writeOne(), Math.round(1000 / linesPerSecond));
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}

/** The `seq=N` of a line as any tail output format shows it (raw, text or json). */
export function sequenceOf(line: string): number | undefined {
  const m = /seq=(\d+)/.exec(line);
  return m ? Number(m[1]) : undefined;
}

/** Checks that `seen` is exactly 1..expected, once each and in order; returns a problem. */
export function gapProblem(seen: number[], expected: number): string | undefined {
  for (let i = 0; i < seen.length; i++) {
    if (seen[i] !== i + 1) {
      const prev = i === 0 ? 'the start' : `line ${seen[i - 1]}`;
      return seen[i]! <= i
        ? `line ${seen[i]} arrived again after ${prev}`
        : `lines ${i + 1}..${seen[i]! - 1} are missing (after ${prev} came ${seen[i]})`;
    }
  }
  if (seen.length !== expected) {
    return `the reader saw ${seen.length} lines but ${expected} were written`;
  }
  return undefined;
}
