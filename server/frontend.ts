import { createServer } from 'node:net'
import type { Server, Socket } from 'node:net'

/** A TCP listener for one service's frontend port. Connections arrive paused, half-open allowed. */
export class Frontend {
  private readonly server: Server
  private readonly sockets = new Set<Socket>()
  /** host:port of a listener bound to one address (not 0.0.0.0 or ::). */
  private boundTo: string | undefined

  private constructor (server: Server) {
    this.server = server
  }

  static async listen (port: number, host: string | undefined, onConnection: (socket: Socket) => void): Promise<Frontend> {
    const server = createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true })
    const frontend = new Frontend(server)
    // One listener for every socket (a listener's `this` is the socket; 'close' comes once, so
    // on() and no once() wrapper): no closure kept per connection.
    const forget = function (this: Socket): void { frontend.sockets.delete(this) }
    server.on('connection', (socket) => {
      frontend.sockets.add(socket)
      socket.on('close', forget)
      onConnection(socket)
    })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen({ port, host, backlog: 1024 }, () => {
        server.off('error', reject)
        resolve()
      })
    })
    server.on('error', () => { /* accept errors (EMFILE) are transient; the listener stays up */ })
    const bound = server.address()
    if (bound !== null && typeof bound === 'object' && bound.address !== '0.0.0.0' && bound.address !== '::') {
      frontend.boundTo = `${bound.address}:${bound.port}`
    }
    return frontend
  }

  /**
   * The address:port a connection was made to. Reading it from the socket costs a getsockname()
   * per connection; a listener bound to one address already knows the answer.
   */
  destinationOf (socket: Socket): string {
    return this.boundTo ?? `${socket.localAddress ?? '?'}:${socket.localPort ?? 0}`
  }

  get connections (): number {
    return this.sockets.size
  }

  /** Stops accepting; resolves once every open connection has closed too. */
  async stopAccepting (): Promise<void> {
    await new Promise<void>(resolve => this.server.close(() => resolve()))
  }

  destroyConnections (): void {
    for (const s of this.sockets) s.destroy()
  }

  /** Stops accepting and closes every open connection. */
  async close (): Promise<void> {
    const stopped = this.stopAccepting()
    this.destroyConnections()
    await stopped
  }
}
