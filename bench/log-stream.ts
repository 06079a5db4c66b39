/**
 * Log stream throughput: a large file of 100-byte lines read by `cat` through a pipe (the
 * reference) and streamed through `GET /v1/sessions/{id}/logs` of a real gateway with a
 * real token, both counted by the same reader in this process. Prints lines/s and MB/s for
 * both and the ratio.
 *
 *   npx tsc -p . && node dist/bench/log-stream.js [--lines 3000000] [--runs 3]
 *
 * Aim: at least a million lines a second end to end.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import http from 'node:http';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import {
  gatewayYaml,
  spawnGateway,
  TEST_GATEWAY_AUDIENCE,
  TEST_GATEWAY_CLIENT_ID,
} from '../test/helpers/gateway.js';
import { deviceLogin } from '../test/helpers/device-token.js';
import { arg, LINE_BYTES, writeLogFile } from './lib.js';

/** Counts bytes and newlines of a stream: the same reader for both contestants. */
function count(stream: Readable): Promise<{ bytes: number; lines: number }> {
  return new Promise((resolve, reject) => {
    let bytes = 0;
    let lines = 0;
    stream.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      for (let i = chunk.indexOf(10); i >= 0; i = chunk.indexOf(10, i + 1)) lines++;
    });
    stream.on('end', () => resolve({ bytes, lines }));
    stream.on('error', reject);
  });
}

async function timeCat(file: string) {
  const started = process.hrtime.bigint();
  const child = spawn('cat', [file], { stdio: ['ignore', 'pipe', 'inherit'] });
  const result = await count(child.stdout);
  return { ...result, seconds: Number(process.hrtime.bigint() - started) / 1e9 };
}

async function timeStream(url: string, token: string) {
  const started = process.hrtime.bigint();
  const result = await new Promise<{ bytes: number; lines: number }>((resolve, reject) => {
    http
      .get(url, { headers: { authorization: `Bearer ${token}` } }, (res) => {
        if (res.statusCode !== 200) reject(new Error(`logs answered ${res.statusCode}`));
        count(res).then(resolve, reject);
      })
      .on('error', reject);
  });
  return { ...result, seconds: Number(process.hrtime.bigint() - started) / 1e9 };
}

const fmt = (n: number, digits = 0): string =>
  n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

async function main(): Promise<void> {
  const lines = arg('lines', 3_000_000);
  const runs = arg('runs', 3);
  const dir = await mkdtemp(path.join(tmpdir(), 'lp-bench-'));
  const file = path.join(dir, 'app.log');
  try {
    await writeLogFile(file, lines);
    const fileBytes = (await stat(file)).size;
    console.log(
      `file: ${fmt(lines)} lines of ${LINE_BYTES} bytes (${fmt(fileBytes / 1e6, 1)} MB); ` +
        `node ${process.version}; ${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}`,
    );

    // The gateway runs in its own process, as `cat` does: the reader here competes with neither.
    const extra = `  bench:\n    source: { type: file, paths: [${JSON.stringify(file)}] }\n    allow: ['*']\n`;
    const gw = await spawnGateway(gatewayYaml({ extra }));
    try {
      const { accessToken: token } = await deviceLogin(gw.issuer, TEST_GATEWAY_CLIENT_ID, {
        audience: TEST_GATEWAY_AUDIENCE,
      });
      const created = await fetch(`${gw.url}/v1/sessions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ target: 'bench' }),
      });
      if (!created.ok) throw new Error(`session: ${created.status} ${await created.text()}`);
      const { id } = (await created.json()) as { id: string };
      const logsUrl = `${gw.url}/v1/sessions/${id}/logs`;
      console.log(
        'stream: logproxy-gateway child process, embedded provider token, file target, no follow',
      );

      let bestCat = Infinity;
      let bestStream = Infinity;
      let ndjsonBytes = 0;
      for (let run = 1; run <= runs; run++) {
        const cat = await timeCat(file);
        const stream = await timeStream(logsUrl, token);
        if (cat.lines !== lines || stream.lines !== lines) {
          throw new Error(`line count mismatch: cat ${cat.lines}, stream ${stream.lines}`);
        }
        bestCat = Math.min(bestCat, cat.seconds);
        bestStream = Math.min(bestStream, stream.seconds);
        ndjsonBytes = stream.bytes;
        console.log(
          `run ${run}: cat ${cat.seconds.toFixed(3)} s, log stream ${stream.seconds.toFixed(3)} s`,
        );
      }

      const row = (name: string, s: number, bytes: number): string =>
        `${name.padEnd(12)} ${fmt(lines / s).padStart(12)} lines/s ` +
        `${fmt(fileBytes / 1e6 / s, 1).padStart(8)} MB/s of log data` +
        (bytes ? ` (${fmt(bytes / 1e6 / s, 1)} MB/s of NDJSON)` : '');
      console.log(`best of ${runs}:`);
      console.log(row('cat | reader', bestCat, 0));
      console.log(row('log stream', bestStream, ndjsonBytes));
      console.log(`ratio (log stream / cat): ${(bestCat / bestStream).toFixed(2)}`);
      console.log(`target 1,000,000 lines/s: ${lines / bestStream >= 1e6 ? 'met' : 'NOT met'}`);
    } finally {
      await gw.stop();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
