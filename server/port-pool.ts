/** The dynamic frontend ports (`--dynport` .. `--dynport + --dynportcount - 1`). */
export class PortPool {
  private readonly free: Set<number>
  readonly first: number
  readonly count: number

  constructor (first: number, count: number) {
    this.first = first
    this.count = count
    this.free = new Set(Array.from({ length: count }, (_, i) => first + i))
  }

  contains (port: number): boolean {
    return port >= this.first && port < this.first + this.count
  }

  /** Takes the lowest free port (or `preferred` when free), or undefined when exhausted. */
  take (preferred?: number): number | undefined {
    if (preferred !== undefined && this.free.delete(preferred)) return preferred
    for (const port of this.free) {
      this.free.delete(port)
      return port
    }
    return undefined
  }

  /** Marks a pool port busy without choosing it (an explicit registration inside the pool). */
  claim (port: number): void {
    this.free.delete(port)
  }

  release (port: number): void {
    if (this.contains(port)) this.free.add(port)
  }
}
