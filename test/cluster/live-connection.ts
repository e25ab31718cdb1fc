import { once } from 'node:events'
import { connect } from 'node:net'
import { randomBytes } from 'node:crypto'
import type { Socket } from 'node:net'

/**
 * A frontend connection to a namedEcho backend kept busy: rounds of 16 KiB sent and checked
 * byte for byte on their way back, until stop() or the connection ends.
 */
export class LiveConnection {
  who = ''
  rounds = 0
  mismatches = 0
  /** When it closed (Date.now()), and how. */
  closedAt?: number
  error?: string
  private buf = Buffer.alloc(0)
  private expected?: Buffer
  private roundDone?: () => void
  private stopped = false
  readonly finished: Promise<void>

  private constructor (private readonly socket: Socket) {
    socket.on('data', (c: Buffer) => this.onData(c))
    socket.on('error', (err: NodeJS.ErrnoException) => { this.error ??= err.code ?? err.message })
    this.finished = new Promise(resolve => socket.once('close', () => {
      this.closedAt = Date.now()
      this.error ??= 'closed'
      this.roundDone?.()
      resolve()
    }))
  }

  static async open (port: number, host: string): Promise<LiveConnection> {
    const c = new LiveConnection(connect({ port, host }))
    await once(c.socket, 'connect')
    const deadline = Date.now() + 10_000
    while (c.who === '' && c.closedAt === undefined && Date.now() < deadline) await c.round()
    if (c.who === '') throw new Error(`no backend answered through ${host}:${port} (${c.error ?? 'no greeting'})`)
    void c.run()
    return c
  }

  private onData (chunk: Buffer): void {
    this.buf = Buffer.concat([this.buf, chunk])
    if (this.who === '') {
      const nl = this.buf.indexOf(10)
      if (nl < 0) return
      this.who = this.buf.subarray(0, nl).toString()
      this.buf = this.buf.subarray(nl + 1)
      if (this.expected === undefined) this.roundDone?.()
    }
    if (this.expected !== undefined && this.buf.length >= this.expected.length) {
      if (!this.buf.subarray(0, this.expected.length).equals(this.expected)) this.mismatches++
      this.buf = this.buf.subarray(this.expected.length)
      this.expected = undefined
      this.roundDone?.()
    }
  }

  /** One round: the greeting when it has not come yet, else 16 KiB there and back. */
  private async round (): Promise<void> {
    if (this.closedAt !== undefined) return
    await new Promise<void>(resolve => {
      this.roundDone = resolve
      if (this.who === '') return
      this.expected = randomBytes(16 * 1024)
      this.socket.write(this.expected)
    })
    if (this.who !== '' && this.closedAt === undefined && this.expected === undefined) this.rounds++
  }

  private async run (): Promise<void> {
    // Bounded: at most 1e6 rounds (a test stops it long before).
    for (let i = 0; i < 1e6 && !this.stopped && this.closedAt === undefined; i++) await this.round()
  }

  /** Rounds completed so far, once `more` further rounds are done (or it closed). */
  async advance (more: number, timeoutMs = 10_000): Promise<number> {
    const target = this.rounds + more
    const deadline = Date.now() + timeoutMs
    while (this.rounds < target && this.closedAt === undefined && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 10))
    return this.rounds
  }

  async stop (): Promise<void> {
    this.stopped = true
    this.socket.end()
    await Promise.race([this.finished, new Promise(resolve => setTimeout(resolve, 2000))])
    this.socket.destroy()
  }
}
