/** Exponential backoff with equal jitter (half fixed, half random), capped; reset after a success. */
export class Backoff {
  private attempt = 0

  constructor (private readonly baseMs = 500, private readonly capMs = 30_000) {}

  /** Delay before the next attempt. `floorMs` raises the minimum (used after auth failures). */
  next (floorMs = 0): number {
    const ceiling = Math.min(this.capMs, this.baseMs * 2 ** this.attempt)
    this.attempt = Math.min(this.attempt + 1, 30)
    return Math.max(floorMs, Math.round(ceiling / 2 + Math.random() * ceiling / 2))
  }

  reset (): void {
    this.attempt = 0
  }
}
