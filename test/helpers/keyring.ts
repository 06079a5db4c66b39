/**
 * Runs a Node script against a REAL Secret Service: a private D-Bus session
 * (`dbus-run-session`) with its own `gnome-keyring-daemon`, unlocked with a password on stdin,
 * its keyring files in a fresh temp HOME. Nothing touches the developer's own keyring.
 *
 * The script sees `LOGPROXY_TEST_GKD_PID` (the daemon's pid, so a test can SIGSTOP it to
 * simulate a hung Secret Service) and whatever `env` the caller adds.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';

const TOOLS = ['dbus-run-session', 'dbus-send', 'gnome-keyring-daemon'] as const;

/** Which of the tools a real Secret Service needs are missing from PATH. */
export function missingSecretServiceTools(): string[] {
  return TOOLS.filter((tool) => spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0);
}

/**
 * True when the tools are there. Otherwise: under CI=true the test FAILS (CI must install
 * them, see .ci/run); elsewhere it is skipped with the reason.
 */
export function requireSecretServiceTools(t: TestContext): boolean {
  const missing = missingSecretServiceTools();
  if (missing.length === 0) return true;
  const reason = `needs ${missing.join(', ')} (apt-get install dbus gnome-keyring)`;
  if (process.env.CI === 'true') throw new Error(`CI must provide a Secret Service: ${reason}`);
  t.skip(reason);
  return false;
}

export interface ScriptResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

// Started under its own bus; waits until the daemon owns org.freedesktop.secrets, because the
// first keyring call would otherwise race the daemon's start-up (and D-Bus activation would
// start a second, locked daemon).
const WRAPPER = `
printf '%s' "$LOGPROXY_TEST_KEYRING_PASSWORD" |
  gnome-keyring-daemon --foreground --unlock --components=secrets >/dev/null 2>&1 &
gkd=$!
i=0
until dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \\
    org.freedesktop.DBus.NameHasOwner string:org.freedesktop.secrets 2>/dev/null |
    grep -q 'boolean true'; do
  i=$((i+1)); if [ $i -gt 200 ]; then echo "gnome-keyring-daemon did not start" >&2; exit 97; fi
  sleep 0.05
done
LOGPROXY_TEST_GKD_PID=$gkd "$@"
rc=$?
kill -CONT $gkd 2>/dev/null; kill $gkd 2>/dev/null; wait $gkd 2>/dev/null
exit $rc
`;

/**
 * Runs `node script ...args` inside a private session bus with an unlocked gnome-keyring.
 * Resolves when the script (and the daemon) have ended; a script that runs longer than
 * `timeoutMs` is killed with its whole process group.
 */
export async function runWithSecretService(
  script: string,
  args: string[] = [],
  options: {
    env?: NodeJS.ProcessEnv;
    timeoutMs?: number;
    /**
     * false: a session bus only. A keychain call then makes D-Bus start gnome-keyring on
     * demand with no password: a locked keyring, as on a headless box after a reboot.
     */
    startKeyring?: boolean;
  } = {},
): Promise<ScriptResult> {
  const home = await mkdtemp(path.join(os.tmpdir(), 'logproxy-keyring-'));
  try {
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      HOME: home,
      XDG_DATA_HOME: path.join(home, '.local', 'share'),
      XDG_CONFIG_HOME: path.join(home, '.config'),
      XDG_RUNTIME_DIR: home,
      // An empty password leaves no default collection: writes then fail (FIELD-NOTES).
      LOGPROXY_TEST_KEYRING_PASSWORD: 'logproxy-test-keyring',
      ...options.env,
    };
    const wrapper = options.startKeyring === false ? 'exec "$@"' : WRAPPER;
    const argv = ['--', 'sh', '-c', wrapper, 'wrapper', process.execPath, script, ...args];
    return await runDetached('dbus-run-session', argv, env, options.timeoutMs ?? 60_000);
  } finally {
    await rm(home, { recursive: true, force: true });
  }
}

/** Runs a command in its own process group, killing the group on timeout. */
export function runDetached(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  timeoutMs: number,
): Promise<ScriptResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** The last line of a script's stdout parsed as JSON (scripts report one JSON document). */
export function lastJsonLine<T>(result: ScriptResult): T {
  const lines = result.stdout.trim().split('\n').filter(Boolean);
  const last = lines.at(-1);
  if (!last) {
    throw new Error(`script printed nothing (exit ${result.code}); stderr:\n${result.stderr}`);
  }
  return JSON.parse(last) as T;
}
