/** An environment variable's value, or undefined when unset or empty. */
export function env (name: string): string | undefined {
  const v = process.env[name]
  return v === undefined || v === '' ? undefined : v
}

/** Boolean env vars accept true/false/1/0/yes/no, as the seed's INSECURE_TLS=true did. */
export function envBool (name: string): boolean | undefined {
  const v = env(name)
  if (v === undefined) return undefined
  if (/^(1|true|yes|on)$/i.test(v)) return true
  if (/^(0|false|no|off)$/i.test(v)) return false
  throw new UsageError(`$${name} must be true or false, got "${v}"`)
}

export function envInt (name: string): number | undefined {
  const v = env(name)
  return v === undefined ? undefined : Number(v)
}

/** A mistake in how reverselb was invoked: printed as one line, exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError'
}

export function checkPort (value: unknown, option: string, allowZero = true): void {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < (allowZero ? 0 : 1) || value > 65535) {
    throw new UsageError(`--${option} must be a port number from ${allowZero ? 0 : 1} to 65535, got "${String(value)}"`)
  }
}

/** Runs until SIGINT/SIGTERM, then calls `stop` and exits 0. */
export function onShutdown (stop: () => Promise<void>): void {
  let stopping = false
  const handler = (signal: string): void => {
    if (stopping) process.exit(1)
    stopping = true
    process.stderr.write(`reverselb: ${signal} received, shutting down\n`)
    stop().then(() => process.exit(0), (err: Error) => {
      process.stderr.write(`reverselb: shutdown failed: ${err.message}\n`)
      process.exit(1)
    })
  }
  process.once('SIGINT', handler)
  process.once('SIGTERM', handler)
}

/** --token given at least once (yargs makes a repeated option an array). */
export function requireToken (token: string | string[]): void {
  if ([token].flat().every(t => t === '')) throw new UsageError('Missing required option: --token (or $TOKEN)')
}
