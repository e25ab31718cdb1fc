import type { ServerSession } from './session.js'

export const LB_POLICIES = ['roundrobin', 'leastconn'] as const
export type LbPolicy = typeof LB_POLICIES[number]

/**
 * Chooses the session for the next frontend connection among those not yet tried. Closing
 * sessions get nothing new; unhealthy ones (backend failing) only when no healthy one is left.
 */
export class Balancer {
  private cursor = 0

  constructor (private readonly policy: LbPolicy = 'roundrobin') {}

  pick (sessions: readonly ServerSession[], exclude: ReadonlySet<ServerSession>): ServerSession | undefined {
    const open = sessions.filter(s => !s.closing && !exclude.has(s))
    const now = Date.now()
    const healthy = open.filter(s => s.healthy(now))
    const usable = healthy.length > 0 ? healthy : open
    if (usable.length === 0) return undefined
    if (this.policy === 'leastconn') {
      let best = usable[0]
      for (const s of usable) if (s.activeConnections < best.activeConnections) best = s
      return best
    }
    const chosen = usable[this.cursor % usable.length]
    this.cursor = (this.cursor + 1) % Number.MAX_SAFE_INTEGER
    return chosen
  }
}
