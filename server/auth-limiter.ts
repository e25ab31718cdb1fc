/**
 * Counts failed authorizations per source address in a sliding window; an address over the
 * limit is refused without its token being looked at until the window has passed. The table is
 * bounded so a flood of addresses cannot grow it without limit.
 */
export class AuthFailureLimiter {
  private readonly failures = new Map<string, number[]>()

  constructor (
    private readonly maxFailures: number,
    private readonly windowMs: number,
    private readonly maxAddresses = 10_000
  ) {}

  /** Milliseconds until `address` may try again, or 0. */
  blockedFor (address: string, now = Date.now()): number {
    const list = this.prune(address, now)
    if (list.length < this.maxFailures) return 0
    return list[0] + this.windowMs - now
  }

  /** Records a failure; returns true when this one crossed the limit (log it once). */
  fail (address: string, now = Date.now()): boolean {
    const list = this.prune(address, now)
    list.push(now)
    this.failures.delete(address)
    this.failures.set(address, list)
    if (this.failures.size > this.maxAddresses) {
      const oldest = this.failures.keys().next().value
      if (oldest !== undefined) this.failures.delete(oldest)
    }
    return list.length === this.maxFailures
  }

  private prune (address: string, now: number): number[] {
    const list = (this.failures.get(address) ?? []).filter(t => now - t < this.windowMs)
    if (list.length === 0) this.failures.delete(address)
    return list
  }
}
