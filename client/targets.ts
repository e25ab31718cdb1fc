import { once } from 'node:events'
import { connect } from 'node:net'
import { formatEndpoint } from './endpoint.js'
import type { Socket } from 'node:net'

/**
 * The backends a client relays to: several addresses on one port, taken round robin; when one
 * refuses or times out the next is tried. Updates apply to the next connection.
 */
export class Targets {
  private addresses: string[]
  private port: number
  private cursor = 0

  constructor (addresses: string[], port: number) {
    this.addresses = [...addresses]
    this.port = port
  }

  update (addresses?: string[], port?: number): void {
    if (addresses !== undefined) this.addresses = [...addresses]
    if (port !== undefined) this.port = port
  }

  get current (): { addresses: string[], port: number } {
    return { addresses: [...this.addresses], port: this.port }
  }

  /** Connects to a backend, failing over through every address; rejects with all reasons. */
  async dial (timeoutMs: number): Promise<Socket> {
    const { addresses, port } = this
    if (addresses.length === 0) throw new Error('no backend address configured')
    const start = this.cursor++ % addresses.length
    const failures: string[] = []
    for (let i = 0; i < addresses.length; i++) {
      const host = addresses[(start + i) % addresses.length]
      const socket = connect({ host, port, allowHalfOpen: true, noDelay: true })
      const timer = setTimeout(() => socket.destroy(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs)
      try {
        await once(socket, 'connect')
        return socket
      } catch (err) {
        socket.destroy()
        failures.push(`${formatEndpoint({ host, port })}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
      } finally {
        clearTimeout(timer)
      }
    }
    throw new Error(`backend unreachable (${failures.join('; ')})`)
  }
}
