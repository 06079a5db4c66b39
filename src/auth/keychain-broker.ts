/**
 * Runs in a child process started by keychain-store.ts and does the actual OS keychain calls.
 *
 * Why a child process: @napi-rs/keyring's calls are synchronous native code, and a Secret
 * Service that owns its D-Bus name but never answers blocks them. In the CLI's own thread that
 * would freeze it; in a worker thread it would block process exit (Node joins worker threads
 * at exit, and a thread stuck in native code never joins). A child process can be killed.
 *
 * Protocol: `{"ready":true}` once started, then one JSON answer on stdout per JSON request
 * line on stdin. Secrets
 * travel only through the pipe, never in argv or the environment. Ends when stdin closes.
 */
import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';

export interface BrokerRequest {
  id: number;
  op: 'probe' | 'get' | 'set' | 'delete';
  service: string;
  account: string;
  /** For `set` only. */
  secret?: string;
}

export type BrokerResponse =
  | { id: number; ok: true; value?: string | null; deleted?: boolean }
  | { id: number; ok: false; message: string };

interface KeyringEntry {
  getPassword(): string | null;
  setPassword(password: string): void;
  deleteCredential(): boolean;
}
type EntryConstructor = new (service: string, account: string, options?: object) => KeyringEntry;

// On Linux the library otherwise falls back to the kernel keyring, which forgets everything at
// logout or reboot: a "keychain" that silently loses sign-ins is worse than a clear error.
const ENTRY_OPTIONS = process.platform === 'linux' ? { linux: { store: 'secret-service' } } : {};

function handle(Entry: EntryConstructor, req: BrokerRequest): BrokerResponse {
  try {
    const entry = new Entry(req.service, req.account, ENTRY_OPTIONS);
    switch (req.op) {
      case 'probe':
        // A write and a delete, not just a read: a locked keyring may answer reads of missing
        // items yet refuse to store one, and `login` is about to store one.
        entry.setPassword('probe');
        entry.deleteCredential();
        return { id: req.id, ok: true };
      case 'get':
        return { id: req.id, ok: true, value: entry.getPassword() };
      case 'set':
        entry.setPassword(req.secret ?? '');
        return { id: req.id, ok: true };
      case 'delete':
        return { id: req.id, ok: true, deleted: entry.deleteCredential() };
    }
  } catch (err) {
    return { id: req.id, ok: false, message: err instanceof Error ? err.message : String(err) };
  }
}

function main(): void {
  let Entry: EntryConstructor | undefined;
  let loadError: string | undefined;
  try {
    Entry = (createRequire(import.meta.url)('@napi-rs/keyring') as { Entry: EntryConstructor })
      .Entry;
  } catch (err) {
    loadError = `the keychain library could not load: ${(err as Error).message}`;
  }

  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
  lines.on('line', (line) => {
    let req: BrokerRequest;
    try {
      req = JSON.parse(line) as BrokerRequest;
    } catch {
      return;
    }
    const res: BrokerResponse = Entry
      ? handle(Entry, req)
      : { id: req.id, ok: false, message: loadError ?? 'no keychain library' };
    process.stdout.write(`${JSON.stringify(res)}\n`);
  });
  lines.on('close', () => process.exit(0));
  // Tells the parent to start its per-call timers: starting Node is not the keychain's fault.
  process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
}

main();
