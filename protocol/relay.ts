import type { Socket } from 'node:net'
import type { MuxStream, StreamHandlers } from './mux/index.js'

/** Bytes held corked for the turn's single write before the stream waits for 'drain'. */
const TURN_BYTES = 256 * 1024

export interface RelayStats {
  /** Bytes read from the socket and sent into the stream. */
  bytesFromSocket: number
  /** Bytes received from the stream and written to the socket. */
  bytesToSocket: number
  /** Why it ended badly, if it did. */
  error?: Error
}

export interface RelayOptions {
  /** Bytes already taken from the stream (after a header) to write to the socket first. */
  head?: Buffer
  /** Bytes already taken from the socket (sniffed) to send into the stream first. */
  socketHead?: Buffer
}

/**
 * Pipes a TCP socket and a muxed stream into each other with TCP semantics: each direction
 * keeps the other's backpressure (socket.write() false pauses the stream, stream.write() false
 * pauses the socket), a FIN on either side becomes a FIN on the other while the opposite
 * direction keeps flowing, and a reset or error on either side resets the other at once.
 * The socket must have been created with allowHalfOpen: true. `onDone` is called once both are
 * closed.
 *
 * A callback rather than a Promise, and one object rather than closures per event: an idle
 * connection may stay open for hours, and a proxy holds tens of thousands of them; every
 * promise, reaction and closure kept per connection is multiplied by that (see
 * docs/performance.md, "10,000 idle connections").
 */
export function relay (socket: Socket, stream: MuxStream, opts: RelayOptions, onDone: (stats: RelayStats) => void): void {
  const r = new Relay(socket, stream, onDone)
  relays.set(socket, r)
  // socket -> stream
  socket.on('data', onSocketData)
  socket.on('error', onSocketError)
  socket.on('close', onSocketClose)
  socket.on('drain', onSocketDrain)
  // stream -> socket
  if (opts.head !== undefined && opts.head.byteLength > 0) r.onData(opts.head)
  if (opts.socketHead !== undefined && opts.socketHead.byteLength > 0) r.sendToStream(opts.socketHead)
  // The peer may have sent its FIN while the first bytes were being read (routing).
  if (socket.readableEnded) stream.end(); else socket.on('end', onSocketEnd)
  stream.attach(r)
  // readFrame left the stream paused; unless the socket is full already, what waited flows now.
  if (!socket.writableNeedDrain) stream.resume()
  // Unless sending the sniffed head already found the stream full.
  if (!r.socketPaused) socket.resume()
}

/**
 * The relay of each socket. The socket's listeners below are shared by all relays (a listener's
 * `this` is the socket) and find theirs here: five closures fewer per connection.
 */
const relays = new WeakMap<Socket, Relay>()
function onSocketData (this: Socket, chunk: Buffer): void { relays.get(this)?.sendToStream(chunk) }
function onSocketError (this: Socket, err: Error): void { relays.get(this)?.fail(err) }
function onSocketClose (this: Socket): void { relays.get(this)?.socketClosed() }
function onSocketDrain (this: Socket): void { relays.get(this)?.stream.resume() }
function onSocketEnd (this: Socket): void { relays.get(this)?.stream.end() }
function uncorkRelay (r: Relay): void { r.uncork() }

/** The state of one relay: its stats, and the stream's handlers. */
class Relay implements StreamHandlers, RelayStats {
  bytesFromSocket = 0
  bytesToSocket = 0
  error: Error | undefined
  socketPaused = false
  private open = 2
  /** Both directions ended and everything was handed to the kernel: closed without shutdown(). */
  private closedClean = false
  /** The socket is corked until the end of this turn. */
  private corked = false

  constructor (private readonly socket: Socket, readonly stream: MuxStream, private readonly onDone: (stats: RelayStats) => void) {}

  sendToStream (chunk: Buffer): void {
    this.bytesFromSocket += chunk.byteLength
    if (!this.stream.write(chunk) && !this.socketPaused) { this.socketPaused = true; this.socket.pause() }
  }

  fail (err: Error): void {
    this.error ??= err
    this.resetSocket()
    this.stream.reset(err)
  }

  socketClosed (): void {
    // Closed without both FINs (destroyed locally, timed out, reset): the stream must not linger.
    // After both FINs the stream finishes by itself (what waits for the send window still goes out).
    const s = this.socket
    if (!this.stream.closed && !this.closedClean && !(s.readableEnded && s.writableFinished)) this.fail(this.error ?? new Error('socket closed'))
    this.closedOne()
  }

  // StreamHandlers: stream -> socket
  // What the stream delivers in one turn leaves in one write: a muxer frame arrives in pieces, one
  // per TLS record read (16 KiB), and a write syscall per piece costs more than the data it moves.
  onData (chunk: Buffer): void {
    const s = this.socket
    if (s.destroyed || s.writableEnded) return
    this.bytesToSocket += chunk.byteLength
    if (!this.corked) { this.corked = true; s.cork(); setImmediate(uncorkRelay, this) }
    if (!s.write(chunk) && s.writableLength >= TURN_BYTES) this.stream.pause()
  }

  uncork (): void {
    this.corked = false
    const s = this.socket
    s.uncork()
    // Bytes the kernel did not take: the stream waits for 'drain'.
    if (s.writableNeedDrain && s.writableLength > 0) this.stream.pause()
  }

  // The stream's FIN becomes the socket's. When the socket's peer already sent its FIN and nothing
  // waits in Node's buffer, close() alone sends the FIN after what the kernel still holds, exactly
  // as shutdown() then close() would: one syscall and one round of stream events less per connection.
  onEnd (): void {
    const s = this.socket
    if (s.destroyed || s.writableEnded) return
    if (s.readableEnded && s.writableLength === 0) {
      this.closedClean = true
      s.destroy()
    } else {
      s.end()
    }
  }

  onDrain (): void {
    if (this.socketPaused) { this.socketPaused = false; this.socket.resume() }
  }

  onClose (err: Error | undefined): void {
    // A reset stream, or a lost tunnel: the peer's data may be cut short; say so with a TCP reset.
    if (err !== undefined) { this.error ??= err; this.resetSocket() }
    this.closedOne()
  }

  private closedOne (): void {
    if (--this.open === 0) this.onDone(this)
  }

  // libuv refuses a reset once end() was called; a plain destroy then still closes the handle.
  private resetSocket (): void {
    const s = this.socket
    if (s.destroyed) return
    if (s.writableEnded) s.destroy(); else s.resetAndDestroy()
  }
}
