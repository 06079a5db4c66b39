/**
 * Structured JSON logs to stderr, one event per line (pino). Fields name the session id,
 * subject, target and reason; never a token.
 */
import { destination, pino, stdTimeFunctions } from 'pino';
import type { Logger as PinoLogger } from 'pino';

export type Logger = PinoLogger;

export function createLogger(level: 'debug' | 'info' | 'warn' | 'error' | 'silent'): Logger {
  return pino(
    {
      level,
      base: { service: 'logproxy-gateway' },
      timestamp: stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    // Synchronous: a clean stop (or a crash) never loses the last lines.
    destination({ fd: 2, sync: true }),
  );
}
