/**
 * Durations as people write them in config and flags: "90s", "15m", "1h30m", "500ms", "2d".
 * A bare number is refused: "15" could mean seconds or minutes, and guessing wrong changes a
 * security policy.
 */

const UNIT_MS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

const PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;

export class DurationSyntaxError extends Error {
  constructor(readonly input: string) {
    super(
      `"${input}" is not a duration; write a number with a unit, for example 30s, 15m, 1h30m or 500ms`,
    );
    this.name = 'DurationSyntaxError';
  }
}

/** Parses a duration into milliseconds; throws DurationSyntaxError when malformed. */
export function parseDuration(input: string): number {
  const text = input.trim();
  if (text === '') throw new DurationSyntaxError(input);
  PART.lastIndex = 0;
  let total = 0;
  let consumed = 0;
  for (let m = PART.exec(text); m; m = PART.exec(text)) {
    total += Number(m[1]) * UNIT_MS[m[2]!]!;
    consumed = PART.lastIndex;
  }
  if (consumed !== text.length) throw new DurationSyntaxError(input);
  return Math.round(total);
}

/** Formats milliseconds the short way people read them: 2h5m, 15m, 45s, 800ms. */
export function formatDuration(ms: number): string {
  if (ms < 0) ms = 0;
  if (ms < 1000) return `${Math.round(ms)}ms`;
  let seconds = Math.round(ms / 1000);
  const days = Math.floor(seconds / 86_400);
  seconds -= days * 86_400;
  const hours = Math.floor(seconds / 3600);
  seconds -= hours * 3600;
  const minutes = Math.floor(seconds / 60);
  seconds -= minutes * 60;
  const parts: string[] = [];
  if (days) parts.push(`${days}d`);
  if (hours) parts.push(`${hours}h`);
  if (minutes) parts.push(`${minutes}m`);
  if (seconds && !days) parts.push(`${seconds}s`);
  return parts.join('') || '0s';
}

/**
 * Parses `since` values: a duration back from `nowMs` ("10m") or an RFC 3339 timestamp.
 * Returns epoch milliseconds, or undefined when the input is neither.
 */
export function parseSince(input: string, nowMs: number): number | undefined {
  try {
    return nowMs - parseDuration(input);
  } catch {
    // not a duration; try a timestamp
  }
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/i.test(input)) {
    return undefined;
  }
  const ms = Date.parse(input);
  return Number.isNaN(ms) ? undefined : ms;
}
