/**
 * `logproxy tail` throughput and memory, in one run:
 *
 * 1. Lines/s of the real CLI (`logproxy tail big -o raw` and `-o json`, then `-o text`) into a
 *    pipe that this process reads and counts, next to `cat` of the same file through the same
 *    counting reader. A file target over a generated file of 100-byte lines, a real gateway
 *    (in this process), a real token from the embedded provider's auto-approved device login.
 * 2. Memory: `logproxy tail fast -f -o raw` following a fast `demo` target while the reader
 *    stops reading for 30 s (the pipe paused); the CLI's RSS (/proc/PID/status VmRSS) sampled
 *    every second, printed as first / max / last. Backpressure must keep it flat.
 *
 *   npx tsc -p . && node dist/bench/tail.js [--lines 2000000] [--runs 3] [--pause 30]
 *     [--skip memory,cli,client]
 *
 * Aim: at least a million lines a second with -o raw.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
// The gateway and test helpers are imported in main() only: the client child stays light.
const { CLI_BIN, cliEnv, signIn, startGateway } = process.argv.includes('--client')
  ? ({} as typeof import('../test/tail/cli-env.js') & typeof import('../test/helpers/gateway.js'))
  : {
      ...(await import('../test/tail/cli-env.js')),
      ...(await import('../test/helpers/gateway.js')),
    };
import type { OutputFormat } from '../src/tail/format.js';
import { createReadStream } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { arg, LINE_BYTES, writeLogFile } from './lib.js';

/** Counts newlines of a stream: the same reader for every contestant. */
function countLines(stream: Readable): Promise<number> {
  return new Promise((resolve, reject) => {
    let lines = 0;
    stream.on('data', (chunk: Buffer) => {
      for (let i = chunk.indexOf(10); i >= 0; i = chunk.indexOf(10, i + 1)) lines++;
    });
    stream.on('end', () => resolve(lines));
    stream.on('error', reject);
  });
}

/** Runs a command, counts its stdout lines; seconds from spawn to exit. */
async function timed(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ lines: number; seconds: number }> {
  const started = process.hrtime.bigint();
  const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<number | null>((resolve) => child.once('close', resolve));
  const lines = await countLines(child.stdout);
  const code = await exited;
  if (code !== 0) throw new Error(`${command} ${args.join(' ')} exited with ${code}`);
  return { lines, seconds: Number(process.hrtime.bigint() - started) / 1e9 };
}

async function rssKb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
}

const fmt = (n: number, digits = 0): string =>
  n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

async function main(): Promise<void> {
  const total = arg('lines', 2_000_000);
  const runs = arg('runs', 3);
  const pauseS = arg('pause', 30);
  const dir = await mkdtemp(path.join(tmpdir(), 'lp-bench-tail-'));
  const file = path.join(dir, 'big.log');
  await writeLogFile(file, total);
  const fileBytes = (await stat(file)).size;
  console.log(
    `file: ${fmt(total)} lines of ${LINE_BYTES} bytes (${fmt(fileBytes / 1e6, 1)} MB); ` +
      `node ${process.version}; ${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}`,
  );

  const gw = await startGateway({
    targets: {
      big: { source: { type: 'file', paths: [file] } },
      fast: { source: { type: 'demo', ratePerSec: 50_000, historyLines: 1000, seed: 3 } },
    },
  });
  const user = await signIn(gw.url, gw.issuer);
  const env = cliEnv(user.env);
  try {
    const skip = (process.argv[process.argv.indexOf('--skip') + 1] ?? '').split(',');
    const on = (part: string): boolean => !process.argv.includes('--skip') || !skip.includes(part);
    const gatewayStream = await gatewayCurl(gw.url, dir);
    if (on('cli')) await throughput({ file, total, runs, env, gatewayStream });
    if (on('client')) await clientPath({ dir, file, total, runs, env });
    if (on('memory')) await memory({ env, pauseS });
  } finally {
    await gw.close();
    await user.cleanup();
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * The gateway's own stream for the same file, read by curl (no tail in between): what tail
 * can reach at best end to end. The token goes to curl in a 0600 header file, never argv.
 */
async function gatewayCurl(gatewayUrl: string, dir: string): Promise<[string, string[]]> {
  const { deviceLogin } = await import('../test/helpers/device-token.js');
  const { TEST_GATEWAY_AUDIENCE, TEST_GATEWAY_CLIENT_ID } =
    await import('../test/helpers/gateway.js');
  const discovery = (await (await fetch(`${gatewayUrl}/.well-known/logproxy`)).json()) as {
    issuer: string;
  };
  const tokens = await deviceLogin(discovery.issuer, TEST_GATEWAY_CLIENT_ID, {
    audience: TEST_GATEWAY_AUDIENCE,
  });
  const auth = `authorization: Bearer ${tokens.accessToken}`;
  const created = await fetch(`${gatewayUrl}/v1/sessions`, {
    method: 'POST',
    headers: { authorization: auth.slice(15), 'content-type': 'application/json' },
    body: JSON.stringify({ target: 'big' }),
  });
  const { id } = (await created.json()) as { id: string };
  const headerFile = path.join(dir, 'curl-headers');
  await writeFile(headerFile, `${auth}\n`, { mode: 0o600 });
  return ['curl', ['-sfN', '-H', `@${headerFile}`, `${gatewayUrl}/v1/sessions/${id}/logs`]];
}

async function throughput(o: {
  file: string;
  total: number;
  runs: number;
  env: NodeJS.ProcessEnv;
  gatewayStream: [string, string[]];
}): Promise<void> {
  console.log(`\nthroughput (best of ${o.runs}; the whole CLI run, start-up and session included)`);
  const contestants: Array<[string, string, string[]]> = [
    ['cat', 'cat', [o.file]],
    ['gateway NDJSON', ...o.gatewayStream],
    ['tail -o raw', process.execPath, [CLI_BIN, 'tail', 'big', '-o', 'raw']],
    ['tail -o json', process.execPath, [CLI_BIN, 'tail', 'big', '-o', 'json']],
    ['tail -o text', process.execPath, [CLI_BIN, 'tail', 'big', '-o', 'text']],
  ];
  const best = new Map<string, number>();
  for (let run = 0; run < o.runs; run++) {
    for (const [name, command, args] of contestants) {
      const r = await timed(command, args, o.env);
      if (r.lines !== o.total) throw new Error(`${name}: ${r.lines} lines, want ${o.total}`);
      best.set(name, Math.min(best.get(name) ?? Infinity, r.seconds));
    }
  }
  const catRate = o.total / best.get('cat')!;
  for (const [name] of contestants) {
    const rate = o.total / best.get(name)!;
    console.log(
      `  ${name.padEnd(15)} ${fmt(rate).padStart(12)} lines/s  ${fmt(best.get(name)!, 2)} s` +
        (name === 'cat' ? '' : `  ratio to cat ${fmt(rate / catRate, 3)}`),
    );
  }
  const raw = o.total / best.get('tail -o raw')!;
  const gateway = o.total / best.get('gateway NDJSON')!;
  console.log(
    `  aim >= 1,000,000 lines/s with -o raw: ${raw >= 1e6 ? 'met' : 'NOT met'}; ` +
      `tail -o raw / gateway NDJSON read by curl: ${fmt(raw / gateway, 3)}`,
  );
}

/**
 * tail's own path without the gateway: the gateway's NDJSON for the same file (recorded with
 * `tail -o json`, which passes records through verbatim) served by a plain Node HTTP server
 * (a file read stream piped into the response), read by tail's stream code (`tailLogs` with
 * the CLI's HTTP client, formatting, a writer that waits for drain) in a child process whose
 * stdout is a pipe counted like the others. `curl` of the same server is what the server can
 * give; `cat FILE` the reference. This is the ceiling tail can reach when the gateway keeps up.
 */
async function clientPath(o: {
  dir: string;
  file: string;
  total: number;
  runs: number;
  env: NodeJS.ProcessEnv;
}): Promise<void> {
  const ndjson = path.join(o.dir, 'big.ndjson');
  const out = createWriteStream(ndjson);
  const child = spawn(process.execPath, [CLI_BIN, 'tail', 'big', '-o', 'json'], {
    env: o.env,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  child.stdout.pipe(out);
  await new Promise((resolve) => out.once('close', () => resolve(undefined)));
  const ndjsonBytes = (await stat(ndjson)).size;
  const server = createServer({ highWaterMark: 1 << 20 }, (req, res) => {
    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    createReadStream(ndjson, { highWaterMark: 1 << 20 }).pipe(res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  console.log(
    `\nclient path alone (the recorded NDJSON, ${fmt(ndjsonBytes / 1e6, 1)} MB, from a plain ` +
      "Node server -> tail's stream code in a child -> pipe; best of " +
      `${o.runs})`,
  );
  const me = fileURLToPath(import.meta.url);
  const contestants: Array<[string, string, string[]]> = [
    ['cat FILE', 'cat', [o.file]],
    ['curl server', 'curl', ['-sfN', `${url}/v1/sessions/x/logs`]],
    ['tail code raw', process.execPath, [me, '--client', url, 'raw']],
    ['tail code json', process.execPath, [me, '--client', url, 'json']],
    ['tail code text', process.execPath, [me, '--client', url, 'text']],
    ['raw via fetch', process.execPath, [me, '--client', url, 'raw', 'fetch']],
  ];
  const best = new Map<string, number>();
  try {
    for (let run = 0; run < o.runs; run++) {
      for (const [name, command, args] of contestants) {
        const r = await timed(command, args, o.env);
        if (r.lines !== o.total) throw new Error(`${name}: ${r.lines} lines, want ${o.total}`);
        best.set(name, Math.min(best.get(name) ?? Infinity, r.seconds));
      }
    }
  } finally {
    server.close();
  }
  const ref = o.total / best.get('cat FILE')!;
  const served = o.total / best.get('curl server')!;
  for (const [name] of contestants) {
    const rate = o.total / best.get(name)!;
    console.log(
      `  ${name.padEnd(15)} ${fmt(rate).padStart(12)} lines/s  ${fmt(best.get(name)!, 2)} s` +
        (name === 'cat FILE' ? '' : `  ratio to cat ${fmt(rate / ref, 3)}`) +
        (name.startsWith('tail') ? `  to curl ${fmt(rate / served, 3)}` : ''),
    );
  }
}

/**
 * The child of clientPath: tail's stream code (the CLI's transport, or its HTTP client's fetch
 * with `fetch` last, tailLogs, a writer that waits for drain) reading `URL/v1/sessions/x/logs` once, into stdout.
 */
async function clientChild(url: string, format: OutputFormat, viaFetch: boolean): Promise<void> {
  const { createHttpClient } = await import('../src/auth/http.js');
  const { createStreamTransport } = await import('../src/tail/transport.js');
  const transport = createStreamTransport({
    env: process.env,
    timeoutMs: 30_000,
    bodyTimeoutMs: 60_000,
    serverName: 'the server',
  });
  const { tailLogs } = await import('../src/tail/stream.js');
  const { systemClock } = await import('../src/util/clock.js');
  const client = createHttpClient({ bodyTimeoutMs: 60_000 });
  const out = process.stdout;
  try {
    await tailLogs({
      fetch: client as unknown as (input: string, init?: RequestInit) => Promise<Response>,
      ...(viaFetch ? {} : { request: transport.request }),
      session: {
        acquire: () => Promise.resolve({ baseUrl: url, sessionId: 'x' }),
        token: () => Promise.resolve('bench'),
        refreshToken: () => Promise.resolve('bench'),
        lost: (_id, error) => Promise.reject(error),
      },
      query: { follow: false },
      format: { format },
      write: async (chunk) => {
        if (!out.write(chunk)) await new Promise((resolve) => out.once('drain', resolve));
      },
      clock: systemClock,
      signal: new AbortController().signal,
    });
  } finally {
    await Promise.all([client.close(), transport.close()]);
  }
}

async function memory(o: { env: NodeJS.ProcessEnv; pauseS: number }): Promise<void> {
  console.log(
    `\nmemory: tail fast -f -o raw (demo target, 50,000 lines/s); reader pauses ${o.pauseS} s`,
  );
  const child: ChildProcess = spawn(
    process.execPath,
    [CLI_BIN, 'tail', 'fast', '-f', '-o', 'raw'],
    {
      env: o.env,
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  let lines = 0;
  child.stdout!.on('data', (chunk: Buffer) => {
    for (let i = chunk.indexOf(10); i >= 0; i = chunk.indexOf(10, i + 1)) lines++;
  });
  const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
  await sleep(3_000);
  const readingLines = lines;
  const samples: number[] = [];
  child.stdout!.pause();
  for (let s = 0; s < o.pauseS; s++) {
    samples.push(await rssKb(child.pid!));
    await sleep(1_000);
  }
  samples.push(await rssKb(child.pid!));
  const pausedLines = lines - readingLines;
  child.stdout!.resume();
  await sleep(2_000);
  const resumedLines = lines - readingLines - pausedLines;
  child.kill('SIGINT');
  await new Promise((resolve) => child.once('close', resolve));
  const mb = (kb: number): string => `${fmt(kb / 1024, 1)} MB`;
  console.log(
    `  RSS while paused: first ${mb(samples[0]!)}, max ${mb(Math.max(...samples))}, ` +
      `last ${mb(samples.at(-1)!)} (${samples.length} samples)`,
  );
  console.log(
    `  lines read: ${fmt(readingLines)} in the first 3 s; ${fmt(pausedLines)} during the ` +
      `pause (what the pipe buffer held); ${fmt(resumedLines)} in 2 s after resuming`,
  );
}

const clientAt = process.argv.indexOf('--client');
if (clientAt > 0) {
  const [url, format, via] = process.argv.slice(clientAt + 1);
  await clientChild(url!, format as OutputFormat, via === 'fetch');
} else {
  await main();
}
