/** Pieces every benchmark shares: flags and the generated log file they read. */
import { createWriteStream } from 'node:fs';

/** Size of each generated log line, newline included. */
export const LINE_BYTES = 100;

/** A numeric `--name N` flag, or `fallback`. */
export function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
}

/** Realistic plain log lines, each exactly LINE_BYTES with its newline. */
export async function writeLogFile(file: string, lines: number): Promise<void> {
  const out = createWriteStream(file);
  const services = ['checkout', 'payments', 'search', 'auth'];
  let batch = '';
  for (let i = 0; i < lines; i++) {
    const ts = new Date(Date.UTC(2026, 0, 1) + i).toISOString();
    const head = `${ts} INFO  ${services[i % 4]}: GET /api/v1/orders/${i % 100000} 200 id=${i}`;
    batch += head.padEnd(LINE_BYTES - 1, ' ') + '\n';
    if (batch.length >= 1 << 20) {
      if (!out.write(batch))
        await new Promise<void>((resolve) => out.once('drain', () => resolve()));
      batch = '';
    }
  }
  out.end(batch);
  await new Promise<void>((resolve) => out.once('close', () => resolve()));
}
