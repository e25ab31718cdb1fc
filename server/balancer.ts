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

  pick (sessions: readonly ServerSession[], exclude: ReadonlySet<ServerSession>, maxActive = Infinity): ServerSession | undefined {
    const open = sessions.filter(s => !s.closing && !exclude.has(s) && s.activeConnections < maxActive)
    const now = Date.now()
    const healthy = open.filter(s => s.healthy(now))
    const usable = healthy.length > 0 ? healthy : open
    if (usable.length === 0) return undefined
    // leastconn narrows to the least loaded; ties (and roundrobin) rotate.
    const candidates = this.policy === 'leastconn' ? leastLoaded(usable) : usable
    const chosen = candidates[this.cursor % candidates.length]
    this.cursor = (this.cursor + 1) % Number.MAX_SAFE_INTEGER
    return chosen
  }
}

function leastLoaded (sessions: ServerSession[]): ServerSession[] {
  const min = Math.min(...sessions.map(s => s.activeConnections))
  return sessions.filter(s => s.activeConnections === min)
}
