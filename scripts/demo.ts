/**
 * `npm run demo`: logproxy's main job in about a minute, with the real programs.
 *
 * It starts a development gateway (embedded OIDC provider, a `file` target over a log file
 * this script appends numbered lines to, a `demo` target of generated logs, timeouts of
 * seconds), then signs in with `logproxy login`, opens `logproxy connect`, follows the logs
 * with `logproxy tail -f`, goes quiet until the gateway warns and ends the idle session,
 * lets connect re-authenticate inline, checks that no line was lost or repeated, tears
 * everything down with Ctrl-C and prints the gateway's audit trail.
 *
 * Everything lives in a temporary directory (CLI config dir, file token storage, provider
 * data): the person's own config and keychain are never touched. Every child runs in its
 * own process group and is killed on success, failure and Ctrl-C alike.
 *
 *   npm run demo                    # auto-approved sign-in, no browser needed
 *   npm run demo -- --interactive   # approve the sign-ins yourself in a browser
 */
import { appendFileSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DISCOVERY_PATH } from '../src/protocol/api.js';
import {
  ChildRegistry,
  DemoFailure,
  describeExit,
  isAlive,
  processesMentioning,
  type DemoChild,
} from './demo-process.js';
import { DemoOutput, colourWanted, createPainter, formatAuditLine } from './demo-output.js';
import {
  DEMO_POLICY,
  DEMO_TARGET,
  DEMO_USER,
  FILE_TARGET,
  NumberedLogWriter,
  gapProblem,
  gatewayYaml,
  makeDemoDirs,
  sequenceOf,
  type DemoDirs,
} from './demo-setup.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI = path.join(REPO, 'bin', 'logproxy.js');
const GATEWAY = path.join(REPO, 'bin', 'logproxy-gateway.js');
const STAGES = 9;

interface DemoOptions {
  interactive: boolean;
  keep: boolean;
  noColor: boolean;
}

/** Per-stage limits: the demo fails with a clear message instead of hanging. */
function stageTimeouts(interactive: boolean) {
  // A person approving in a browser needs minutes; the auto-approved flow needs seconds.
  const approvalMs = interactive ? 10 * 60_000 : 30_000;
  return {
    gatewayReadyMs: 20_000,
    loginMs: approvalMs,
    listeningMs: 20_000,
    flowingMs: 20_000,
    warningMs: (DEMO_POLICY.idleTimeoutS + 15) * 1000,
    endedMs: (DEMO_POLICY.idleTimeoutS + 15) * 1000,
    reauthMs: approvalMs,
    catchUpMs: 20_000,
    exitMs: 15_000,
  };
}

function parseArgs(argv: string[]): DemoOptions | undefined {
  const options: DemoOptions = { interactive: false, keep: false, noColor: false };
  for (const arg of argv) {
    if (arg === '--interactive' || arg === '-i') options.interactive = true;
    else if (arg === '--keep') options.keep = true;
    else if (arg === '--no-color') options.noColor = true;
    else if (arg === '--help' || arg === '-h') return undefined;
    else {
      process.stderr.write(`demo: unknown option ${arg} (try --help)\n`);
      process.exit(2);
    }
  }
  return options;
}

const USAGE = `Usage: npm run demo [-- [--interactive] [--keep] [--no-color]]

Shows logproxy's main job in about a minute with the real gateway and CLI:
sign-in, tunnel, logs flowing, idle warnings, session end, inline re-authentication,
logs resuming with no line lost, teardown and the audit trail.

  --interactive  approve the sign-ins yourself in a browser (default: auto-approved)
  --keep         keep the temporary directory (config, audit, logs) for a look afterwards
  --no-color     plain output (also NO_COLOR=1)
`;

// ---------- connect's --events json ----------

interface ConnectEvent {
  name: string;
  data: Record<string, unknown>;
}

/** One `--events json` line of connect's stderr, or undefined for any other line. */
function parseEvent(text: string): ConnectEvent | undefined {
  if (!text.startsWith('{')) return undefined;
  try {
    const data = JSON.parse(text) as Record<string, unknown>;
    return typeof data.event === 'string' ? { name: data.event, data } : undefined;
  } catch {
    return undefined;
  }
}

function isEvent(name: string) {
  return (line: { text: string }) => parseEvent(line.text)?.name === name;
}

/**
 * A person's reading of one event (docs/connect.md lists their fields); unknown events are
 * shown with their fields. Undefined hides the event (`session` repeats `listening`).
 */
function describeEvent(e: ConnectEvent): string | undefined {
  const d = e.data;
  const s = (k: string) => (d[k] === undefined || d[k] === null ? '?' : String(d[k]));
  switch (e.name) {
    case 'listening':
      return (
        `listening on ${s('url')}: session ${s('session_id')}, idle timeout ` +
        `${s('idle_timeout_s')}s, ends at ${clock(d.expires_at)} at the latest`
      );
    case 'session':
      return undefined;
    case 'warning':
      return d.kind === 'idle'
        ? `warning: idle for ${s('idle_s')}s; the session closes in ${s('seconds_left')}s ` +
            `unless used (threshold ${s('threshold_s')}s)`
        : `warning: the session ends in ${s('seconds_left')}s (maximum lifetime)`;
    case 'refreshed':
      return `refreshed: access token renewed silently (valid until ${clock(d.access_token_expires_at)})`;
    case 'reauthenticating':
      return `reauthenticating: session ended (${s('reason')}); local requests wait meanwhile`;
    case 'device_code':
      return (
        `device code ${s('user_code')}: approve at ` +
        `${String(d.verification_uri_complete ?? d.verification_uri)}`
      );
    case 'resumed':
      return `resumed on a new session ${s('session_id')} (was ${s('previous_session_id')})`;
    case 'ended':
      return `ended: ${s('message')} (reason ${s('reason')}, exit code ${s('exit_code')})`;
    default: {
      const rest = Object.entries(d)
        .filter(([k]) => k !== 'event' && k !== 'ts')
        .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
        .join(' ');
      return `${e.name}: ${rest}`;
    }
  }
}

/** `13:01:02` of an RFC 3339 time, in local time as the person reads clocks. */
function clock(iso: unknown): string {
  if (typeof iso !== 'string') return '?';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return d.toTimeString().slice(0, 8);
}

// ---------- the story ----------

class Demo {
  readonly out: DemoOutput;
  readonly timeouts: ReturnType<typeof stageTimeouts>;
  children!: ChildRegistry;
  dirs!: DemoDirs;
  gatewayUrl = '';
  writer!: NumberedLogWriter;
  /** `seq` numbers in the order tail printed them. */
  readonly seen: number[] = [];

  constructor(readonly options: DemoOptions) {
    const colour = colourWanted(process.env, Boolean(process.stdout.isTTY), options.noColor);
    this.out = new DemoOutput(process.stdout, createPainter(colour));
    this.timeouts = stageTimeouts(options.interactive);
  }

  async run(): Promise<void> {
    await this.startGateway();
    await this.signIn();
    const connect = await this.openTunnel();
    const tail = await this.followLogs();
    await this.goQuiet(connect);
    await this.reauthenticate(connect);
    await this.resumeWithoutGap(tail);
    await this.teardown(connect, tail);
    this.printAuditTrail();
  }

  /** The stage running now, for failure messages. */
  stage = 0;
  stageTitle = 'setup';

  private heading(step: number, title: string): void {
    this.stage = step;
    this.stageTitle = title;
    this.out.heading(step, STAGES, title);
  }

  /** Env of every child: its own config dir and XDG homes, never the person's. */
  private childEnv(): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) {
      if (!k.startsWith('LOGPROXY_')) env[k] = v;
    }
    const noProxy = [env.NO_PROXY ?? env.no_proxy, '127.0.0.1', 'localhost', '::1'];
    return {
      ...env,
      LOGPROXY_CONFIG_DIR: this.dirs.cliConfig,
      LOGPROXY_GATEWAY: this.gatewayUrl,
      XDG_CONFIG_HOME: path.join(this.dirs.xdg, 'config'),
      XDG_STATE_HOME: path.join(this.dirs.xdg, 'state'),
      XDG_CACHE_HOME: path.join(this.dirs.xdg, 'cache'),
      XDG_DATA_HOME: path.join(this.dirs.xdg, 'data'),
      // The demo's traffic stays on loopback even where a corporate proxy is configured.
      NO_PROXY: noProxy.filter(Boolean).join(','),
      ...(this.options.noColor ? { NO_COLOR: '1' } : {}),
    };
  }

  /** Relays a child's lines to the screen; `render` may rewrite or hide (undefined) one. */
  private relay(
    child: DemoChild,
    tag: string,
    render: (line: { stream: string; text: string }) => string | undefined = (l) => l.text,
  ): void {
    child.onLine((line) => {
      const shown = render(line);
      if (shown !== undefined && shown !== '') this.out.relay(tag, shown);
    });
  }

  // 1
  async startGateway(): Promise<void> {
    this.heading(1, 'Start a development gateway');
    this.dirs = await makeDemoDirs();
    this.out.say(`temporary directory: ${this.dirs.root}`);
    this.out.say(
      'using a temporary config dir and file storage; your real config and keychain are untouched',
    );
    const yaml = gatewayYaml(this.dirs, this.options.interactive);
    writeFileSync(this.dirs.gatewayConfig, yaml);
    this.writer = new NumberedLogWriter(this.dirs.logFile);
    // The CLI children's env needs the gateway's URL; it is set once the gateway listens.
    this.children = new ChildRegistry(REPO, process.env);

    const p = DEMO_POLICY;
    this.out.say(
      `policy: idle timeout ${p.idleTimeoutS}s, warnings ${p.warnBeforeS.join('s and ')}s ` +
        `before, heartbeat every ${p.heartbeatS}s, at most ${p.maxLifetimeS}s per session`,
    );
    this.out.say(
      `targets: ${FILE_TARGET} (a log file the demo writes) and ${DEMO_TARGET} (generated)`,
    );
    this.out.command(`logproxy-gateway --config ${this.dirs.gatewayConfig}`);
    const gateway = this.children.start('logproxy-gateway', GATEWAY, [
      '--config',
      this.dirs.gatewayConfig,
    ]);
    this.out.say(`gateway pid ${gateway.pid}, its log: ${this.dirs.gatewayLog}`);
    gateway.onLine((l) => appendFileSync(this.dirs.gatewayLog, `${l.text}\n`));
    // Port 0: the gateway picks a free port and logs its URL once it listens.
    const listening = await gateway.expect((l) => gatewayLog(l.text)?.msg === 'listening', {
      what: 'its "listening" log line',
      timeoutMs: this.timeouts.gatewayReadyMs,
    });
    const url = gatewayLog(listening.text)?.url;
    if (typeof url !== 'string') {
      throw new DemoFailure(`the gateway's "listening" line has no url: ${listening.text}`);
    }
    this.gatewayUrl = url;
    this.children.env = this.childEnv();
    await this.waitForDiscovery(gateway);
    this.out.ok(`gateway answers at ${this.gatewayUrl}${DISCOVERY_PATH}`);
  }

  private async waitForDiscovery(gateway: DemoChild): Promise<void> {
    const deadline = Date.now() + this.timeouts.gatewayReadyMs;
    let last = 'no answer yet';
    while (Date.now() < deadline) {
      if (!gateway.running) {
        throw new DemoFailure(
          `the gateway exited (${describeExit(gateway.exit!)}) before it answered; ` +
            `its output:\n${lastLines(gateway, 15)}`,
        );
      }
      try {
        const res = await fetch(`${this.gatewayUrl}${DISCOVERY_PATH}`, {
          signal: AbortSignal.timeout(2000),
        });
        if (res.ok) {
          const doc = (await res.json()) as { issuer?: string };
          this.out.say(`issuer: ${doc.issuer ?? '(none)'} (embedded development provider)`);
          return;
        }
        last = `HTTP ${res.status}`;
      } catch (err) {
        last = err instanceof Error ? err.message : String(err);
      }
      await sleep(200);
    }
    throw new DemoFailure(
      `the gateway did not answer ${DISCOVERY_PATH} within ` +
        `${this.timeouts.gatewayReadyMs / 1000}s (${last}); its output:\n${lastLines(gateway, 15)}`,
    );
  }

  // 2
  async signIn(): Promise<void> {
    this.heading(2, 'Sign in with the device flow: logproxy login');
    const args = ['login', '--gateway', this.gatewayUrl, '--insecure-storage'];
    if (!this.options.interactive) args.push('--no-browser');
    this.out.command(`logproxy ${args.join(' ')}`);
    if (this.options.interactive) {
      this.out.say(
        `approve the code in your browser and sign in as ${DEMO_USER} (the URL is printed below)`,
      );
    }
    const login = this.children.start('logproxy login', CLI, args);
    this.relay(login, 'login');
    await login.expect((l) => USER_CODE.test(l.text), {
      what: 'a user code to approve',
      timeoutMs: 20_000,
    });
    this.out.ok('the code to approve is shown above');
    const info = await withTimeout(login.exited, this.timeouts.loginMs, 'logproxy login to finish');
    if (info.code !== 0) {
      throw new DemoFailure(`logproxy login failed (${describeExit(info)}):\n${login.tail(12)}`);
    }
    if (!login.lines.some((l) => l.text.includes(`as ${DEMO_USER}`))) {
      throw new DemoFailure(`logproxy login did not say it signed in as ${DEMO_USER}`);
    }
    if (!this.options.interactive) {
      this.out.say(`auto-approved as ${DEMO_USER} (development provider): no browser needed`);
    }
    this.out.ok(`signed in as ${DEMO_USER}; credentials in a 0600 file under the temp dir`);

    this.out.command('logproxy targets');
    const targets = this.children.start('logproxy targets', CLI, ['targets']);
    this.relay(targets, 'targets');
    const listed = await withTimeout(targets.exited, 20_000, 'logproxy targets to finish');
    if (listed.code !== 0) {
      throw new DemoFailure(`logproxy targets failed (${describeExit(listed)})`);
    }

    // Without a tunnel, tail opens a session of its own and ends it when done.
    const peekArgs = ['tail', DEMO_TARGET, '-n', '3'];
    this.out.command(`logproxy ${peekArgs.join(' ')}`);
    const peek = this.children.start(`logproxy tail ${DEMO_TARGET}`, CLI, peekArgs);
    this.relay(peek, 'tail', (l) => (l.stream === 'stdout' ? l.text : `(stderr) ${l.text}`));
    const peeked = await withTimeout(peek.exited, 20_000, `logproxy tail ${DEMO_TARGET} to finish`);
    const shown = peek.lines.filter((l) => l.stream === 'stdout').length;
    if (peeked.code !== 0 || shown !== 3) {
      throw new DemoFailure(
        `logproxy tail ${DEMO_TARGET} -n 3 printed ${shown} lines (${describeExit(peeked)})`,
      );
    }
  }

  // 3
  async openTunnel(): Promise<DemoChild> {
    this.heading(3, `Open a tunnel: logproxy connect ${FILE_TARGET}`);
    const args = ['connect', FILE_TARGET, '--events', 'json'];
    this.out.command(`logproxy ${args.join(' ')} &`);
    this.out.say('(events shown as connect reports them with --events json)');
    // Off a terminal connect tears down when its session ends, unless asked to sign in again
    // inline (docs/connect.md): the demo wants the inline re-authentication.
    const connect = this.children.start('logproxy connect', CLI, args, {
      LOGPROXY_REAUTH: 'always',
    });
    this.relay(connect, 'connect', (l) => {
      const e = parseEvent(l.text);
      return e ? describeEvent(e) : l.text;
    });
    this.out.say('(LOGPROXY_GATEWAY points the CLI at the demo gateway)');
    const listening = await connect.expect(isEvent('listening'), {
      what: 'a "listening" event',
      timeoutMs: this.timeouts.listeningMs,
    });
    const e = parseEvent(listening.text)!;
    const url = e.data.url ?? e.data.local_url ?? e.data.address;
    this.out.ok(
      `tunnel listening${typeof url === 'string' ? ` at ${url}` : ''} (pid ${connect.pid})`,
    );
    return connect;
  }

  // 4
  async followLogs(): Promise<DemoChild> {
    this.heading(4, `Follow the logs: logproxy tail ${FILE_TARGET} -f`);
    this.writer.start(3);
    this.out.say(
      `the demo appends a numbered line (seq=N) to ${this.dirs.logFile} 3 times a second`,
    );
    const args = ['tail', FILE_TARGET, '-f'];
    this.out.command(`logproxy ${args.join(' ')}`);
    const tail = this.children.start('logproxy tail', CLI, args, { LOGPROXY_REAUTH: 'always' });
    this.relay(tail, 'tail', (l) => (l.stream === 'stdout' ? l.text : `(stderr) ${l.text}`));
    tail.onLine((l) => {
      if (l.stream !== 'stdout') return;
      const n = sequenceOf(l.text);
      if (n !== undefined) this.seen.push(n);
    });
    await tail.expect(() => this.seen.length >= 8, {
      what: 'eight numbered log lines on stdout',
      timeoutMs: this.timeouts.flowingMs,
      stream: 'stdout',
    });
    this.out.ok(`logs flowing: ${this.seen.length} lines so far through the tunnel's session`);
    return tail;
  }

  // 5
  async goQuiet(connect: DemoChild): Promise<void> {
    this.writer.stop();
    this.heading(5, 'Go quiet: the gateway warns, then ends the idle session');
    this.out.say(
      `the demo stops writing (last line seq=${this.writer.written}); nothing flows, ` +
        `heartbeats continue, and heartbeats do not count as use`,
    );
    const from = connect.mark;
    await connect.expect(isEvent('warning'), {
      what: 'a "warning" event before the idle timeout',
      timeoutMs: this.timeouts.warningMs,
      from,
    });
    this.out.ok("idle warning received (from the gateway's heartbeat answers)");
    await connect.expect(
      (l) => ['reauthenticating', 'ended'].includes(parseEvent(l.text)?.name ?? ''),
      {
        what: 'the end of the idle session ("reauthenticating" or "ended")',
        timeoutMs: this.timeouts.endedMs,
        from,
      },
    );
    const expired = this.auditRecords().find((r) => r.event === 'session.expired');
    if (!expired) {
      throw new DemoFailure('connect reports the session ended, but the audit has no expiry');
    }
    this.out.ok(`session ended: the gateway expired it (reason ${String(expired.reason)})`);
  }

  // 6
  async reauthenticate(connect: DemoChild): Promise<void> {
    this.heading(6, 'Sign in again, inline: connect re-authenticates');
    const from = Math.max(0, connect.lines.findIndex(isEvent('reauthenticating')));
    const ended = connect.lines.find(isEvent('ended'));
    if (ended) {
      throw new DemoFailure(
        `logproxy connect tore down instead of re-authenticating: ${ended.text}`,
      );
    }
    // Lines written while no session is open must still reach the reader afterwards.
    this.writer.writeMany(5);
    this.out.say(
      `meanwhile the app keeps logging: seq=${this.writer.written - 4}..${this.writer.written} ` +
        'written while no session is open',
    );
    if (this.options.interactive) {
      this.out.say('approve the new code in your browser (URL above) to resume');
    }
    const resumed = await connect.expect(isEvent('resumed'), {
      what: 'a "resumed" event after the new sign-in',
      timeoutMs: this.timeouts.reauthMs,
    });
    const codes = connect.lines
      .filter((l) => l.index >= from && isEvent('device_code')(l))
      .map((l) => String(parseEvent(l.text)!.data.user_code));
    if (codes.length === 0) {
      throw new DemoFailure('connect resumed without showing a new device code to approve');
    }
    if (!this.options.interactive) {
      const which = codes.length === 1 ? `code ${codes[0]}` : `codes ${codes.join(', ')}`;
      this.out.say(`${which} auto-approved as ${DEMO_USER} (development provider)`);
    }
    const id = parseEvent(resumed.text)!.data.session_id;
    this.out.ok(`re-authenticated; traffic continues on session ${String(id)}`);
  }

  // 7
  async resumeWithoutGap(tail: DemoChild): Promise<void> {
    this.heading(7, 'Logs resume without a gap');
    this.writer.start(3);
    await sleep(4000);
    this.writer.stop();
    const expected = this.writer.written;
    this.out.say(`the demo wrote ${expected} lines in all; waiting for tail to print them`);
    await tail.expect(() => this.seen.includes(expected), {
      what: `line seq=${expected}`,
      timeoutMs: this.timeouts.catchUpMs,
      stream: 'stdout',
    });
    // A repeated line could still be on its way: give it a moment to show up.
    await sleep(500);
    const problem = gapProblem(this.seen, expected);
    if (problem) throw new DemoFailure(`the stream has a gap or a repeat: ${problem}`);
    this.out.ok(`no line lost or repeated: ${expected} lines, 1..${expected}`);
  }

  // 8
  async teardown(connect: DemoChild, tail: DemoChild): Promise<void> {
    this.heading(8, 'Tear down: Ctrl-C');
    for (const child of [tail, connect]) {
      this.out.say(`Ctrl-C (SIGINT) to ${child.name} (pid ${child.pid})`);
      child.signal('SIGINT');
      const info = await withTimeout(child.exited, this.timeouts.exitMs, `${child.name} to exit`);
      if (info.code !== 130 && info.code !== 0) {
        throw new DemoFailure(
          `${child.name} did not exit cleanly on Ctrl-C (${describeExit(info)})`,
        );
      }
      this.out.ok(`${child.name} exited with ${describeExit(info)}`);
    }
    const gateway = this.children.children.find((c) => c.name === 'logproxy-gateway')!;
    this.out.say(`stopping the gateway (SIGTERM to pid ${gateway.pid}) so its audit is complete`);
    gateway.signal('SIGTERM');
    const info = await withTimeout(gateway.exited, this.timeouts.exitMs, 'the gateway to stop');
    this.out.ok(`gateway stopped (${describeExit(info)})`);
  }

  // 9
  printAuditTrail(): void {
    this.heading(9, "The audit trail (the gateway's audit file, one JSON line per event)");
    const text = existsSync(this.dirs.audit) ? readFileSync(this.dirs.audit, 'utf8') : '';
    const lines = text.split('\n').filter(Boolean);
    if (lines.length === 0) throw new DemoFailure(`the audit file ${this.dirs.audit} is empty`);
    for (const line of lines) this.out.relay('audit', formatAuditLine(line));
    const events = this.auditRecords().map((r) => r.event);
    const created = events.filter((e) => e === 'session.created').length;
    if (created < 2) {
      throw new DemoFailure(`the audit shows ${created} sessions created; expected 2 or more`);
    }
    if (events.includes('session.refused')) {
      this.out.say(
        'session.refused (reauth_required): the old sign-in could not open a new session ' +
          'after the expiry; the fresh sign-in did',
      );
    }
    this.out.ok(`${lines.length} audit events, ${created} sessions`);
  }

  auditRecords(): Array<Record<string, unknown>> {
    if (!existsSync(this.dirs.audit)) return [];
    return readFileSync(this.dirs.audit, 'utf8')
      .split('\n')
      .filter(Boolean)
      .flatMap((l) => {
        try {
          return [JSON.parse(l) as Record<string, unknown>];
        } catch {
          return [];
        }
      });
  }

  /** Stops whatever still runs and proves that nothing is left. */
  async cleanUp(): Promise<string | undefined> {
    this.writer?.stop();
    if (!this.children) return undefined;
    await this.children.stopAll('SIGTERM', 3000);
    const alive = this.children.children.filter((c) => isAlive(c.pid));
    const strays = this.dirs ? processesMentioning(this.dirs.root) : [];
    const pids = this.children.children.map((c) => `${c.name}=${c.pid}`).join(' ');
    if (alive.length > 0 || strays.length > 0) {
      const list = [...alive.map((c) => c.pid), ...strays].join(', ');
      return `processes still running after teardown: ${list}`;
    }
    this.out.ok(`no process left behind (checked pids: ${pids})`);
    return undefined;
  }
}

/** One JSON line of the gateway's structured log (stderr), or undefined. */
function gatewayLog(text: string): Record<string, unknown> | undefined {
  if (!text.startsWith('{')) return undefined;
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

const USER_CODE = /\b[A-Z0-9]{4}-?[A-Z0-9]{4}\b/;

function lastLines(child: DemoChild, n: number): string {
  return child.tail(n);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new DemoFailure(`timed out after ${ms / 1000}s waiting for ${what}`)),
      ms,
    );
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function main(): Promise<number> {
  const options = parseArgs(process.argv.slice(2));
  if (!options) {
    process.stdout.write(USAGE);
    return 0;
  }
  const demo = new Demo(options);

  // Whatever happens, no child outlives the demo.
  process.on('exit', () => demo.children?.killAllNow());
  let interrupted = false;
  const onInterrupt = () => {
    if (interrupted) return;
    interrupted = true;
    demo.out.fail('interrupted: stopping every process the demo started');
    void demo.cleanUp().finally(() => {
      removeDir(demo, options);
      process.exit(130);
    });
  };
  process.on('SIGINT', onInterrupt);
  process.on('SIGTERM', onInterrupt);
  // A closed terminal: the children run in their own process groups, so nothing else
  // would stop them.
  process.on('SIGHUP', onInterrupt);
  // With the terminal gone (or `| head` done), output fails; the clean-up must still run.
  process.stdout.on('error', () => {});

  let failure: string | undefined;
  try {
    await demo.run();
  } catch (err) {
    failure = err instanceof DemoFailure ? err.message : `unexpected error: ${String(err)}`;
    if (!(err instanceof DemoFailure) && err instanceof Error && err.stack) {
      failure += `\n${err.stack}`;
    }
  }
  if (interrupted) return 130;
  if (failure) {
    demo.out.fail(`stage ${demo.stage}/${STAGES} (${demo.stageTitle}) failed: ${failure}`);
    demo.out.say('stopping every process the demo started');
  }
  const leftover = await demo.cleanUp();
  if (leftover) demo.out.fail(leftover);
  if (failure || leftover) {
    if (demo.dirs) demo.out.fail(`kept ${demo.dirs.root} for a look (gateway.log, audit.jsonl)`);
    return 1;
  }
  removeDir(demo, options);
  demo.out.write('');
  demo.out.write(demo.out.paint.bold(demo.out.paint.green('Demo complete.')));
  return 0;
}

function removeDir(demo: Demo, options: DemoOptions): void {
  if (!demo.dirs) return;
  if (options.keep) {
    demo.out.say(`kept ${demo.dirs.root}`);
    return;
  }
  rmSync(demo.dirs.root, { recursive: true, force: true });
  demo.out.ok(`removed ${demo.dirs.root}`);
}

process.exitCode = await main();
