/**
 * Frontend ports of services whose last session left, kept for them for the port grace period:
 * a client that restarts or loses its network for a moment finds its port where it left it,
 * not taken by another service (issue 19, item 3).
 */
export class PortHolds {
  private readonly byName = new Map<string, { port: number, until: number, timer: NodeJS.Timeout, free: () => void }>()

  /** Keeps `port` for service `name` for `ms`; `free` runs when the hold ends without a reclaim. */
  hold (name: string, port: number, ms: number, free: () => void): void {
    this.release(name)
    if (ms <= 0) { free(); return }
    const timer = setTimeout(() => this.release(name), ms)
    timer.unref()
    this.byName.set(name, { port, until: Date.now() + ms, timer, free })
  }

  portOf (name: string): number | undefined {
    return this.byName.get(name)?.port
  }

  /** The service `port` is held for and how long it still is, if it is held. */
  holderOf (port: number, now = Date.now()): { name: string, remainingMs: number } | undefined {
    for (const [name, h] of this.byName) if (h.port === port) return { name, remainingMs: Math.max(0, h.until - now) }
    return undefined
  }

  /** The held port of `name`, handed back to it (the hold ends; the port stays taken). */
  reclaim (name: string): number | undefined {
    const h = this.byName.get(name)
    if (h === undefined) return undefined
    clearTimeout(h.timer)
    this.byName.delete(name)
    return h.port
  }

  /** Ends the hold of `name` now and frees its port. */
  release (name: string): void {
    const h = this.byName.get(name)
    if (h === undefined) return
    clearTimeout(h.timer)
    this.byName.delete(name)
    h.free()
  }

  /** Frees every held port (server shutdown). */
  releaseAll (): void {
    for (const name of [...this.byName.keys()]) this.release(name)
  }
}
