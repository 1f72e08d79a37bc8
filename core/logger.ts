import { pino, type Logger, type LevelWithSilent } from 'pino'

export type { Logger }

/**
 * Creates a JSON logger writing to stderr (stdout stays free for command output).
 * Components receive a logger as a dependency; only `main` calls this.
 */
export function createLogger(name: string, level: LevelWithSilent = 'info'): Logger {
  return pino({ name, level, base: { component: name } }, pino.destination({ fd: 2, sync: false }))
}

/** A logger that drops everything, for tests and library callers that do not care. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' })
}
