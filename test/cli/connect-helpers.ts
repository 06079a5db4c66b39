/**
 * Shared pieces of the connect end-to-end tests: a real HTTP upstream behind the gateway, a
 * real sign-in into a temp config dir, and connect run in-process or as the real CLI.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { WebSocketServer } from 'ws';
import { configPaths } from '../../src/cli/config.js';
import { createHttpClient } from '../../src/auth/http.js';
import { signIn } from '../../src/auth/sign-in.js';
import { createTestIO, type TestIO } from '../../src/cli/test-io.js';
import { runConnect, validateConnectOptions } from '../../src/cli/connect.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const CLI_BIN = path.join(REPO, 'bin', 'logproxy.js');

export interface Upstream {
  url: string;
  /** Headers of every request seen, in order. */
  seen: Array<{ url: string; headers: http.IncomingHttpHeaders }>;
  close(): Promise<void>;
}

/** `/echo` answers the request's headers; `/bytes/N` streams N bytes; anything else "ok". */
export async function startUpstream(): Promise<Upstream> {
  const seen: Upstream['seen'] = [];
  const server = http.createServer((req, res) => {
    seen.push({ url: req.url ?? '', headers: req.headers });
    const bytes = /^\/bytes\/(\d+)/.exec(req.url ?? '');
    if (bytes) {
      const total = Number(bytes[1]);
      const chunk = Buffer.alloc(64 * 1024, 120);
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      let sent = 0;
      const pump = (): void => {
        while (sent < total) {
          const n = Math.min(chunk.length, total - sent);
          sent += n;
          if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
            res.once('drain', pump);
            return;
          }
        }
        res.end();
      };
      pump();
      return;
    }
    const body: Buffer[] = [];
    req.on('data', (c: Buffer) => body.push(c));
    req.on('end', () => {
      res.setHeader('content-type', 'application/json');
      res.end(
        JSON.stringify({
          method: req.method,
          url: req.url,
          headers: req.headers,
          body: Buffer.concat(body).toString('utf8'),
        }),
      );
    });
  });
  // WebSocket echo on any path: "x" comes back as "echo:x".
  const wss = new WebSocketServer({ server });
  wss.on('connection', (ws, req) => {
    seen.push({ url: req.url ?? '', headers: req.headers });
    ws.on('message', (data) => ws.send(`echo:${String(data)}`));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    close: () =>
      new Promise((r) => {
        for (const ws of wss.clients) ws.terminate();
        wss.close();
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

export interface SignedIn {
  env: NodeJS.ProcessEnv;
  dir: string;
  stateDir: string;
  cleanup(): Promise<void>;
}

/** A real device login (auto-approved by the gateway's provider), stored in a 0600 file. */
export async function signedIn(gatewayUrl: string): Promise<SignedIn> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'lp-connect-'));
  const env: NodeJS.ProcessEnv = {
    LOGPROXY_CONFIG_DIR: dir,
    LOGPROXY_GATEWAY: gatewayUrl,
    LOGPROXY_TOKEN_STORE: 'file',
  };
  const paths = configPaths(env);
  const client = createHttpClient({ env });
  try {
    await signIn({
      gateway: gatewayUrl,
      profile: 'default',
      paths,
      storeKind: 'file',
      fetch: client,
      callbacks: { onCode: () => undefined },
    });
  } finally {
    await client.close();
  }
  return {
    env,
    dir,
    stateDir: paths.stateDir,
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}

export interface InProcessTunnel {
  url: string;
  sessionId: string;
  secret?: string;
  io: TestIO;
  /** Resolves with the exit code once the tunnel is over. */
  exit: Promise<number>;
  /** `--events json` lines so far. */
  events(): Array<Record<string, unknown>>;
  stop(): Promise<number>;
}

/** Runs `runConnect` in this process with `--events json`; resolves once listening. */
export async function connectInProcess(
  env: NodeJS.ProcessEnv,
  target: string,
  flags: Record<string, unknown> = {},
  opts: { tty?: boolean } = {},
): Promise<InProcessTunnel> {
  const io = createTestIO({ env, tty: opts.tty ?? false });
  const options = validateConnectOptions(target, { events: 'json', reauth: true, ...flags }, false);
  let listening!: (info: { url: string; sessionId: string; secret?: string }) => void;
  const ready = new Promise<{ url: string; sessionId: string; secret?: string }>(
    (r) => (listening = r),
  );
  const exit = runConnect(options, io, { onListening: listening });
  const info = await Promise.race([
    ready,
    exit.then((code) => {
      throw new Error(`connect exited with ${code} before listening:\n${io.stderr.text()}`);
    }),
  ]);
  const events = (): Array<Record<string, unknown>> =>
    io.stderr
      .text()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  return {
    ...info,
    io,
    exit,
    events,
    stop: async () => {
      io.controller.abort('SIGINT');
      return exit;
    },
  };
}

export interface SpawnedConnect {
  child: ChildProcess;
  /** The --json document. */
  doc: Record<string, unknown>;
  stderr(): string;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
}

/** The real CLI: `logproxy connect TARGET --json ...args`; resolves once it printed its doc. */
export async function spawnConnect(
  env: NodeJS.ProcessEnv,
  args: string[],
): Promise<SpawnedConnect> {
  const child = spawn(process.execPath, [CLI_BIN, 'connect', '--json', ...args], {
    env: { PATH: process.env.PATH, HOME: env.LOGPROXY_CONFIG_DIR, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (err += s));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const doc = await new Promise<Record<string, unknown>>((resolve, reject) => {
    child.stdout!.setEncoding('utf8').on('data', (s: string) => {
      out += s;
      const line = out.split('\n')[0];
      if (out.includes('\n') && line) resolve(JSON.parse(line) as Record<string, unknown>);
    });
    void exited.then((code) => reject(new Error(`connect exited ${code}:\n${err}`)));
  });
  return { child, doc, stderr: () => err, exited };
}

/** Resolves once `predicate` holds, checking after each event-loop turn batch (bounded). */
export async function until(
  predicate: () => boolean,
  what: string,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
