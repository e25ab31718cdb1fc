import {
  MAX_CONTROL_MESSAGE_BYTES, ProtocolError, readFrame, splice, validateStreamHeader, writeFrame
} from '../../protocol/index.js'
import { BackendDialError } from '../session.js'
import type { Logger, MuxStream, StreamAck } from '../../protocol/index.js'
import type { ServerEvents } from '../events.js'
import type { Service } from '../service.js'
import type { OpenedStream, ServerSession } from '../session.js'
import type { ForwardRequest } from './remote-session.js'
import type { EventEmitter } from 'node:events'

export interface LocalSession {
  session: ServerSession
  service: Service
}

export interface ForwardedOptions {
  /** This node's session by id. */
  lookup: (id: string) => LocalSession | undefined
  ackTimeoutMs: number
  node: string
  log: Logger
  events: EventEmitter<ServerEvents>
}

function validateForwardRequest (v: unknown): ForwardRequest {
  if (typeof v !== 'object' || v === null) throw new ProtocolError('forward request must be an object')
  const o = v as Record<string, unknown>
  if (typeof o.session !== 'string' || o.session.length > 64) throw new ProtocolError('forward request names no session')
  return { session: o.session, header: validateStreamHeader(o.header) }
}

/**
 * Serves a connection another node forwarded: opens a stream to the named session's client,
 * answers with the client's verdict (so that node tries another session when this one failed),
 * then splices the two streams, bytes and backpressure passing through untouched.
 */
export async function serveForwarded (stream: MuxStream, from: string, opts: ForwardedOptions): Promise<void> {
  const refuse = (error: string): void => {
    const ack: StreamAck = { ok: false, error }
    writeFrame(stream, ack)
    stream.end()
  }
  let request: ForwardRequest
  let early: Buffer
  try {
    const frame = await readFrame(stream, { maxBytes: MAX_CONTROL_MESSAGE_BYTES, timeoutMs: opts.ackTimeoutMs, what: 'forward request' })
    request = validateForwardRequest(frame.message)
    early = frame.rest
  } catch (err) {
    opts.log.warn(`cluster: node ${from} sent a bad forward request: ${(err as Error).message}`)
    stream.reset(err as Error)
    return
  }
  const target = opts.lookup(request.session)
  if (target === undefined || target.session.closing) { refuse(`session ${request.session} is not on node ${opts.node} any more`); return }
  const { session, service } = target
  let opened: OpenedStream
  try {
    opened = await session.openStream(request.header, opts.ackTimeoutMs)
  } catch (err) {
    if (err instanceof BackendDialError) session.noteDialFailure()
    refuse((err as Error).message)
    return
  }
  session.noteDialSuccess()
  writeFrame(stream, { ok: true } satisfies StreamAck)
  if (early.byteLength > 0) opened.stream.write(early)
  session.activeConnections++
  session.totalConnections++
  const sourceAddress = `${request.header.sourceAddress} via ${from}`
  opts.events.emit('connectionOpened', { service, session, sourceAddress })
  const stats = await splice(stream, opened.stream, opened.rest)
  session.activeConnections--
  session.bytesIn += stats.aToB + early.byteLength
  session.bytesOut += stats.bToA
  opts.events.emit('connectionClosed', { service, session, sourceAddress, bytesIn: stats.aToB + early.byteLength, bytesOut: stats.bToA, error: stats.error?.message })
}
