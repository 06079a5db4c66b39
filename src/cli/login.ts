/**
 * `logproxy login`: sign in to a gateway with the device flow and store the tokens.
 * Options, wiring (`createLoginCommand`) and the run (`runLogin`), which tests call in-process.
 */
// commander is loaded by main before any command file, so this import costs nothing.
import { Command } from 'commander';
import type { CommandContext } from './context.js';
import type { IO } from './io.js';
import type { DeviceCodePrompt } from '../auth/types.js';
import type { SignInCallbacks } from '../auth/sign-in.js';
import { systemClock, type Clock } from '../util/clock.js';
import { formatDuration } from '../util/durations.js';
import { ExitCodes, type ExitCode } from './exit-codes.js';
import type { Styles } from './output.js';

export interface LoginOptions {
  gateway?: string;
  profile?: string;
  /** False with --no-browser. */
  browser: boolean;
  insecureStorage: boolean;
  verbose: boolean;
  color: boolean;
}

export interface LoginHooks {
  clock?: Clock;
  /** Replaces `open` (tests record the URL instead of starting a browser). */
  openBrowser?: (url: string) => Promise<void>;
  platform?: NodeJS.Platform;
}

export function createLoginCommand(ctx: CommandContext): Command {
  return new Command('login')
    .description('sign in to a gateway (device flow) and store the tokens')
    .option('--gateway <url>', 'gateway URL (default: LOGPROXY_GATEWAY or config.yaml)')
    .option('--profile <name>', 'profile to store the sign-in under (default: "default")')
    .option('--no-browser', 'do not open a browser; show the URL and code only')
    .option(
      '--insecure-storage',
      'store tokens in a 0600 file instead of the OS keychain (headless machines)',
      false,
    )
    .addHelpText(
      'after',
      `
Examples:
  $ logproxy login --gateway https://logs.example.com
  $ logproxy login --gateway https://logs.example.com --profile work
  $ logproxy login --no-browser --insecure-storage     # headless server, no keychain

The code and the URL are printed on stderr; approve the code in any browser, on any device.
Exit codes: 0 signed in, 2 usage, 3 code expired, 4 denied in the browser, 5 gateway or
provider unreachable, 1 no keychain (see --insecure-storage), 130 interrupted.`,
    )
    .action(async (flags: Record<string, unknown>) => {
      const globals = ctx.globals();
      ctx.exitCode = await runLogin(
        {
          gateway: flags.gateway as string | undefined,
          profile: flags.profile as string | undefined,
          browser: flags.browser !== false,
          insecureStorage: Boolean(flags.insecureStorage),
          verbose: globals.verbose,
          color: globals.color !== false,
        },
        ctx.io,
      );
    });
}

/**
 * Signs in and reports it. Failures are thrown as LogproxyErrors; main turns them into a
 * message and an exit code (docs/exit-codes.md).
 */
export async function runLogin(
  options: LoginOptions,
  io: IO,
  hooks: LoginHooks = {},
): Promise<ExitCode> {
  const [{ resolveClientSettings, requireGateway }, { createHttpClient }, { signIn }] =
    await Promise.all([
      import('./config.js'),
      import('../auth/http.js'),
      import('../auth/sign-in.js'),
    ]);
  const { insecureStoreWarning } = await import('../auth/token-store.js');
  const { stylesFor } = await import('./output.js');
  const { verboseWriter } = await import('./auth-services.js');

  const settings = await resolveClientSettings(
    {
      gateway: options.gateway,
      profile: options.profile,
      insecureStorage: options.insecureStorage,
    },
    io.env,
  );
  const gateway = await requireGateway(settings);
  const clock = hooks.clock ?? systemClock;
  const styles = await stylesFor(io, options.color);
  const trace = verboseWriter(io, options.verbose);
  const http = createHttpClient({
    verbose: options.verbose,
    ...(trace ? { trace } : {}),
    env: io.env,
  });
  const presenter = new CodePresenter(io, styles, clock, options, hooks);
  // The clock's timers are unref'd (a pending timer alone never keeps a process running), and
  // while we wait between polls nothing else is pending: hold the process open until done.
  const keepAlive = setInterval(() => undefined, 60_000);

  try {
    const result = await signIn({
      gateway,
      profile: settings.profile,
      paths: settings.paths,
      storeKind: settings.tokenStore,
      fetch: http,
      clock,
      signal: io.signal,
      callbacks: presenter.callbacks(),
    });
    presenter.stop(true);
    const warning = insecureStoreWarning(result.store);
    if (warning) io.stderr.write(`${styles.yellow('warning:')} ${warning}\n`);
    io.stderr.write(
      `${styles.green('\u2713')} Logged in to ${result.gateway} as ${styles.bold(result.subject)}` +
        ` (profile ${result.profile})\n`,
    );
    return ExitCodes.OK;
  } finally {
    clearInterval(keepAlive);
    presenter.stop(false);
    await http.close();
  }
}

/** Whether a browser can be shown here: always on macOS and Windows, with a display on Linux. */
export function canOpenBrowser(env: NodeJS.ProcessEnv, platform: NodeJS.Platform): boolean {
  if (platform === 'darwin' || platform === 'win32') return true;
  return Boolean(env.DISPLAY || env.WAYLAND_DISPLAY);
}

/**
 * Tells the person what to do with the code, on stderr: on a TTY an ora spinner counts down
 * to the code's expiry; off a TTY, one plain line per event (logs and CI stay readable).
 */
class CodePresenter {
  private spinner: { text: string; stop(): void; succeed(text?: string): void } | undefined;
  private ticker: ReturnType<typeof setInterval> | undefined;
  private stopped = false;

  constructor(
    private readonly io: IO,
    private readonly styles: Styles,
    private readonly clock: Clock,
    private readonly options: LoginOptions,
    private readonly hooks: LoginHooks,
  ) {}

  callbacks(): SignInCallbacks {
    return {
      onDiscovered: (doc) => {
        if (doc.dev) {
          this.line(
            this.styles.dim(`(${doc.issuer} is the gateway's development identity provider)`),
          );
        }
      },
      onCode: (prompt) => void this.showCode(prompt),
      onPoll: (event) => {
        if (event.kind === 'slow_down') {
          this.line(
            this.styles.dim(
              `the identity provider asked to poll less often; every ${formatDuration(event.nextPollInMs)} now`,
            ),
          );
        }
      },
    };
  }

  private async showCode(prompt: DeviceCodePrompt): Promise<void> {
    const { styles } = this;
    const lines = [
      `First copy your one-time code: ${styles.bold(prompt.userCode)}`,
      `Then open ${prompt.verificationUri} in a browser and enter the code.`,
    ];
    if (prompt.verificationUriComplete) {
      lines.push(`Or open ${prompt.verificationUriComplete} (the code is filled in).`);
    }
    if (prompt.message) lines.push(styles.dim(`The identity provider says: ${prompt.message}`));
    this.line(lines.join('\n'));

    await this.openBrowser(prompt.verificationUriComplete ?? prompt.verificationUri);
    if (this.stopped) return;
    // A terminal that reports no width (some pseudo-terminals, `script`) makes a redrawn
    // spinner erase line after line: plain lines there.
    const columns = (this.io.stderr as { columns?: number }).columns ?? 0;
    if (this.io.stderrIsTTY && columns > 0) await this.startSpinner(prompt.expiresAt);
    else {
      this.line(
        `Waiting for approval (the code expires in ${formatDuration(prompt.expiresAt - this.clock.now())})...`,
      );
    }
  }

  private async openBrowser(url: string): Promise<void> {
    const platform = this.hooks.platform ?? process.platform;
    if (!this.options.browser) return;
    if (!canOpenBrowser(this.io.env, platform)) {
      this.line(this.styles.dim('(no display found, so no browser was opened)'));
      return;
    }
    try {
      if (this.hooks.openBrowser) await this.hooks.openBrowser(url);
      else {
        const { default: open } = await import('open');
        const child = await open(url, { wait: false });
        child.on('error', () => undefined);
        child.unref();
      }
      this.line(this.styles.dim('Opened the URL in your browser.'));
    } catch (err) {
      this.line(
        `Could not open a browser (${(err as Error).message}); open the URL above yourself.`,
      );
    }
  }

  private async startSpinner(expiresAt: number): Promise<void> {
    const { default: ora } = await import('ora');
    if (this.stopped) return;
    const text = () =>
      `Waiting for approval in the browser (the code expires in ${formatDuration(Math.max(0, expiresAt - this.clock.now()))})`;
    const spinner = ora({ text: text(), stream: this.io.stderr as NodeJS.WritableStream }).start();
    this.spinner = spinner;
    this.ticker = setInterval(() => (spinner.text = text()), 1000);
    this.ticker.unref();
  }

  stop(succeeded: boolean): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.ticker) clearInterval(this.ticker);
    if (!this.spinner) return;
    if (succeeded) this.spinner.succeed('Approved in the browser');
    else this.spinner.stop();
  }

  private line(text: string): void {
    this.io.stderr.write(`${text}\n`);
  }
}
