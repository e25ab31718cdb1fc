import { MAX_HEADER_BYTES, OPCODE, headerLength, writeHeader } from './websocket/frame-header.js'
import { applyMask, rotatedKey } from './websocket/mask.js'
import type { MuxSink, MuxTransport } from '../mux/transport.js'
import type { WebSocketConnection } from './websocket/connection.js'
import type { MaskMode } from './websocket/frame-header.js'
import type { Duplex } from 'node:stream'

export interface WebSocketTransportOptions {
  /**
   * Bytes queued toward the peer above which we stop reading from it, when a good part of them
   * are frames without payload (window updates, pongs, resets: answers to what the peer sends).
   * A peer that does not read then cannot make us buffer more by sending; data has its own
   * backpressure, and stopping on data alone could stall two busy ends waiting for each other.
   */
  maxQueuedBytes: number
}

/** Frames up to this size are copied together into one WebSocket message; larger ones go by reference. */
const SMALL = 4096
const SLAB = 64 * 1024
/** send() answers false above this many queued bytes. */
const HIGH_WATER = 1024 * 1024

/**
 * The muxer's transport over a WebSocket connection: what arrives goes to the muxer as the
 * connection parses it (pieces of the socket's chunks, whatever the message boundaries), while
 * frames we send are written to the TLS socket directly as binary WebSocket messages, so a muxer header and its payload leave as one message without a copy of the payload.
 * Small frames of one event-loop turn are gathered (copied into a slab) into one message, and the
 * turn's writes leave the socket corked as one TLS write.
 */
export class WebSocketTransport implements MuxTransport {
  private readonly ws: WebSocketConnection
  private readonly socket: Duplex
  private readonly mask: MaskMode
  private readonly opts: WebSocketTransportOptions
  private sink: MuxSink | undefined
  private slab = Buffer.allocUnsafeSlow(SLAB)
  /** The message being gathered occupies slab[start, end); its WebSocket header goes just before start. */
  private start = MAX_HEADER_BYTES
  private end = MAX_HEADER_BYTES
  private corked = false
  private wantDrain = false
  private readingPaused = false
  private closing = false
  /** Bytes of frames without payload sent since the socket was last empty. */
  private controlBytes = 0

  constructor (ws: WebSocketConnection, opts: WebSocketTransportOptions) {
    this.ws = ws
    this.socket = ws.socket
    this.mask = ws.mask
    this.opts = opts
  }

  /** Starts delivering to `sink`. */
  bind (sink: MuxSink): void {
    this.sink = sink
    this.ws.on('data', (data: Buffer) => {
      try {
        sink.receive(data)
      } catch (err) {
        // A bug in a stream's handler must cost this connection, never the process.
        sink.closed(err as Error)
        this.ws.terminate()
      }
    })
    this.ws.once('close', () => sink.closed())
    this.socket.on('drain', this.onDrain)
  }

  /** Bytes written but not yet taken by the kernel. */
  get queuedBytes (): number {
    return this.socket.writableLength
  }

  send (header: Buffer, payload?: Buffer): boolean {
    if (this.ws.readyState !== this.ws.OPEN) return true
    if (!this.corked) {
      this.corked = true
      this.socket.cork()
      setImmediate(this.endOfTurn)
    }
    const plen = payload?.length ?? 0
    if (plen === 0) this.controlBytes += header.length
    if (header.length + plen <= SMALL) {
      this.reserve(header.length + plen)
      header.copy(this.slab, this.end)
      this.end += header.length
      if (payload !== undefined) { payload.copy(this.slab, this.end); this.end += plen }
    } else {
      this.flush()
      this.reserve(header.length)
      const at = this.end
      header.copy(this.slab, at)
      const key = this.frameHeader(at, header.length + plen)
      if (key !== undefined) applyMask(this.slab.subarray(at, at + header.length), key, this.slab, at, header.length)
      this.socket.write(this.slab.subarray(at - this.headerLength(header.length + plen), at + header.length))
      this.advance(at + header.length)
      if (payload !== undefined) this.socket.write(key === undefined ? payload : this.masked(payload, rotatedKey(key, header.length)))
    }
    return this.checkQueue()
  }

  private checkQueue (): boolean {
    const queued = this.socket.writableLength
    if (queued === 0) this.controlBytes = 0
    if (queued > this.opts.maxQueuedBytes && this.controlBytes > this.opts.maxQueuedBytes / 16 && !this.readingPaused) {
      this.readingPaused = true
      this.ws.pause()
    }
    if (queued < HIGH_WATER) return true
    this.wantDrain = true
    return false
  }

  private readonly onDrain = (): void => {
    this.controlBytes = 0
    if (this.readingPaused) {
      this.readingPaused = false
      this.ws.resume()
    }
    if (this.wantDrain) {
      this.wantDrain = false
      this.sink?.drained()
    }
  }

  private readonly endOfTurn = (): void => {
    this.flush()
    this.corked = false
    this.socket.uncork()
    this.checkQueue()
  }

  /** Makes room for `n` more bytes in the message being gathered. */
  private reserve (n: number): void {
    if (this.end + n <= this.slab.length) return
    this.flush()
    if (this.end + n <= this.slab.length) return
    this.slab = Buffer.allocUnsafeSlow(SLAB)
    this.start = this.end = MAX_HEADER_BYTES
  }

  /** Sends the gathered small frames as one message. */
  private flush (): void {
    const len = this.end - this.start
    if (len === 0 || this.ws.readyState !== this.ws.OPEN) return
    const key = this.frameHeader(this.start, len)
    if (key !== undefined) applyMask(this.slab.subarray(this.start, this.end), key, this.slab, this.start, len)
    this.socket.write(this.slab.subarray(this.start - this.headerLength(len), this.end))
    this.advance(this.end)
  }

  /** The next message starts after `pos`, leaving room for its header; what was written stays untouched. */
  private advance (pos: number): void {
    this.start = this.end = pos + MAX_HEADER_BYTES
    if (this.start + SMALL > this.slab.length) {
      this.slab = Buffer.allocUnsafeSlow(SLAB)
      this.start = this.end = MAX_HEADER_BYTES
    }
  }

  private headerLength (len: number): number {
    return headerLength(len, this.mask)
  }

  /** Writes a binary, final frame header for `len` payload bytes just before `at`; returns the mask key if random. */
  private frameHeader (at: number, len: number): Buffer | undefined {
    return writeHeader(this.slab, at - this.headerLength(len), OPCODE.binary, len, this.mask)
  }

  private masked (payload: Buffer, key: Buffer): Buffer {
    const out = Buffer.allocUnsafe(payload.length)
    applyMask(payload, key, out, 0, payload.length)
    return out
  }

  close (): void {
    if (this.closing) return
    this.closing = true
    this.flush()
    if (this.corked) { this.corked = false; this.socket.uncork() }
    if (this.ws.readyState === this.ws.CLOSED) return
    this.ws.close(1000)
  }
}
