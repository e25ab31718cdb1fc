import { ReverselbError } from '../protocol/index.js'
import { randomUUID } from 'node:crypto'
import {
  MAX_CONTROL_MESSAGE_BYTES, readFrame, validateStreamAck, writeFrame
} from '../protocol/index.js'
import type { MuxSession, MuxStream, MuxerName, StreamHeader, TunnelData } from '../protocol/index.js'

export interface OpenedStream {
  stream: MuxStream
  /** Backend bytes that arrived right behind the client's ack. */
  rest: Buffer
}

const UNHEALTHY_AFTER = 3
const BASE_SIT_OUT_MS = 2_000
const MAX_SIT_OUT_MS = 60_000

/** The client refused a stream: its backend could not be dialled. */
export class BackendDialError extends ReverselbError {
  override name = 'BackendDialError'
  constructor (message: string, options?: ErrorOptions) { super('ERR_REVERSELB_BACKEND_DIAL', message, options) }
}

/** The client connection (one WebSocket or HTTP-transport session) a session's registration came on. */
/** What carries a client connection: a WebSocket, or the HTTP transport's requests. */
export type TransportName = 'websocket' | 'http'

export interface SessionConnection {
  readonly id: string
  readonly transport: TransportName
  /** Whether the end-to-end layer runs inside the transport. */
  readonly e2e: boolean
  /** Every service registered on that connection, as `service` or `service:instance`. */
  services: () => string[]
}

/**
 * One registration of a service instance by a tunnel client, on a connection (a WebSocket with a
 * muxer) that may carry registrations of other services too.
 */
export class ServerSession {
  readonly id: string
  readonly connectedAt: Date
  /** The cluster node that holds the session's client; undefined without --cluster. */
  readonly node?: string
  readonly remoteAddress: string
  readonly muxerName: MuxerName
  readonly registration: TunnelData
  readonly instance: string
  readonly connection: SessionConnection
  activeConnections = 0
  totalConnections = 0
  bytesIn = 0
  bytesOut = 0
  closing = false
  /** Backend dial failures in a row; after a few the session sits out for a while. */
  private failures = 0
  private unhealthyUntil = 0
  private readonly mux: MuxSession
  private readonly closeConnection: () => void

  constructor (init: {
    remoteAddress: string
    muxerName: MuxerName
    mux: MuxSession
    registration: TunnelData
    instance: string
    connection: SessionConnection
    close: () => void
    /** A session of another node keeps its id and start time (see RemoteSession). */
    id?: string
    connectedAt?: Date
    node?: string
  }) {
    this.id = init.id ?? randomUUID()
    this.connectedAt = init.connectedAt ?? new Date()
    this.node = init.node
    this.remoteAddress = init.remoteAddress
    this.muxerName = init.muxerName
    this.mux = init.mux
    this.registration = init.registration
    this.instance = init.instance
    this.connection = init.connection
    this.closeConnection = init.close
  }

  /**
   * Opens a stream to the client, sends the header and waits for the client to report that it
   * reached its backend. Rejects (and cleans the stream up) when it did not.
   */
  async openStream (header: StreamHeader, ackTimeoutMs: number): Promise<OpenedStream> {
    const stream = this.mux.open()
    try {
      writeFrame(stream, this.streamRequest(header))
      const frame = await readFrame(stream, { maxBytes: MAX_CONTROL_MESSAGE_BYTES, timeoutMs: ackTimeoutMs, what: 'stream ack' })
      const ack = validateStreamAck(frame.message)
      if (!ack.ok) throw new BackendDialError(ack.error ?? 'backend dial failed')
      return { stream, rest: frame.rest }
    } catch (err) {
      stream.reset(err as Error)
      throw err
    }
  }

  /** The first message of a new stream: the header itself, for a session on this node. */
  protected streamRequest (header: StreamHeader): unknown {
    return header
  }

  /** False while the session sits out after repeated backend failures; it comes back by itself. */
  healthy (now = Date.now()): boolean {
    return now >= this.unhealthyUntil
  }

  noteDialFailure (now = Date.now()): void {
    this.failures++
    if (this.failures >= UNHEALTHY_AFTER) {
      this.unhealthyUntil = now + Math.min(MAX_SIT_OUT_MS, BASE_SIT_OUT_MS * 2 ** (this.failures - UNHEALTHY_AFTER))
    }
  }

  noteDialSuccess (): void {
    this.failures = 0
    this.unhealthyUntil = 0
  }

  close (): void {
    this.closing = true
    this.closeConnection()
  }
}
