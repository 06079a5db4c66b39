import { PassThrough, Writable } from 'node:stream';
import type { IO } from './io.js';

/** A collecting stream: `text()` returns everything written so far. */
export class BufferStream extends Writable {
  private chunks: Buffer[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.chunks.push(Buffer.from(chunk));
    cb();
  }
  text(): string {
    return Buffer.concat(this.chunks).toString('utf8');
  }
}

export interface TestIO extends IO {
  stdout: BufferStream;
  stderr: BufferStream;
  controller: AbortController;
}

/** An IO for calling `runX` from a test without spawning a process. */
export function createTestIO(options: { tty?: boolean; env?: NodeJS.ProcessEnv } = {}): TestIO {
  const tty = options.tty ?? false;
  const controller = new AbortController();
  return {
    stdout: new BufferStream(),
    stderr: new BufferStream(),
    stdin: new PassThrough(),
    stdoutIsTTY: tty,
    stderrIsTTY: tty,
    stdinIsTTY: tty,
    stdoutColor: false,
    stderrColor: false,
    env: options.env ?? {},
    signal: controller.signal,
    controller,
    canPrompt: () => tty,
  };
}
