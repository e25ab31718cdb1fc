import winston from 'winston'

export type Logger = winston.Logger
export const LOG_LEVELS = ['error', 'warn', 'info', 'debug'] as const
export type LogLevel = typeof LOG_LEVELS[number]

/**
 * A winston logger writing one line per event to stderr (stdout stays free for data, e.g.
 * stdinproxy). Nothing secret is ever passed to it: callers log names, ports and addresses only.
 */
export function createLogger (level: LogLevel = 'info', label = 'reverselb'): Logger {
  return skipDisabledLevels(winston.createLogger({
    level,
    format: winston.format.combine(
      winston.format.timestamp(),
      winston.format.printf(({ timestamp, level, message, ...meta }) => {
        const extra = Object.keys(meta).length > 0 ? ' ' + JSON.stringify(meta) : ''
        return `${String(timestamp)} ${level.toUpperCase()} [${label}] ${String(message)}${extra}`
      })
    ),
    transports: [new winston.transports.Console({ stderrLevels: [...LOG_LEVELS] })]
  }))
}

/**
 * winston runs every message through its stream and formats (timestamp, printf) before the
 * transport drops it for its level: per tunneled connection that was measurable. A call below the
 * current level (which may still be changed at run time) now returns at once.
 */
function skipDisabledLevels (logger: Logger): Logger {
  for (const level of LOG_LEVELS) {
    const write: winston.LeveledLogMethod = logger[level].bind(logger)
    logger[level] = ((...args: Parameters<winston.LeveledLogMethod>) => logger.isLevelEnabled(level) ? write(...args) : logger) as winston.LeveledLogMethod
  }
  return logger
}

/** Library default: only warnings and errors, so an embedding program is not flooded. */
export function defaultLogger (label: string): Logger {
  return createLogger('warn', label)
}
