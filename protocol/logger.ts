import winston from 'winston'

export type Logger = winston.Logger
export const LOG_LEVELS = ['error', 'warn', 'info', 'debug'] as const
export type LogLevel = typeof LOG_LEVELS[number]

/**
 * A winston logger writing one line per event to stderr (stdout stays free for data, e.g.
 * stdinproxy). Nothing secret is ever passed to it: callers log names, ports and addresses only.
 */
export function createLogger (level: LogLevel = 'info', label = 'reverselb'): Logger {
  return winston.createLogger({
    level,
    format: winston.format.combine(
      winston.format.timestamp(),
      winston.format.printf(({ timestamp, level, message, ...meta }) => {
        const extra = Object.keys(meta).length > 0 ? ' ' + JSON.stringify(meta) : ''
        return `${String(timestamp)} ${level.toUpperCase()} [${label}] ${String(message)}${extra}`
      })
    ),
    transports: [new winston.transports.Console({ stderrLevels: [...LOG_LEVELS] })]
  })
}

/** Library default: only warnings and errors, so an embedding program is not flooded. */
export function defaultLogger (label: string): Logger {
  return createLogger('warn', label)
}
