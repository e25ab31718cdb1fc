import { relay } from '../protocol/index.js'
import { BackendDialError } from './session.js'
import { DEFAULT_INSTANCE, routeConnection } from './route.js'
import type { Logger } from '../protocol/index.js'
import type { ServerEvents } from './events.js'
import type { Limits } from './limits.js'
import type { SniffLimits } from './route.js'
import type { Service } from './service.js'
import type { OpenedStream, ServerSession } from './session.js'
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
 * Errors are reported through relay or the close below. Defined out here because a closure made
 * inside dispatch() would keep all of dispatch()'s variables alive for as long as the socket lives.
 */
const ignoreError = (): void => {}

/**
 * Hands one frontend connection to a session of its service. A session whose client cannot reach
 * its backend is skipped and the next one tried; nothing has been relayed yet (the socket is
 * paused, sniffed bytes are held), so the peer never notices. Only when all fail is it closed.
 */
export async function dispatch (service: Service, socket: Socket, opts: DispatchOptions): Promise<void> {
  socket.on('error', ignoreError)
  const source = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? 0}`
  // Without named instances nothing is sniffed: no promise and no turn of the microtask queue.
  const routing = service.hasNamedInstances() ? await routeConnection(socket, service, opts.sniff) : DEFAULT_INSTANCE
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
  if (idleTimeoutMs > 0) closeWhenIdle(socket, idleTimeoutMs, service.name, source, opts.log)
  const tried = new Set<ServerSession>()
  const pick = (): ServerSession | undefined => service.pick(route.instance, tried, maxStreamsPerSession)
  for (let session = pick(); session !== undefined; session = pick()) {
    tried.add(session)
    let opened: OpenedStream
    try {
      opened = await session.openStream({ serviceName: service.name, ...(session.instance !== '' ? { instanceName: session.instance } : {}), sourceAddress: source, destinationAddress: service.frontend.destinationOf(socket) }, opts.ackTimeoutMs)
    } catch (err) {
      if (err instanceof BackendDialError) session.noteDialFailure()
      opts.log.warn(`service ${service.name}: session ${session.id} could not take connection from ${source}: ${(err as Error).message}`)
      opts.events.emit('dialFailure', { service, session, sourceAddress: source, error: (err as Error).message })
      continue
    }
    session.noteDialSuccess()
    if (socket.destroyed) { opened.stream.reset(new Error('frontend peer left')); return }
    if (route.accepted !== undefined) socket.write(route.accepted)
    // Not awaited: this function's frame (the sessions tried, the routing) and its promise need
    // not live as long as the connection does.
    relayConnection(service, session, socket, opened, route.head, source, opts)
    return
  }
  opts.log.warn(`service ${service.name}: no session could take connection from ${source}; closing it`)
  opts.events.emit('connectionRejected', { service, sourceAddress: source })
  if (route.rejected !== undefined) socket.end(route.rejected, () => socket.destroy()); else socket.destroy()
}

/** Relays an accepted connection to its session's stream and accounts for it when it ends. */
function relayConnection (service: Service, session: ServerSession, socket: Socket, opened: OpenedStream, socketHead: Buffer | undefined, source: string, opts: DispatchOptions): void {
  session.activeConnections++
  session.totalConnections++
  opts.log.debug(`service ${service.name}: connection from ${source} -> session ${session.id}`)
  opts.events.emit('connectionOpened', { service, session, sourceAddress: source })
  const { log, events } = opts
  relay(socket, opened.stream, { head: opened.rest, socketHead }, stats => {
    session.activeConnections--
    // The frontend is the socket here: what it sent goes in (to the backend), what it got goes out.
    const bytesIn = stats.bytesFromSocket
    const bytesOut = stats.bytesToSocket
    session.bytesIn += bytesIn
    session.bytesOut += bytesOut
    log.debug(`service ${service.name}: connection from ${source} closed, ${bytesIn} bytes in, ${bytesOut} out${stats.error !== undefined ? `, ${stats.error.message}` : ''}`)
    // Called from a socket or stream event: a listener that throws must not end the process.
    try {
      events.emit('connectionClosed', { service, session, sourceAddress: source, bytesIn, bytesOut, error: stats.error?.message })
    } catch (err) {
      log.error(`connectionClosed listener failed: ${(err as Error).message}`)
    }
  })
}

/** A function of its own so that the timer's callback keeps only these alive, not dispatch()'s variables. */
function closeWhenIdle (socket: Socket, idleTimeoutMs: number, serviceName: string, source: string, log: Logger): void {
  socket.setTimeout(idleTimeoutMs, () => {
    log.debug(`service ${serviceName}: connection from ${source} idle for ${idleTimeoutMs} ms; closing it`)
    socket.destroy()
  })
}
