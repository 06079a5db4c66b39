/**
 * The demo's child processes: each one runs in its own process group so that a signal
 * reaches it and anything it started, its output is kept line by line so a stage can wait
 * for a line, and every one is tracked so the demo can prove at the end that none is left.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

export type StreamName = 'stdout' | 'stderr';

export interface OutputLine {
  stream: StreamName;
  text: string;
  /** Position in the child's output, across both streams; used as a "from here on" mark. */
  index: number;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** Why a stage could not go on: shown to the person as it is, with no stack trace. */
export class DemoFailure extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DemoFailure';
  }
}

export interface ExpectOptions {
  /** What the stage waits for, in words, for the failure message. */
  what: string;
  timeoutMs: number;
  stream?: StreamName;
  /** Only lines at or after this index count (default: every line so far and to come). */
  from?: number;
}

export class DemoChild {
  readonly lines: OutputLine[] = [];
  readonly exited: Promise<ExitInfo>;
  exit: ExitInfo | undefined;
  private readonly listeners = new Set<(line: OutputLine) => void>();

  constructor(
    readonly name: string,
    readonly proc: ChildProcess,
  ) {
    this.exited = new Promise((resolve) => {
      proc.on('exit', (code, signal) => {
        this.exit = { code, signal };
        resolve(this.exit);
      });
      proc.on('error', () => {
        // spawn failures (ENOENT...) also end in 'exit' or leave pid undefined; the caller
        // sees them through `pid` and `exited`.
        if (!this.exit) {
          this.exit = { code: null, signal: null };
          resolve(this.exit);
        }
      });
    });
    this.follow(proc.stdout, 'stdout');
    this.follow(proc.stderr, 'stderr');
  }

  get pid(): number {
    return this.proc.pid ?? -1;
  }

  get running(): boolean {
    return this.exit === undefined;
  }

  /** Next index: pass as `from` to wait only for lines still to come. */
  get mark(): number {
    return this.lines.length;
  }

  onLine(listener: (line: OutputLine) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Resolves with the first line matching `match`; rejects on timeout or when the child exits. */
  expect(match: (line: OutputLine) => boolean, options: ExpectOptions): Promise<OutputLine> {
    const wanted = (l: OutputLine) =>
      l.index >= (options.from ?? 0) &&
      (options.stream === undefined || l.stream === options.stream) &&
      match(l);
    const seen = this.lines.find(wanted);
    if (seen) return Promise.resolve(seen);

    return new Promise((resolve, reject) => {
      const done = (fn: () => void) => {
        clearTimeout(timer);
        unsubscribe();
        fn();
      };
      const timer = setTimeout(
        () =>
          done(() =>
            reject(
              new DemoFailure(
                `${this.name}: no sign of ${options.what} within ${options.timeoutMs / 1000}s; ` +
                  `its last output:\n${this.tail(12)}`,
              ),
            ),
          ),
        options.timeoutMs,
      );
      const unsubscribe = this.onLine((line) => {
        if (wanted(line)) done(() => resolve(line));
      });
      void this.exited.then((info) =>
        // Let the last lines arrive before deciding that the wanted one never came.
        setTimeout(() => {
          const late = this.lines.find(wanted);
          done(() =>
            late
              ? resolve(late)
              : reject(
                  new DemoFailure(
                    `${this.name} exited (${describeExit(info)}) before ${options.what}; ` +
                      `its last output:\n${this.tail(12)}`,
                  ),
                ),
          );
        }, 50),
      );
    });
  }

  /** The last `n` lines of output, indented, for failure messages. */
  tail(n: number): string {
    const last = this.lines.slice(-n);
    return last.length === 0 ? '  (nothing)' : last.map((l) => `  ${l.text}`).join('\n');
  }

  /** Sends `signal` to the child's whole process group. */
  signal(signal: NodeJS.Signals): void {
    if (!this.running || this.pid <= 0) return;
    try {
      process.kill(-this.pid, signal);
    } catch {
      // The group is already gone.
    }
  }

  private follow(stream: NodeJS.ReadableStream | null, name: StreamName): void {
    if (!stream) return;
    stream.setEncoding('utf8');
    let pending = '';
    const emit = (text: string) => {
      const line: OutputLine = { stream: name, text, index: this.lines.length };
      this.lines.push(line);
      for (const listener of this.listeners) listener(line);
    };
    stream.on('data', (chunk: string) => {
      pending += chunk;
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        emit(pending.slice(0, nl).replace(/\r$/, ''));
        pending = pending.slice(nl + 1);
      }
    });
    stream.on('end', () => {
      if (pending) emit(pending);
      pending = '';
    });
  }
}

export function describeExit(info: ExitInfo): string {
  if (info.signal) return `killed by ${info.signal}`;
  return `exit code ${info.code ?? 'unknown'}`;
}

/** Starts and tracks every child of the demo; `stopAll` leaves none behind. */
export class ChildRegistry {
  readonly children: DemoChild[] = [];
  /** Set by stopAll: a stage still running after Ctrl-C must not start anything new. */
  private closing = false;

  constructor(
    private readonly cwd: string,
    /** Environment of children started from now on. */
    public env: NodeJS.ProcessEnv,
  ) {}

  /** Runs `node <script> <args>` in its own process group, stdin closed, output piped. */
  start(name: string, script: string, args: string[], env: NodeJS.ProcessEnv = {}): DemoChild {
    if (this.closing) throw new DemoFailure(`not starting ${name}: the demo is stopping`);
    const proc = spawn(process.execPath, [script, ...args], {
      cwd: this.cwd,
      env: { ...this.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
      // Its own process group: a signal to -pid reaches it and everything it started.
      detached: true,
    });
    const child = new DemoChild(name, proc);
    if (child.pid <= 0) throw new DemoFailure(`could not start ${name} (${script})`);
    this.children.push(child);
    return child;
  }

  /**
   * Stops every child still running: `signal` first, SIGKILL after `graceMs`. Resolves once
   * all have exited.
   */
  async stopAll(signal: NodeJS.Signals = 'SIGTERM', graceMs = 3000): Promise<void> {
    this.closing = true;
    const running = this.children.filter((c) => c.running);
    for (const c of running) c.signal(signal);
    await Promise.all(
      running.map(async (c) => {
        const timer = setTimeout(() => c.signal('SIGKILL'), graceMs);
        await c.exited;
        clearTimeout(timer);
      }),
    );
  }

  /** Synchronous last resort for process 'exit': SIGKILL every group still alive. */
  killAllNow(): void {
    for (const c of this.children) {
      if (!c.running) continue;
      try {
        process.kill(-c.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
  }
}

/** True when a process with this pid exists (and is not a zombie). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) Z/.test(stat);
  } catch {
    // No /proc (macOS): kill(0) is all we know.
    return true;
  }
}

/**
 * Pids of processes whose command line or environment mentions `needle` (Linux /proc; []
 * elsewhere). The CLI children carry the demo's temp dir only in LOGPROXY_CONFIG_DIR.
 */
export function processesMentioning(needle: string): number[] {
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [];
  }
  const found: number[] = [];
  for (const entry of entries) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      const environ = readProcFile(`/proc/${entry}/environ`);
      const mentions = cmdline.includes(needle) || environ.includes(needle);
      if (mentions && isAlive(Number(entry))) found.push(Number(entry));
    } catch {
      // The process ended while we looked.
    }
  }
  return found;
}

function readProcFile(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    // Another user's process: not ours to worry about.
    return '';
  }
}
