import { readFileSync } from 'node:fs'
import type { Logger } from '../protocol/index.js'
import type { Server, Socket } from 'node:net'

/**
 * Request timeouts for the HTTP(S) servers on the API and tunnel ports. Node checks them only
 * every 30 s by default, so half-sent requests would outlive a short timeout by that much.
 */
export function requestTimeouts (timeoutMs: number): { headersTimeout: number, requestTimeout: number, connectionsCheckingInterval: number } {
  return { headersTimeout: timeoutMs, requestTimeout: timeoutMs, connectionsCheckingInterval: Math.max(100, Math.min(1000, timeoutMs / 4)) }
}

/** The soft limit on open files of this process (Linux), or undefined where it cannot be read. */
export function openFilesLimit (text?: string): number | undefined {
  try {
    const m = /^Max open files\s+(\d+|unlimited)\s/m.exec(text ?? readFileSync('/proc/self/limits', 'utf8'))
    return m === null || m[1] === 'unlimited' ? undefined : Number(m[1])
  } catch {
    return undefined
  }
}

/** An address holding fewer connections than this still gets in when the budget runs low. */
const FEW = 8
/** Refusals are logged at most this often per port (a flood must not flood the log too). */
const LOG_EVERY_MS = 10_000

/**
 * File descriptors for API and tunnel-port connections, one budget per process (the limit is
 * the process's). A quarter of the limit (at least 256) is kept for frontend connections,
 * backends and files: past that, only addresses holding few connections get in (a health check,
 * a new tunnel), up to half of the reserve; beyond it every new connection is refused at once.
 */
export class FdBudget {
  open = 0
  readonly limit: number
  readonly reserve: number

  constructor (limit = openFilesLimit() ?? Infinity) {
    this.limit = limit
    this.reserve = Number.isFinite(limit) ? Math.min(limit / 2, Math.max(256, Math.floor(limit / 4))) : 0
  }

  /** Why a new connection from an address holding `held` is refused, or undefined. */
  refusal (held: number): string | undefined {
    if (this.open < this.limit - this.reserve) return undefined
    if (held < FEW && this.open < this.limit - this.reserve / 2) return undefined
    return `file descriptors are running low (${this.open} API and tunnel connections open, limit ${this.limit})`
  }
}

export const processFdBudget = new FdBudget()

export interface GuardOptions {
  /** Connections one source address may hold open on this port. */
  perAddress: number
  /** For log lines: 'HTTP API port', 'tunnel port'. */
  what: string
  log: Logger
  budget?: FdBudget
}

/**
 * Caps connections per source address on `server` and counts them against the fd budget;
 * refused ones are closed before a byte is read. Runs before the server's own connection
 * listener (TLS, HTTP), so a refused connection costs nothing more.
 */
export function guardConnections (server: Server, opts: GuardOptions): void {
  const budget = opts.budget ?? processFdBudget
  const perAddress = new Map<string, number>()
  let refused = 0
  let loggedAt = -Infinity
  server.prependListener('connection', (socket: Socket) => {
    const from = socket.remoteAddress ?? '?'
    const held = perAddress.get(from) ?? 0
    const reason = held >= opts.perAddress
      ? `${from} already holds ${held} connections, the most allowed per address`
      : budget.refusal(held)
    if (reason !== undefined) {
      socket.on('error', () => {})
      socket.destroy()
      refused++
      if (Date.now() - loggedAt >= LOG_EVERY_MS) {
        opts.log.warn(`${opts.what}: refusing new connections: ${reason} (${refused} refused since the last such line)`)
        loggedAt = Date.now()
        refused = 0
      }
      return
    }
    perAddress.set(from, held + 1)
    budget.open++
    socket.once('close', () => {
      budget.open--
      const n = (perAddress.get(from) ?? 1) - 1
      if (n === 0) perAddress.delete(from); else perAddress.set(from, n)
    })
  })
  // Near the fd limit accept() fails (EMFILE); without a listener that error would end the process.
  server.on('error', (err: NodeJS.ErrnoException) => {
    if (err.syscall === 'accept') opts.log.warn(`${opts.what}: accept failed: ${err.code ?? err.message}`)
  })
}
