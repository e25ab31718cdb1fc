import { InvalidOptionError } from '../protocol/index.js'
/** A set of ports given as `8000-8099,8888,9000-9010`. */
export class PortRanges {
  readonly ranges: ReadonlyArray<readonly [number, number]>

  constructor (ranges: Array<readonly [number, number]>) {
    this.ranges = ranges
  }

  static parse (text: string): PortRanges {
    const ranges = text.split(',').map(s => s.trim()).filter(s => s !== '').map((part) => {
      const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(part)
      const lo = Number(m?.[1])
      const hi = m?.[2] !== undefined ? Number(m[2]) : lo
      if (m === null || lo < 1 || hi > 65535 || lo > hi) throw new InvalidOptionError(`"${part}" is not a port or port range (e.g. 8000-8099)`)
      return [lo, hi] as const
    })
    if (ranges.length === 0) throw new InvalidOptionError('no ports given')
    return new PortRanges(ranges)
  }

  has (port: number): boolean {
    return this.ranges.some(([lo, hi]) => port >= lo && port <= hi)
  }

  toString (): string {
    return this.ranges.map(([lo, hi]) => lo === hi ? `${lo}` : `${lo}-${hi}`).join(',')
  }
}
