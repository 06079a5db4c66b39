/**
 * CLI start-up cost: `logproxy --help`, `--version` and `login --help` against `node -e 0`
 * measured in the same run, interleaved (one of each per round) so machine noise hits all
 * of them alike. Prints medians and ratios to the reference; the aim is under 1.6x.
 *
 *   npm run build && node dist/bench/startup.js [rounds]
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = path.join(REPO, 'bin', 'logproxy.js');

/** The budget from issue 4: start-up within 1.6 times a bare `node -e 0`. */
export const STARTUP_RATIO_TARGET = 1.6;

interface Case {
  name: string;
  args: string[];
}

const CASES: Case[] = [
  { name: 'node -e 0', args: ['-e', '0'] },
  { name: 'logproxy --help', args: [BIN, '--help'] },
  { name: 'logproxy --version', args: [BIN, '--version'] },
  { name: 'logproxy login --help', args: [BIN, 'login', '--help'] },
];

export interface StartupResult {
  name: string;
  medianMs: number;
  p90Ms: number;
  ratio: number;
}

function quantile(sorted: number[], q: number): number {
  const i = Math.min(sorted.length - 1, Math.max(0, Math.round(q * (sorted.length - 1))));
  return sorted[i]!;
}

export function measureStartup(rounds = 30): StartupResult[] {
  const samples = new Map<string, number[]>(CASES.map((c) => [c.name, []]));
  const env = { ...process.env, NO_COLOR: '1' };
  // One warm-up round fills the page cache for node and every module.
  for (const c of CASES) spawnSync(process.execPath, c.args, { env, stdio: 'ignore' });
  for (let round = 0; round < rounds; round++) {
    for (const c of CASES) {
      const started = performance.now();
      const r = spawnSync(process.execPath, c.args, { env, stdio: 'ignore' });
      const elapsed = performance.now() - started;
      if (r.status !== 0) throw new Error(`${c.name} exited with ${r.status}`);
      samples.get(c.name)!.push(elapsed);
    }
  }
  const sorted = CASES.map((c) => samples.get(c.name)!.sort((a, b) => a - b));
  const reference = quantile(sorted[0]!, 0.5);
  return CASES.map((c, i) => ({
    name: c.name,
    medianMs: quantile(sorted[i]!, 0.5),
    p90Ms: quantile(sorted[i]!, 0.9),
    ratio: quantile(sorted[i]!, 0.5) / reference,
  }));
}

export function formatStartup(results: StartupResult[], rounds: number): string {
  const lines = [
    `CLI start-up, ${rounds} interleaved rounds, Node ${process.version}`,
    '',
    '| command | median | p90 | vs node -e 0 |',
    '|---|---|---|---|',
    ...results.map(
      (r) =>
        `| \`${r.name}\` | ${r.medianMs.toFixed(1)} ms | ${r.p90Ms.toFixed(1)} ms | ` +
        `${r.ratio.toFixed(2)}x |`,
    ),
  ];
  const worst = Math.max(...results.slice(1).map((r) => r.ratio));
  lines.push(
    '',
    `worst ratio ${worst.toFixed(2)}x (target < ${STARTUP_RATIO_TARGET}x): ` +
      (worst < STARTUP_RATIO_TARGET ? 'within target' : 'OVER TARGET'),
  );
  return lines.join('\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const rounds = Number(process.argv[2] ?? 30);
  console.log(formatStartup(measureStartup(rounds), rounds));
}
