/**
 * `npm run demo` end to end: the real gateway, the real CLI, the real embedded provider. The
 * demo runs non-interactively (auto-approved sign-ins) with HOME pointed at an empty folder,
 * and the test checks that every stage of the story appeared in order, that it exited 0,
 * that none of its processes is left and that nothing was written to HOME.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isAlive, processesMentioning } from '../scripts/demo-process.js';
import { approveDeviceCode, browserSkipReason, launchBrowser } from './helpers/browser.js';
import { formatAuditLine } from '../scripts/demo-output.js';
import { gapProblem, sequenceOf } from '../scripts/demo-setup.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const DEMO = path.join(REPO, 'dist', 'scripts', 'demo.js');

interface Run {
  code: number | null;
  output: string;
}

function runDemo(
  args: string[],
  home: string,
  t: { after(fn: () => void): void },
  onOutput: (text: string) => void = () => {},
  onStart: (pid: number) => void = () => {},
): Promise<Run> {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('LOGPROXY_') && !k.startsWith('XDG_')) env[k] = v;
  }
  const child = spawn(process.execPath, [DEMO, ...args], {
    cwd: REPO,
    env: { ...env, HOME: home, NO_COLOR: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  onStart(child.pid!);
  t.after(() => {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // Already gone: the normal case.
    }
  });
  let output = '';
  const add = (s: string) => {
    output += s;
    onOutput(output);
  };
  child.stdout.setEncoding('utf8').on('data', add);
  child.stderr.setEncoding('utf8').on('data', add);
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, output })));
}

/** Asserts that each pattern matches, each after the previous one; returns the matches. */
function inOrder(output: string, patterns: RegExp[]): RegExpExecArray[] {
  let from = 0;
  const found: RegExpExecArray[] = [];
  for (const p of patterns) {
    const rest = output.slice(from);
    const m = p.exec(rest);
    assert.ok(m, `expected ${p} after position ${from} of the demo's output:\n${output}`);
    from += m.index + m[0].length;
    found.push(m);
  }
  return found;
}

test(
  'npm run demo shows every stage, exits 0 and leaves nothing behind',
  { timeout: 240_000 },
  async (t) => {
    const home = mkdtempSync(path.join(os.tmpdir(), 'logproxy-demo-home-'));
    t.after(() => rmSync(home, { recursive: true, force: true }));

    const run = await runDemo([], home, t);
    const out = run.output;
    assert.equal(run.code, 0, `the demo failed:\n${out}`);

    const tempDir = /temporary directory: (\S+)/.exec(out)?.[1];
    assert.ok(tempDir, 'the demo names its temporary directory');

    inOrder(out, [
      /\[1\/9\] Start a development gateway/,
      /your real config and keychain are untouched/,
      /ok gateway answers at http:\/\/127\.0\.0\.1:\d+/,
      /\[2\/9\] Sign in with the device flow/,
      /login \|.*\b[A-Z0-9]{4}-?[A-Z0-9]{4}\b/,
      /auto-approved as alice \(development provider\)/,
      /ok signed in as alice/,
      /targets \| app-logs +file/,
      /targets \| demo-logs +demo/,
      /\$ logproxy tail demo-logs -n 3/,
      /tail \| \S+ demo /,
      /\[3\/9\] Open a tunnel/,
      /connect \| listening/,
      /ok tunnel listening/,
      /\[4\/9\] Follow the logs/,
      /tail \| .*seq=1\b/,
      /ok logs flowing: \d+ lines/,
      /\[5\/9\] Go quiet/,
      /connect \| warning/,
      /ok idle warning received/,
      /ok session ended: the gateway expired it \(reason idle_timeout\)/,
      /\[6\/9\] Sign in again, inline/,
      // One sign-in per re-authentication: exactly one new code.
      / code [A-Z0-9]{4}-?[A-Z0-9]{4} auto-approved as alice \(development provider\)/,
      /ok re-authenticated/,
      /\[7\/9\] Logs resume without a gap/,
      /ok no line lost or repeated: (\d+) lines, 1\.\.\1\b/,
      /\[8\/9\] Tear down/,
      /ok logproxy tail exited/,
      /ok logproxy connect exited/,
      /ok gateway stopped/,
      /\[9\/9\] The audit trail/,
      /audit \| .*session\.created/,
      /audit \| .*session\.warned/,
      /audit \| .*session\.expired .*reason=idle_timeout/,
      /audit \| .*session\.created/,
      /ok no process left behind \(checked pids: .*\)$/m,
      /Demo complete\./,
    ]);

    // The tail's own output proves the count: every seq from 1 to N once, in order.
    const seqs = out
      .split('\n')
      .filter((l) => /^\s+tail \| /.test(l))
      .map((l) => sequenceOf(l))
      .filter((n): n is number => n !== undefined);
    const n = Number(/no line lost or repeated: (\d+) lines/.exec(out)![1]);
    assert.equal(gapProblem(seqs, n), undefined);
    assert.ok(n >= 10, `expected at least 10 lines, saw ${n}`);

    // No process left: the pids the demo reports, and anything mentioning its temp dir.
    const pids = [.../checked pids: (.*)\)$/m.exec(out)![1]!.matchAll(/=(\d+)/g)].map((m) =>
      Number(m[1]),
    );
    assert.ok(pids.length >= 4, `expected gateway, login, connect and tail pids: ${pids}`);
    for (const pid of pids) assert.equal(isAlive(pid), false, `pid ${pid} is still running`);
    assert.deepEqual(processesMentioning(tempDir), []);
    assert.equal(existsSync(tempDir), false, 'the temporary directory is removed');

    // Nothing in the person's own config, state or keychain files.
    assert.deepEqual(readdirSync(home), []);
  },
);

test(
  'npm run demo -- --interactive waits for a person to approve each code in a browser',
  { timeout: 300_000, skip: browserSkipReason() },
  async (t) => {
    const home = mkdtempSync(path.join(os.tmpdir(), 'logproxy-demo-home-'));
    t.after(() => rmSync(home, { recursive: true, force: true }));
    const browser = await launchBrowser();
    t.after(() => browser.close());

    // Every verification URL the demo relays (login's, then connect's re-authentication) is
    // approved once, as alice, through the provider's real pages.
    const approved = new Set<string>();
    // Each settles with undefined or the failure, so nothing rejects unobserved meanwhile.
    const approvals: Array<Promise<string | undefined>> = [];
    const run = await runDemo(['--interactive'], home, t, (output) => {
      for (const m of output.matchAll(
        /http:\/\/127\.0\.0\.1:\d+\/oidc\/device\?user_code=[A-Z-]+/g,
      )) {
        if (approved.has(m[0])) continue;
        approved.add(m[0]);
        const url = m[0];
        approvals.push(
          approveDeviceCode(browser.context, url, 'alice').then(
            () => undefined,
            (err: unknown) => `approving ${url} in the browser failed: ${String(err)}`,
          ),
        );
      }
    });
    const failures = (await Promise.all(approvals)).filter(Boolean);
    assert.deepEqual(failures, []);

    assert.equal(run.code, 0, `the interactive demo failed:\n${run.output}`);
    // One code for the login and exactly one for the re-authentication.
    assert.equal(approved.size, 2, `codes shown: ${[...approved].join(' ')}`);
    assert.doesNotMatch(run.output, /auto-approved/);
    inOrder(run.output, [
      /approve the code in your browser/,
      /ok signed in as alice/,
      /\[6\/9\] Sign in again, inline/,
      /approve the new code in your browser/,
      /ok re-authenticated/,
      /ok no line lost or repeated: (\d+) lines, 1\.\.\1\b/,
      /Demo complete\./,
    ]);
    assert.deepEqual(readdirSync(home), []);
  },
);

test('Ctrl-C stops the demo at once and leaves no process and no temp dir', async (t) => {
  const home = mkdtempSync(path.join(os.tmpdir(), 'logproxy-demo-home-'));
  t.after(() => rmSync(home, { recursive: true, force: true }));

  let interrupted = false;
  let demoPid = 0;
  const run = await runDemo(
    [],
    home,
    t,
    (output) => {
      // Interrupt while the tunnel is open and logs flow: the most processes are running.
      if (!interrupted && /\[4\/9\] Follow the logs/.test(output)) {
        interrupted = true;
        process.kill(demoPid, 'SIGINT');
      }
    },
    (pid) => (demoPid = pid),
  );

  assert.ok(interrupted, `the demo never reached stage 4:\n${run.output}`);
  assert.equal(run.code, 130, run.output);
  assert.match(run.output, /interrupted: stopping every process the demo started/);
  const tempDir = /temporary directory: (\S+)/.exec(run.output)![1]!;
  const checked = /no process left behind \(checked pids: (.*)\)$/m.exec(run.output);
  assert.ok(checked, `the demo did not check its children:\n${run.output}`);
  const pids = [...checked[1]!.matchAll(/=(\d+)/g)].map((m) => Number(m[1]));
  assert.ok(pids.length >= 4, `expected gateway, login, connect and tail pids: ${pids}`);
  for (const pid of pids) assert.equal(isAlive(pid), false, `pid ${pid} is still running`);
  assert.deepEqual(processesMentioning(tempDir), []);
  assert.equal(existsSync(tempDir), false, 'the temporary directory is removed');
  assert.deepEqual(readdirSync(home), []);
});

test('npm run demo -- --help explains the options and runs nothing', async (t) => {
  const home = mkdtempSync(path.join(os.tmpdir(), 'logproxy-demo-home-'));
  t.after(() => rmSync(home, { recursive: true, force: true }));
  const run = await runDemo(['--help'], home, t);
  assert.equal(run.code, 0);
  assert.match(run.output, /--interactive/);
  assert.doesNotMatch(run.output, /Start a development gateway/);
});

test('the gap check finds lost, repeated and missing lines', () => {
  assert.equal(gapProblem([1, 2, 3], 3), undefined);
  assert.match(gapProblem([1, 2, 4], 4)!, /lines 3\.\.3 are missing/);
  assert.match(gapProblem([1, 2, 2, 3], 3)!, /line 2 arrived again/);
  assert.match(gapProblem([1, 2], 3)!, /saw 2 lines but 3 were written/);
  assert.equal(sequenceOf('12:00:01 app.log INFO seq=42 GET /healthz 200 3ms'), 42);
  assert.equal(sequenceOf('no number here'), undefined);
});

test('audit lines are shown compactly and never lose a field', () => {
  const line = JSON.stringify({
    ts: '2026-01-01T10:00:05.000Z',
    event: 'session.expired',
    session_id: 'ses_0123456789abcdefghijkl',
    subject: 'alice',
    target: 'app-logs',
    reason: 'idle_timeout',
    remaining_s: 4,
  });
  const shown = formatAuditLine(line);
  assert.match(shown, /^10:00:05 {2}session\.expired/);
  assert.match(shown, /alice/);
  assert.match(shown, /reason=idle_timeout/);
  assert.match(shown, /remaining_s=4/);
  assert.equal(formatAuditLine('not json'), 'not json');
});
