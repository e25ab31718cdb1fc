import { MAX_HEADER_BYTES, OPCODE, headerLength, writeHeader } from './websocket/frame-header.js'
import { applyMask } from './websocket/mask.js'
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

/** Outgoing buffers frames are copied into: small while little is sent, large under load. */
const SMALL_BUFFER = 16 * 1024
const LARGE_BUFFER = 256 * 1024
/** send() answers false above this many queued bytes. */
const HIGH_WATER = 1024 * 1024
/** Large buffers kept for reuse once written, while the queue is not empty. */
const POOL = 2
/** A connection that queued nothing for this long gives its large buffers back. */
const SHRINK_AFTER_MS = 1000
/** A peer that does not answer our close is cut off after this long. */
const CLOSE_WAIT_MS = 2000

/** A buffer frames are gathered in, and how many of its messages the socket has not finished. */
interface OutBuffer { buf: Buffer, writes: number }
interface Message { out: OutBuffer, bytes: Buffer }

/**
 * The muxer's transport over a WebSocket connection: what arrives goes to the muxer as the
 * connection parses it (pieces of the socket's chunks, whatever the message boundaries), while
 * frames we send are written to the TLS socket directly as binary WebSocket messages. Frames are copied into reused buffers and handed to the socket one write at a time,
 * each write a single buffer holding one message: what arrives meanwhile joins the next. (A TLS
 * socket copies a write of several buffers, or a backlog of writes, into a fresh zeroed buffer
 * before encrypting it; a single buffer it encrypts in place.)
 */
export class WebSocketTransport implements MuxTransport {
  private readonly ws: WebSocketConnection
  private readonly socket: Duplex
  private readonly mask: MaskMode
  private readonly opts: WebSocketTransportOptions
  private sink: MuxSink | undefined
  private out: OutBuffer = { buf: Buffer.allocUnsafeSlow(SMALL_BUFFER), writes: 0 }
  private readonly pool: Buffer[] = []
  /** The message being gathered occupies out[start, end); its WebSocket header goes just before start. */
  private start = MAX_HEADER_BYTES
  private end = MAX_HEADER_BYTES
  /** Messages complete but not yet handed to the socket, and their bytes. */
  private readonly waiting: Message[] = []
  private waitingBytes = 0
  /** The buffer of the write the socket is doing, if any. */
  private writing: OutBuffer | undefined
  private scheduled = false
  private shrinkTimer: NodeJS.Timeout | undefined
  private wantDrain = false
  private readingPaused = false
  private closeCode: number | undefined
  /** Bytes of frames without payload sent since the queue was last empty. */
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
  }

  /** Bytes sent but not yet taken by the kernel. */
  get queuedBytes (): number {
    return this.socket.writableLength + this.waitingBytes + this.end - this.start
  }

  send (header: Buffer, payload?: Buffer): boolean {
    if (this.ws.readyState !== this.ws.OPEN || this.closeCode !== undefined) return true
    if (!this.scheduled) {
      this.scheduled = true
      setImmediate(this.endOfTurn)
    }
    const plen = payload?.length ?? 0
    if (plen === 0) this.controlBytes += header.length
    this.reserve(header.length + plen)
    const b = this.out.buf
    header.copy(b, this.end)
    this.end += header.length
    if (payload !== undefined) { payload.copy(b, this.end); this.end += plen }
    return this.checkQueue()
  }

  /** After a send (so never empty): stops reading a peer that makes us answer but does not read. */
  private checkQueue (): boolean {
    const queued = this.queuedBytes
    if (queued > this.opts.maxQueuedBytes && this.controlBytes > this.opts.maxQueuedBytes / 16 && !this.readingPaused) {
      this.readingPaused = true
      this.ws.pause()
    }
    if (queued < HIGH_WATER) return true
    this.wantDrain = true
    return false
  }

  private readonly endOfTurn = (): void => {
    this.scheduled = false
    if (this.writing === undefined) this.pump()
  }

  /** Hands the next message to the socket, unless it is still writing one. */
  private pump (): void {
    if (this.writing !== undefined) return
    if (this.waiting.length === 0) this.seal()
    if (this.ws.readyState !== this.ws.OPEN) {
      this.waiting.length = 0
      this.waitingBytes = 0
      return
    }
    const next = this.waiting.shift()
    if (next === undefined) {
      if (this.closeCode !== undefined) this.closeNow()
      return
    }
    this.waitingBytes -= next.bytes.length
    this.writing = next.out
    this.socket.write(next.bytes, this.afterWrite)
  }

  private readonly afterWrite = (): void => {
    const done = this.writing
    this.writing = undefined
    if (done !== undefined && --done.writes === 0 && done !== this.out) this.recycle(done)
    this.pump()
    const queued = this.queuedBytes
    if (queued === 0) this.idle()
    if (this.readingPaused && queued <= this.opts.maxQueuedBytes / 2) {
      this.readingPaused = false
      this.ws.resume()
    }
    if (this.wantDrain && queued < HIGH_WATER / 2) {
      this.wantDrain = false
      this.sink?.drained()
    }
  }

  /** Makes room for `n` more bytes in the message being gathered. */
  private reserve (n: number): void {
    if (this.end + n <= this.out.buf.length) return
    this.seal()
    if (this.end + n <= this.out.buf.length) return
    const full = this.out
    this.out = { buf: n + MAX_HEADER_BYTES > LARGE_BUFFER ? Buffer.allocUnsafeSlow(n + MAX_HEADER_BYTES) : this.pool.pop() ?? Buffer.allocUnsafeSlow(LARGE_BUFFER), writes: 0 }
    this.start = this.end = MAX_HEADER_BYTES
    if (full.writes === 0) this.recycle(full)
  }

  /** Completes the gathered frames as one message, to be written after those before it. */
  private seal (): void {
    const len = this.end - this.start
    if (len === 0) return
    const out = this.out
    const key = this.frameHeader(this.start, len)
    if (key !== undefined) applyMask(out.buf.subarray(this.start, this.end), key, out.buf, this.start, len)
    const bytes = out.buf.subarray(this.start - this.headerLength(len), this.end)
    out.writes++
    this.waiting.push({ out, bytes })
    this.waitingBytes += bytes.length
    this.start = this.end = this.end + MAX_HEADER_BYTES
  }

  private recycle (out: OutBuffer): void {
    if (out.buf.length === LARGE_BUFFER && this.pool.length < POOL) this.pool.push(out.buf)
  }

  /** Nothing is queued: soon after, a connection that sent much holds no more than one that sent little. */
  private idle (): void {
    this.controlBytes = 0
    if (this.shrinkTimer !== undefined || (this.pool.length === 0 && this.out.buf.length === SMALL_BUFFER)) return
    // Not at once: under load the queue empties after most writes, and a fresh large buffer per turn costs page faults.
    this.shrinkTimer = setTimeout(this.shrink, SHRINK_AFTER_MS)
    this.shrinkTimer.unref()
  }

  private readonly shrink = (): void => {
    this.shrinkTimer = undefined
    if (this.queuedBytes > 0) return
    this.pool.length = 0
    if (this.out.buf.length > SMALL_BUFFER) {
      this.out = { buf: Buffer.allocUnsafeSlow(SMALL_BUFFER), writes: 0 }
      this.start = this.end = MAX_HEADER_BYTES
    }
  }

  private headerLength (len: number): number {
    return headerLength(len, this.mask)
  }

  /** Writes a binary, final frame header for `len` payload bytes just before `at`; returns the mask key if random. */
  private frameHeader (at: number, len: number): Buffer | undefined {
    return writeHeader(this.out.buf, at - this.headerLength(len), OPCODE.binary, len, this.mask)
  }

  /** Sends what is queued, then the close frame with `code`; a peer that does not answer is cut off. */
  close (code = 1000): void {
    if (this.closeCode !== undefined) return
    this.closeCode = code
    if (this.ws.readyState === this.ws.CLOSED) return
    setTimeout(() => this.ws.terminate(), CLOSE_WAIT_MS).unref()
    this.pump()
  }

  private closeNow (): void {
    if (this.ws.readyState === this.ws.OPEN) this.ws.close(this.closeCode)
  }
}
