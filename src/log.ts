import { pino, destination, type Logger, type LevelWithSilent } from 'pino';

export function createLogger(level: LevelWithSilent): Logger {
  // Logs go to stderr so that commands printing results (ports, reconcile) keep stdout clean.
  return pino({ level, base: { name: 'batchbridge' } }, destination({ fd: 2, sync: false }));
}
