import { relay } from '../protocol/index.js'
import type { Logger } from '../protocol/index.js'
import type { ServerEvents } from './events.js'
import type { Service } from './service.js'
import type { ServerSession } from './session.js'
import type { EventEmitter } from 'node:events'
import type { Socket } from 'node:net'

export interface DispatchOptions {
  ackTimeoutMs: number
  log: Logger
  events: EventEmitter<ServerEvents>
}

/**
 * Hands one frontend connection to a session of its service. A session whose client cannot reach
 * its backend is skipped and the next one tried; nothing has been read from the frontend socket
 * yet (it arrives paused), so the peer never notices. Only when all fail is the socket closed.
 */
export async function dispatch (service: Service, socket: Socket, instance: string, opts: DispatchOptions): Promise<void> {
  socket.on('error', () => { /* reported through relay or the close below */ })
  const source = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? 0}`
  const tried = new Set<ServerSession>()
  for (let session = service.pick(instance, tried); session !== undefined; session = service.pick(instance, tried)) {
    tried.add(session)
    let opened
    try {
      opened = await session.openStream({ serviceName: service.name, sourceAddress: source }, opts.ackTimeoutMs)
    } catch (err) {
      opts.log.warn(`service ${service.name}: session ${session.id} could not take connection from ${source}: ${(err as Error).message}`)
      opts.events.emit('dialFailure', { service, session, sourceAddress: source, error: (err as Error).message })
      continue
    }
    if (socket.destroyed) { opened.stream.abort(new Error('frontend peer left')); return }
    session.activeConnections++
    session.totalConnections++
    opts.log.debug(`service ${service.name}: connection from ${source} -> session ${session.id}`)
    opts.events.emit('connectionOpened', { service, session, sourceAddress: source })
    const stats = await relay(socket, opened.stream, { head: opened.rest, onPause: session.onPause })
    session.activeConnections--
    session.bytesIn += stats.bytesIn
    session.bytesOut += stats.bytesOut
    opts.log.debug(`service ${service.name}: connection from ${source} closed, ${stats.bytesIn} bytes in, ${stats.bytesOut} out${stats.error !== undefined ? `, ${stats.error.message}` : ''}`)
    opts.events.emit('connectionClosed', { service, session, sourceAddress: source, bytesIn: stats.bytesIn, bytesOut: stats.bytesOut, error: stats.error?.message })
    return
  }
  opts.log.warn(`service ${service.name}: no session could take connection from ${source}; closing it`)
  opts.events.emit('connectionRejected', { service, sourceAddress: source })
  socket.destroy()
}
