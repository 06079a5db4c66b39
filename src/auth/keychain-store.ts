/**
 * Credentials in the OS keychain (macOS Keychain, Windows Credential Manager, the Secret
 * Service on Linux) through @napi-rs/keyring: service `logproxy`, account
 * `${profile}@${gateway}`, the credentials JSON as the password. One entry per gateway and
 * profile, so signing in to a second gateway never overwrites the first.
 *
 * Every keychain call runs in one long-lived child process (keychain-broker.ts) with a
 * timeout: a hung Secret Service can cost a command the timeout, never hang it.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { BrokerRequest, BrokerResponse } from './keychain-broker.js';
import { parseStoredCredentials } from './credentials.js';
import type { StoredCredentials, TokenStore } from './types.js';
import { ErrorCodes, LogproxyError } from '../util/errors.js';

/** The keychain service name under which every logproxy entry lives. */
export const KEYCHAIN_SERVICE = 'logproxy';

/**
 * How long the availability probe may take. A healthy keychain answers in ~25 ms, plus
 * ~150 ms to start the broker process on a busy machine; a Secret Service that takes longer
 * than this is as good as absent for a CLI.
 */
export const KEYCHAIN_PROBE_TIMEOUT_MS = 1_500;

/**
 * How long one read, write or delete may take. Longer than the probe because macOS may ask
 * the person to allow access, and they need a moment to click.
 */
export const KEYCHAIN_CALL_TIMEOUT_MS = 10_000;

/**
 * How long the helper process may take to start and load the keychain library (~150 ms
 * normally; a loaded 2-core CI machine can take seconds). Not counted in the timeouts above.
 */
export const BROKER_START_TIMEOUT_MS = 15_000;

/** The keychain account of one gateway + profile pair. */
export function keychainAccount(gateway: string, profile: string): string {
  return `${profile}@${gateway}`;
}

/** What a probe found. `reason` is for people: "no D-Bus session bus", "did not answer"... */
export type KeychainProbeResult = { available: true } | { available: false; reason: string };

type Pending = {
  resolve: (res: BrokerResponse) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
};

/**
 * A connection to one broker child process. Started on first use; idle, it never keeps the
 * CLI alive (its pipes are unref'd); when the CLI exits its stdin closes and it ends.
 */
export class KeychainBroker {
  private child: ChildProcessWithoutNullStreams | undefined;
  private nextId = 1;
  private pending = new Map<number, Pending>();
  /** Set once the keychain failed to answer in time: later calls fail at once. */
  private hungReason: string | undefined;
  /** Resolves when a broker has loaded the keychain library and reads requests. */
  private started = new WeakMap<ChildProcessWithoutNullStreams, Promise<void>>();
  private starting = 0;

  constructor(
    private readonly options: {
      /** Node executable; default: the running one. */
      execPath?: string;
      /** Environment of the broker (default: this process's, for DBUS_SESSION_BUS_ADDRESS). */
      env?: NodeJS.ProcessEnv;
    } = {},
  ) {}

  /**
   * Sends one request; rejects on timeout (and kills the broker) or if the broker dies.
   * `timeoutMs` counts from when the broker is ready, so a slow start of the helper process
   * on a busy machine is never mistaken for a hung keychain.
   */
  async call(req: Omit<BrokerRequest, 'id'>, timeoutMs: number): Promise<BrokerResponse> {
    if (this.hungReason) throw new Error(this.hungReason);
    const child = this.ensureChild();
    await this.whenStarted(child);
    const id = this.nextId++;

    const answer = new Promise<BrokerResponse>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.hungReason = `the OS keychain did not answer within ${timeoutMs} ms`;
        this.kill(new Error(this.hungReason));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
    });
    this.setReferenced(true);
    child.stdin.write(`${JSON.stringify({ ...req, id })}\n`);
    return answer;
  }

  /** Ends the broker process (pending calls fail). Safe to call twice. */
  close(): void {
    this.kill(new Error('the keychain broker was closed'));
  }

  private async whenStarted(child: ChildProcessWithoutNullStreams): Promise<void> {
    this.starting += 1;
    this.setReferenced(true);
    const timer = setTimeout(() => {
      this.hungReason = `the keychain helper process did not start within ${BROKER_START_TIMEOUT_MS} ms`;
      this.kill(new Error(this.hungReason));
    }, BROKER_START_TIMEOUT_MS);
    try {
      await this.started.get(child);
    } catch (err) {
      throw this.hungReason ? new Error(this.hungReason) : err;
    } finally {
      clearTimeout(timer);
      this.starting -= 1;
      if (this.pending.size === 0 && this.starting === 0) this.setReferenced(false);
    }
  }

  private ensureChild(): ChildProcessWithoutNullStreams {
    if (this.child) return this.child;
    const script = fileURLToPath(new URL('./keychain-broker.js', import.meta.url));
    const child = spawn(this.options.execPath ?? process.execPath, [script], {
      env: this.options.env ?? process.env,
      stdio: ['pipe', 'pipe', 'pipe'],
      windowsHide: true,
    });
    this.child = child;
    let onReady!: () => void;
    let onFailed!: (err: Error) => void;
    const started = new Promise<void>((resolve, reject) => {
      onReady = resolve;
      onFailed = reject;
    });
    started.catch(() => undefined);
    this.started.set(child, started);

    createInterface({ input: child.stdout, crlfDelay: Infinity }).on('line', (line) => {
      let res: BrokerResponse | { ready: true };
      try {
        res = JSON.parse(line) as BrokerResponse | { ready: true };
      } catch {
        return;
      }
      if ('ready' in res) onReady();
      else this.settle(res.id, (p) => p.resolve(res));
    });
    // Native libraries sometimes print to stderr; drain it so the pipe never fills up.
    child.stderr.resume();
    // Writing to a broker that just died raises EPIPE here; its exit handler reports it.
    child.stdin.on('error', () => undefined);
    child.on('error', (err) => {
      onFailed(err);
      this.kill(err);
    });
    child.on('exit', (code, signal) => {
      if (this.child === child) this.child = undefined;
      const err = new Error(`the keychain broker exited (${signal ?? `code ${code}`})`);
      onFailed(err);
      this.failAll(err);
    });
    return child;
  }

  private settle(id: number, fn: (p: Pending) => void): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    clearTimeout(p.timer);
    fn(p);
    if (this.pending.size === 0 && this.starting === 0) this.setReferenced(false);
  }

  private failAll(err: Error): void {
    for (const id of [...this.pending.keys()]) this.settle(id, (p) => p.reject(err));
  }

  private kill(err: Error): void {
    const child = this.child;
    this.child = undefined;
    this.failAll(err);
    if (child) {
      child.stdin.destroy();
      child.kill('SIGKILL');
    }
  }

  /** While calls are pending the broker keeps the CLI alive; idle, it must not. */
  private setReferenced(on: boolean): void {
    const child = this.child;
    if (!child) return;
    const streams = [child.stdin, child.stdout, child.stderr] as unknown as Array<{
      ref?: () => void;
      unref?: () => void;
    }>;
    for (const s of streams) (on ? s.ref : s.unref)?.call(s);
    if (on) child.ref();
    else child.unref();
  }
}

let sharedBroker: KeychainBroker | undefined;

/** The process-wide broker (one child process however many stores use it). */
export function defaultKeychainBroker(): KeychainBroker {
  sharedBroker ??= new KeychainBroker();
  return sharedBroker;
}

/**
 * Checks that the OS keychain answers, within `timeoutMs`. Never throws: the result says why
 * the keychain is unusable so `login` can offer the file fallback.
 */
export async function probeKeychain(
  options: { timeoutMs?: number; broker?: KeychainBroker } = {},
): Promise<KeychainProbeResult> {
  const broker = options.broker ?? defaultKeychainBroker();
  try {
    const res = await broker.call(
      { op: 'probe', service: KEYCHAIN_SERVICE, account: '__logproxy_probe__' },
      options.timeoutMs ?? KEYCHAIN_PROBE_TIMEOUT_MS,
    );
    return res.ok ? { available: true } : { available: false, reason: explain(res.message) };
  } catch (err) {
    return { available: false, reason: explain((err as Error).message) };
  }
}

/** A TokenStore in the OS keychain. */
export class KeychainTokenStore implements TokenStore {
  readonly kind = 'keychain' as const;
  readonly location: string;
  private readonly broker: KeychainBroker;
  private readonly timeoutMs: number;
  private readonly absentIfUnavailable: boolean;

  /**
   * @param options.absentIfUnavailable read() resolves undefined (not signed in) instead of
   *   failing when the keychain is unusable: for profiles nothing says were ever signed in, so
   *   a headless machine says "run logproxy login" rather than talk about D-Bus.
   */
  constructor(
    options: { broker?: KeychainBroker; timeoutMs?: number; absentIfUnavailable?: boolean } = {},
  ) {
    this.broker = options.broker ?? defaultKeychainBroker();
    this.timeoutMs = options.timeoutMs ?? KEYCHAIN_CALL_TIMEOUT_MS;
    this.absentIfUnavailable = options.absentIfUnavailable ?? false;
    this.location = keychainDescription();
  }

  async read(gateway: string, profile: string): Promise<StoredCredentials | undefined> {
    let res: Extract<BrokerResponse, { ok: true }>;
    try {
      res = await this.call('get', gateway, profile);
    } catch (err) {
      if (this.absentIfUnavailable) return undefined;
      throw err;
    }
    if (res.value === null || res.value === undefined) return undefined;
    return parseStoredCredentials(
      res.value,
      `the OS keychain entry ${this.where(gateway, profile)}`,
    );
  }

  async write(creds: StoredCredentials): Promise<void> {
    // One setPassword replaces the whole item: readers see the old or the new JSON, not a mix.
    await this.call('set', creds.gateway, creds.profile, JSON.stringify(creds));
  }

  async delete(gateway: string, profile: string): Promise<boolean> {
    const res = await this.call('delete', gateway, profile);
    return res.deleted === true;
  }

  private async call(
    op: 'get' | 'set' | 'delete',
    gateway: string,
    profile: string,
    secret?: string,
  ): Promise<Extract<BrokerResponse, { ok: true }>> {
    let res: BrokerResponse;
    try {
      const account = keychainAccount(gateway, profile);
      const req = { op, service: KEYCHAIN_SERVICE, account, ...(secret ? { secret } : {}) };
      res = await this.broker.call(req, this.timeoutMs);
    } catch (err) {
      throw keychainCallError(op, explain((err as Error).message), err);
    }
    if (!res.ok) throw keychainCallError(op, explain(res.message));
    return res;
  }

  private where(gateway: string, profile: string): string {
    return `"${KEYCHAIN_SERVICE}/${keychainAccount(gateway, profile)}"`;
  }
}

function keychainCallError(op: string, reason: string, cause?: unknown): LogproxyError {
  const verb = op === 'get' ? 'read from' : op === 'set' ? 'write to' : 'delete from';
  return new LogproxyError(
    ErrorCodes.KEYCHAIN_UNAVAILABLE,
    `could not ${verb} the OS keychain (${reason})`,
    { cause, retryable: reason.includes('did not answer'), details: { reason } },
  );
}

/** "Secret Service (D-Bus)" on Linux, etc.: where `status` says credentials are. */
export function keychainDescription(platform: NodeJS.Platform = process.platform): string {
  if (platform === 'darwin') return 'macOS Keychain';
  if (platform === 'win32') return 'Windows Credential Manager';
  return 'Secret Service (D-Bus)';
}

/** Turns a platform error into a reason a person can act on. */
function explain(message: string): string {
  if (/DBUS_SESSION_BUS_ADDRESS|autolaunch|session bus/i.test(message)) {
    return 'no D-Bus session bus: DBUS_SESSION_BUS_ADDRESS is not set';
  }
  if (/ServiceUnknown|org\.freedesktop\.secrets|was not provided by any/i.test(message)) {
    return 'no Secret Service is running on the session bus';
  }
  if (/no result found/i.test(message)) {
    // gnome-keyring started on demand by D-Bus, without a password, has no default keyring.
    return 'the Secret Service has no usable default keyring (started without a password?)';
  }
  if (/prompt was dismissed|locked/i.test(message)) {
    return 'the keyring is locked and cannot be unlocked without a desktop prompt';
  }
  if (/Did not receive a reply/i.test(message)) {
    return 'the Secret Service did not reply';
  }
  return message.replace(/\s+/g, ' ').trim();
}
