/**
 * Small output helpers shared by commands: JSON documents and aligned tables on stdout, styled
 * messages on stderr, and times the way people read them. chalk is loaded on first use.
 */
import type { IO } from './io.js';
import { formatDuration } from '../util/durations.js';

/** Prints one JSON document on stdout (scripts read it with jq). */
export function writeJson(io: IO, value: unknown): void {
  io.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** Columns padded to their widest cell; the last column is not padded. */
export function formatTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}

export interface Styles {
  bold(text: string): string;
  dim(text: string): string;
  green(text: string): string;
  yellow(text: string): string;
  red(text: string): string;
}

/** Styles for stderr (or stdout with `forStdout`), honouring NO_COLOR / --no-color / TTY. */
export async function stylesFor(io: IO, colorFlag = true, forStdout = false): Promise<Styles> {
  const enabled = colorFlag && (forStdout ? io.stdoutColor : io.stderrColor);
  if (!enabled) {
    const plain = (text: string) => text;
    return { bold: plain, dim: plain, green: plain, yellow: plain, red: plain };
  }
  const { Chalk } = await import('chalk');
  const chalk = new Chalk({ level: 1 });
  return {
    bold: (t) => chalk.bold(t),
    dim: (t) => chalk.dim(t),
    green: (t) => chalk.green(t),
    yellow: (t) => chalk.yellow(t),
    red: (t) => chalk.red(t),
  };
}

/** "in 4m59s" / "3m ago" relative to `nowMs`. */
export function relativeTime(atMs: number, nowMs: number): string {
  const delta = atMs - nowMs;
  return delta >= 0 ? `in ${formatDuration(delta)}` : `${formatDuration(-delta)} ago`;
}

/** "2026-12-03 13:42:10 UTC": unambiguous on any machine, sortable. */
export function formatTimestamp(atMs: number): string {
  return `${new Date(atMs).toISOString().slice(0, 19).replace('T', ' ')} UTC`;
}
