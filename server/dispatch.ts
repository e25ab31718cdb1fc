import { relay } from '../protocol/index.js'
import { BackendDialError } from './session.js'
import { routeConnection } from './route.js'
import type { Logger } from '../protocol/index.js'
import type { ServerEvents } from './events.js'
import type { Limits } from './limits.js'
import type { SniffLimits } from './route.js'
import type { Service } from './service.js'
import type { ServerSession } from './session.js'
import type { EventEmitter } from 'node:events'
import type { Socket } from 'node:net'

export interface DispatchOptions {
  ackTimeoutMs: number
  sniff: SniffLimits
  limits: Pick<Limits, 'maxStreamsPerSession' | 'maxStreamsPerService' | 'idleTimeoutMs'>
  log: Logger
  events: EventEmitter<ServerEvents>
}

/**
 * Hands one frontend connection to a session of its service. A session whose client cannot reach
 * its backend is skipped and the next one tried; nothing has been relayed yet (the socket is
 * paused, sniffed bytes are held), so the peer never notices. Only when all fail is it closed.
 */
export async function dispatch (service: Service, socket: Socket, opts: DispatchOptions): Promise<void> {
  socket.on('error', () => { /* reported through relay or the close below */ })
  const source = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? 0}`
  const routing = await routeConnection(socket, service, opts.sniff)
  if (routing === undefined) {
    opts.log.debug(`service ${service.name}: connection from ${source} sent nothing; closed without a backend stream`)
    socket.destroy()
    return
  }
  if ('refuse' in routing) {
    opts.log.warn(`service ${service.name}: refused connection from ${source}: ${routing.refuse}`)
    opts.events.emit('connectionRejected', { service, sourceAddress: source })
    if (routing.reply !== undefined) socket.end(routing.reply, () => socket.destroy()); else socket.destroy()
    return
  }
  const { route } = routing
  const { maxStreamsPerSession, maxStreamsPerService, idleTimeoutMs } = opts.limits
  if (service.activeConnections() >= maxStreamsPerService) {
    opts.log.warn(`service ${service.name}: ${maxStreamsPerService} connections open, the most allowed; refusing ${source}`)
    opts.events.emit('connectionRejected', { service, sourceAddress: source })
    socket.destroy()
    return
  }
  if (idleTimeoutMs > 0) {
    socket.setTimeout(idleTimeoutMs, () => {
      opts.log.debug(`service ${service.name}: connection from ${source} idle for ${idleTimeoutMs} ms; closing it`)
      socket.destroy()
    })
  }
  const tried = new Set<ServerSession>()
  const pick = (): ServerSession | undefined => service.pick(route.instance, tried, maxStreamsPerSession)
  for (let session = pick(); session !== undefined; session = pick()) {
    tried.add(session)
    let opened
    try {
      opened = await session.openStream({ serviceName: service.name, sourceAddress: source, destinationAddress: service.frontend.destinationOf(socket) }, opts.ackTimeoutMs)
    } catch (err) {
      if (err instanceof BackendDialError) session.noteDialFailure()
      opts.log.warn(`service ${service.name}: session ${session.id} could not take connection from ${source}: ${(err as Error).message}`)
      opts.events.emit('dialFailure', { service, session, sourceAddress: source, error: (err as Error).message })
      continue
    }
    session.noteDialSuccess()
    if (socket.destroyed) { opened.stream.abort(new Error('frontend peer left')); return }
    if (route.accepted !== undefined) socket.write(route.accepted)
    session.activeConnections++
    session.totalConnections++
    const debug = opts.log.isDebugEnabled()
    if (debug) opts.log.debug(`service ${service.name}: connection from ${source} -> session ${session.id}`)
    opts.events.emit('connectionOpened', { service, session, sourceAddress: source })
    const stats = await relay(socket, opened.stream, { head: opened.rest, socketHead: route.head, onPause: session.onPause })
    session.activeConnections--
    session.bytesIn += stats.bytesIn
    session.bytesOut += stats.bytesOut
    if (debug) opts.log.debug(`service ${service.name}: connection from ${source} closed, ${stats.bytesIn} bytes in, ${stats.bytesOut} out${stats.error !== undefined ? `, ${stats.error.message}` : ''}`)
    opts.events.emit('connectionClosed', { service, session, sourceAddress: source, bytesIn: stats.bytesIn, bytesOut: stats.bytesOut, error: stats.error?.message })
    return
  }
  opts.log.warn(`service ${service.name}: no session could take connection from ${source}; closing it`)
  opts.events.emit('connectionRejected', { service, sourceAddress: source })
  if (route.rejected !== undefined) socket.end(route.rejected, () => socket.destroy()); else socket.destroy()
}
