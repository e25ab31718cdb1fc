import type { ServerEvents } from './events.js'
import type { Service } from './service.js'
import type { ServerSession } from './session.js'
import type { Socket } from 'node:net'

interface ServiceTraffic {
  /** Frontend sockets still open, by `address:port` (the sourceAddress of the server's events). */
  readonly open: Map<string, Socket>
  /** Open sockets relayed by a session whose counters do not include them yet. */
  readonly relayed: Map<string, { socket: Socket, session: ServerSession }>
  closedIn: number
  closedOut: number
  totalConnections: number
}

export interface Bytes { bytesIn: number, bytesOut: number }

/**
 * Live byte counts of frontend connections. A session's own counters only grow when a connection
 * closes; this adds what open connections have moved so far (read from their sockets), so the
 * dashboard shows throughput of long-lived connections too. Counts since the service came up.
 */
export class TrafficTracker {
  private readonly services = new WeakMap<Service, ServiceTraffic>()

  /** A frontend socket `service` accepted (called before it is dispatched). */
  frontendConnection (service: Service, socket: Socket): void {
    const t = this.of(service)
    const key = sourceKey(socket)
    t.open.set(key, socket)
    // on(), not once(): 'close' comes once, and once() keeps a wrapper per connection.
    socket.on('close', () => {
      t.closedIn += socket.bytesRead
      t.closedOut += socket.bytesWritten
      if (t.open.get(key) === socket) t.open.delete(key)
    })
  }

  readonly connectionOpened = ({ service, session, sourceAddress }: ServerEvents['connectionOpened'][0]): void => {
    const t = this.of(service)
    t.totalConnections++
    const socket = t.open.get(sourceAddress)
    if (socket !== undefined) t.relayed.set(sourceAddress, { socket, session })
  }

  readonly connectionClosed = ({ service, sourceAddress }: ServerEvents['connectionClosed'][0]): void => {
    // The session's counters now include this connection.
    this.of(service).relayed.delete(sourceAddress)
  }

  /** Bytes through the service's frontend since it came up, open connections included. */
  serviceBytes (service: Service): Bytes {
    const t = this.of(service)
    let bytesIn = t.closedIn
    let bytesOut = t.closedOut
    for (const s of t.open.values()) { bytesIn += s.bytesRead; bytesOut += s.bytesWritten }
    return { bytesIn, bytesOut }
  }

  /** Connections the service relayed to a session since it came up. */
  totalConnections (service: Service): number {
    return this.of(service).totalConnections
  }

  /** The session's counters plus what its open connections moved so far. */
  sessionBytes (service: Service, session: ServerSession): Bytes {
    let bytesIn = session.bytesIn
    let bytesOut = session.bytesOut
    for (const r of this.of(service).relayed.values()) {
      if (r.session === session) { bytesIn += r.socket.bytesRead; bytesOut += r.socket.bytesWritten }
    }
    return { bytesIn, bytesOut }
  }

  private of (service: Service): ServiceTraffic {
    let t = this.services.get(service)
    if (t === undefined) {
      t = { open: new Map(), relayed: new Map(), closedIn: 0, closedOut: 0, totalConnections: 0 }
      this.services.set(service, t)
    }
    return t
  }
}

/** The key dispatch uses as sourceAddress. */
function sourceKey (socket: Socket): string {
  return `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? 0}`
}
