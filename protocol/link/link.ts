import { createMuxSession } from '../mux/index.js'
import { keepAlive } from './keepalive.js'
import { StreamTransport } from './stream-transport.js'
import { WebSocketTransport } from './ws-transport.js'
import type { MuxerName } from '../version.js'
import type { MuxProtocolError, MuxSession, MuxSessionOptions, MuxStream } from '../mux/index.js'
import type { Duplex } from 'node:stream'
import type { WebSocketConnection } from './websocket/connection.js'

export interface LinkOptions {
  /** The tunnel client dials; the server accepts. Decides yamux stream parity (masking is the connection's). */
  side: 'client' | 'server'
  muxer: MuxerName
  keepaliveMs: number
  /** Decides on each stream the peer opens (false refuses it). */
  accept: (stream: MuxStream) => boolean
  /**
   * The end-to-end layer (inner TLS over the WebSocket's messages), when on: the muxer runs in
   * it instead of writing WebSocket frames to the outer socket itself.
   */
  inner?: Duplex
  /** Muxer limits; see MuxSessionOptions. */
  mux?: Partial<Omit<MuxSessionOptions, 'client' | 'accept' | 'onProtocolError' | 'onStreamOverflow'>>
  /** Bytes queued toward the peer before we stop reading it. Default 4 MiB. */
  maxQueuedBytes?: number
  /** Called (once) before a dead link is cut. */
  onDead: () => void
  onProtocolError: (err: MuxProtocolError) => void
  onStreamOverflow: (stream: MuxStream, bytes: number) => void
}

export interface Link {
  readonly mux: MuxSession
  /** Resolves when the carrier (WebSocket or HTTP-transport session) has closed, for whatever reason. */
  readonly closed: Promise<void>
  /** Closes the WebSocket with `code` (one that does not answer is cut after 2 s), or ends the HTTP session. */
  close: (code?: number) => void
}

/** What the HTTP transport's link needs: no WebSocket, so no masks and no WebSocket pings. */
export type StreamLinkOptions = Omit<LinkOptions, 'keepaliveMs' | 'onDead'>

export const DEFAULT_MAX_QUEUED_BYTES = 4 * 1024 * 1024

/**
 * Everything between an open WebSocket and its streams, the same on both sides: the transport,
 * the muxer and the keepalive.
 */
export function openLink (ws: WebSocketConnection, opts: LinkOptions): Link {
  const maxQueuedBytes = opts.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES
  const frames = opts.inner === undefined ? new WebSocketTransport(ws, { maxQueuedBytes }) : undefined
  const mux = muxOn(frames ?? new StreamTransport(opts.inner ?? ws.socket, maxQueuedBytes), opts)
  keepAlive(ws, opts.keepaliveMs, opts.onDead, frames !== undefined ? () => frames.queuedBytes : () => ws.socket.writableLength)
  const closed = new Promise<void>(resolve => {
    if (ws.readyState === ws.CLOSED) resolve(); else ws.once('close', () => resolve())
  })
  // Our frames still queued leave before the close frame.
  const close = (code = 1000): void => { if (frames !== undefined) frames.close(code); else ws.close(code) }
  return { mux, closed, close }
}

/** The muxer session on `transport`, which then starts delivering to it. */
function muxOn (transport: WebSocketTransport | StreamTransport, opts: StreamLinkOptions): MuxSession {
  const mux = createMuxSession(opts.muxer, transport, {
    ...opts.mux,
    client: opts.side === 'client',
    accept: opts.accept,
    onProtocolError: opts.onProtocolError,
    onStreamOverflow: opts.onStreamOverflow
  })
  transport.bind(mux)
  return mux
}

/**
 * The link over the HTTP transport's byte stream (`carrier`), or over the end-to-end layer in it
 * (`opts.inner`). Liveness is the carrier's own (its downloads and uploads must keep succeeding).
 */
export function openStreamLink (carrier: Duplex, opts: StreamLinkOptions): Link {
  const over = opts.inner ?? carrier
  const transport = new StreamTransport(over, opts.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES)
  const mux = muxOn(transport, opts)
  // The inner TLS failing ends the session under it too.
  if (over !== carrier) over.once('close', () => carrier.destroy())
  const closed = new Promise<void>(resolve => {
    if (carrier.destroyed) resolve(); else carrier.once('close', () => resolve())
  })
  const close = (): void => {
    if (carrier.destroyed) return
    // The carrier ends after the inner TLS has written its close_notify, so the peer hears both.
    if (over !== carrier) over.once('finish', () => carrier.end())
    transport.close()
    setTimeout(() => carrier.destroy(), 2000).unref()
  }
  return { mux, closed, close }
}
