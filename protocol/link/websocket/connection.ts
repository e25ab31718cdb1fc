import { EventEmitter } from 'node:events'
import { Socket } from 'node:net'
import { FrameReader, WebSocketProtocolError } from './frame-reader.js'
import { applyMask } from './mask.js'
import { OPCODE, headerLength, writeHeader } from './frame-header.js'
import type { MaskMode } from './frame-header.js'
import type { Duplex } from 'node:stream'

export interface WebSocketConnectionOptions {
  /** The server reads masked frames and sends unmasked ones; the client the other way round. */
  side: 'client' | 'server'
  /** How a client masks what it sends; a server never masks. Default 'random'. */
  mask?: Exclude<MaskMode, 'none'>
  /** The subprotocol agreed in the handshake. */
  protocol: string
  /** Bytes that came after the handshake in the same read. */
  head?: Buffer
  /** The longest message accepted (MAX_WS_PAYLOAD). */
  maxPayload: number
}

export interface WebSocketConnectionEvents {
  /** A piece of binary payload, in order; message boundaries are not kept. */
  data: [Buffer]
  ping: [Buffer]
  pong: [Buffer]
  /** The socket is gone; the close code the peer sent (1006 when none came), and its reason. */
  close: [number, string]
  /** The peer broke the protocol (the connection is closing), or the socket failed. */
  error: [Error]
}

/** A peer that does not answer our close frame (or close its end) is cut off after this. */
const CLOSE_CUT_MS = 2000

/**
 * An RFC 6455 connection after the handshake, on its socket: frames are parsed as they arrive
 * (binary payload passed on as views of the socket's chunks, never gathered into messages) and
 * written straight to the socket. The states and names follow the `ws` package's WebSocket
 * (readyState, ping, pong, close, terminate, pause, resume, bufferedAmount), the parts we use.
 */
export class WebSocketConnection extends EventEmitter<WebSocketConnectionEvents> {
  static readonly CONNECTING = 0
  static readonly OPEN = 1
  static readonly CLOSING = 2
  static readonly CLOSED = 3
  readonly CONNECTING = 0
  readonly OPEN = 1
  readonly CLOSING = 2
  readonly CLOSED = 3

  readyState = 1
  readonly protocol: string
  readonly socket: Duplex
  readonly mask: MaskMode
  private readonly reader: FrameReader
  private closeSent = false
  private closeReceived = false
  private closeCode = 1006
  private closeReason = ''
  private cut: NodeJS.Timeout | undefined

  constructor (socket: Duplex, opts: WebSocketConnectionOptions) {
    super()
    this.socket = socket
    this.protocol = opts.protocol
    this.mask = opts.side === 'server' ? 'none' : opts.mask ?? 'random'
    this.reader = new FrameReader({
      data: (piece) => this.emit('data', piece),
      control: (opcode, payload) => this.onControl(opcode, payload),
      fail: (err) => this.onProtocolError(err)
    }, { masked: opts.side === 'server', maxMessageBytes: opts.maxPayload })
    // An upgraded server socket keeps the HTTP server's timeouts; a tunnel may idle between pings.
    if (socket instanceof Socket) { socket.setTimeout(0); socket.setNoDelay(true) }
    if (opts.head !== undefined && opts.head.length > 0) socket.unshift(opts.head)
    socket.on('data', this.onData)
    socket.on('end', this.onEnd)
    socket.once('close', this.onClose)
    socket.on('error', this.onSocketError)
  }

  /** Bytes written but not yet taken by the kernel. */
  get bufferedAmount (): number {
    return this.socket.writableLength
  }

  get isPaused (): boolean {
    return this.socket.isPaused()
  }

  /** Stops reading the peer (its bytes wait in the kernel, and TCP backpressure holds it). */
  pause (): void {
    this.socket.pause()
  }

  resume (): void {
    if (this.readyState !== this.CLOSED) this.socket.resume()
  }

  /** Sends `data` as one binary message; `cb` when the socket took it. */
  send (data: Buffer, cb?: (err?: Error | null) => void): void {
    this.writeFrame(OPCODE.binary, data, cb)
  }

  ping (data: Buffer = Buffer.alloc(0)): void {
    this.writeFrame(OPCODE.ping, data)
  }

  pong (data: Buffer = Buffer.alloc(0)): void {
    this.writeFrame(OPCODE.pong, data)
  }

  /** Starts the close handshake; a peer that does not finish it within 2 s is cut off. */
  close (code = 1000, reason = ''): void {
    if (this.readyState === this.CLOSED) return
    this.sendClose(code, reason)
    if (this.closeReceived) this.socket.end()
  }

  /** Drops the connection at once. */
  terminate (): void {
    if (this.readyState === this.CLOSED) return
    this.readyState = this.CLOSING
    this.socket.destroy()
  }

  private writeFrame (opcode: number, data: Buffer, cb?: (err?: Error | null) => void): void {
    if (this.readyState !== this.OPEN || !this.socket.writable) {
      if (cb !== undefined) process.nextTick(cb, new Error('the WebSocket is not open'))
      return
    }
    const header = Buffer.allocUnsafe(headerLength(data.length, this.mask))
    const key = writeHeader(header, 0, opcode, data.length, this.mask)
    let payload = data
    if (key !== undefined && data.length > 0) {
      payload = Buffer.allocUnsafe(data.length)
      applyMask(data, key, payload, 0, data.length)
    }
    if (payload.length === 0) { this.socket.write(header, cb); return }
    if (payload.length < 1024) { this.socket.write(Buffer.concat([header, payload]), cb); return }
    this.socket.cork()
    this.socket.write(header)
    this.socket.write(payload, cb)
    this.socket.uncork()
  }

  private sendClose (code: number, reason: string): void {
    if (this.closeSent) return
    const body = Buffer.allocUnsafe(2 + Buffer.byteLength(reason))
    body.writeUInt16BE(code, 0)
    body.write(reason, 2)
    this.writeFrame(OPCODE.close, code === 1005 ? Buffer.alloc(0) : body)
    this.closeSent = true
    this.readyState = this.CLOSING
    this.cut = setTimeout(() => this.socket.destroy(), CLOSE_CUT_MS)
    this.cut.unref()
  }

  private onControl (opcode: number, payload: Buffer): void {
    if (opcode === OPCODE.ping) { this.emit('ping', payload); return }
    if (opcode === OPCODE.pong) { this.emit('pong', payload); return }
    // Close: note the peer's code, answer with it, and end our side.
    const code = payload.length >= 2 ? payload.readUInt16BE(0) : 1005
    if (payload.length === 1 || (payload.length >= 2 && !sendableCode(code))) {
      this.onProtocolError(new WebSocketProtocolError(1002, `WebSocket protocol error: a close frame ${payload.length === 1 ? 'of 1 byte' : `with code ${code}`}`))
      return
    }
    this.closeReceived = true
    this.reader.stop()
    this.closeCode = code
    this.closeReason = payload.subarray(2).toString()
    this.sendClose(this.closeCode, '')
    this.socket.end()
  }

  private onProtocolError (err: WebSocketProtocolError): void {
    this.reader.stop()
    this.sendClose(err.closeCode, '')
    this.socket.end()
    if (this.listenerCount('error') > 0) this.emit('error', err)
  }

  private readonly onData = (chunk: Buffer): void => { this.reader.push(chunk) }

  /** The peer ended its side: end ours too (an upgraded server socket allows half-open). */
  private readonly onEnd = (): void => {
    this.readyState = this.CLOSING
    this.socket.end()
  }

  private readonly onClose = (): void => {
    this.readyState = this.CLOSED
    clearTimeout(this.cut)
    this.socket.off('data', this.onData)
    this.socket.off('end', this.onEnd)
    this.emit('close', this.closeCode, this.closeReason)
  }

  private readonly onSocketError = (err: Error): void => {
    this.socket.destroy()
    if (this.listenerCount('error') > 0) this.emit('error', err)
  }
}

/** Close codes a peer may put on the wire (RFC 6455 7.4): 1004-1006 and 1015 only ever describe a closure locally. */
function sendableCode (code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999)
}
