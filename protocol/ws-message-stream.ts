import './polyfill.js'
import { AbstractMessageStream } from '@libp2p/utils'
import { StreamMessageEvent, StreamStateError } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import { WebSocket } from 'ws'
import type { SendResult } from '@libp2p/utils'
import type { AbortOptions, Logger, MessageStreamDirection } from '@libp2p/interface'
import type { Socket } from 'node:net'
import type { Uint8ArrayList } from 'uint8arraylist'

/** Bytes queued on the TCP socket beneath the WebSocket before writers are told to wait. */
const WRITE_HIGH_WATER_MARK = 1024 * 1024
/**
 * Pieces shorter than this (muxer frame headers, window updates, small writes) are copied together
 * into one WebSocket message; longer ones go out as messages of their own, without a copy. Both
 * muxers parse a byte stream, so where message boundaries fall does not matter to them.
 */
const COALESCE_BELOW = 4096
/** Send the gathered small pieces once this much has accumulated. */
const COALESCE_MAX = 64 * 1024

/**
 * The muxers derive a logger for every stream from ours (newScope). Each real one creates several
 * `debug` instances, and each of those asks isatty() of stderr: measurable per connection and per
 * idle stream. Unless DEBUG asks for logs, they all share this silent one.
 */
const silent: Logger = Object.assign(() => {}, {
  error: () => {},
  trace: () => {},
  enabled: false,
  newScope: (): Logger => silent
})
const streamLogger = (name: string): Logger => (process.env.DEBUG ?? '') !== '' ? logger(name) : silent

/**
 * Presents a `ws` WebSocket as the MessageStream a libp2p 3.x muxer runs on. Unlike the adapter
 * inside @libp2p/websockets it uses the socket's own 'drain' event rather than polling
 * bufferedAmount, and pause/resume really stop reading (ws.pause() stops the TCP socket).
 *
 * Writes are batched per event-loop turn: the first send corks the socket and a setImmediate
 * callback uncorks it once the turn's I/O callbacks have run, so all the muxer sends while handling
 * them (frames of several streams, window updates, several 64 KiB reads of one socket) leaves as
 * one TLS write instead of one write syscall and one wake-up of the peer per frame. No timer is
 * involved: the flush comes right after the events that produced the data.
 */
export class WebSocketMessageStream extends AbstractMessageStream {
  private readonly ws: WebSocket
  private readonly socket: Socket
  private corked = false
  private small: Uint8Array[] = []
  private smallBytes = 0

  constructor (ws: WebSocket, direction: MessageStreamDirection) {
    super({ log: streamLogger(`reverselb:ws:${direction}`), direction, maxReadBufferLength: Infinity })
    this.ws = ws
    // ws keeps its TCP/TLS socket private; its 'drain' is the exact signal for backpressure.
    this.socket = (ws as unknown as { _socket: Socket })._socket
    ws.binaryType = 'nodebuffer'
    ws.on('message', (data: Buffer) => { this.onData(data) })
    ws.on('close', () => { this.onTransportClosed() })
    ws.on('error', (err) => { this.onTransportClosed(err) })
    this.socket.on('drain', () => {
      if (this.writableNeedsDrain) this.safeDispatchEvent('drain')
    })
  }

  private readonly endOfTurn = (): void => {
    this.flushSmall()
    this.corked = false
    this.socket.uncork()
  }

  private flushSmall (): void {
    if (this.smallBytes === 0) return
    const message = this.small.length === 1 ? this.small[0] : Buffer.concat(this.small, this.smallBytes)
    this.small = []
    this.smallBytes = 0
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(message, { binary: true, compress: false })
  }

  /**
   * The base class queues every write in a Uint8ArrayList, copies it, and dispatches an 'idle'
   * event whenever that queue empties: per frame, that cost about as much as the TLS write. The
   * socket buffers by itself, so frames go straight to it; a full socket still answers false and
   * its 'drain' releases the writers, as before.
   */
  override send (data: Uint8Array | Uint8ArrayList): boolean {
    if (this.writeStatus === 'closed' || this.writeStatus === 'closing') {
      throw new StreamStateError(`Cannot write to a stream that is ${this.writeStatus}`)
    }
    const canSendMore = this.write(data)
    if (!canSendMore) this.writableNeedsDrain = true
    return canSendMore
  }

  sendData (data: Uint8ArrayList): SendResult {
    return { sentBytes: data.byteLength, canSendMore: this.write(data) }
  }

  /**
   * Same shortcut for what arrives: while nothing is queued or paused, a message goes to the
   * muxer as it is, without a trip through the read buffer (append, sublist, consume).
   */
  override onData (data: Uint8Array): void {
    if (this.readStatus !== 'readable' || this.readBuffer.byteLength > 0 || this.listenerCount('message') === 0) {
      super.onData(data)
      return
    }
    if (data.byteLength > 0) this.dispatchEvent(new StreamMessageEvent(data))
  }

  private write (data: Uint8Array | Uint8ArrayList): boolean {
    // A muxer may still flush (window updates from a microtask) after the socket closed; throwing
    // there would be an uncaught exception. The 'close' handler already ends every stream.
    if (this.ws.readyState !== WebSocket.OPEN) return true
    if (!this.corked) {
      this.corked = true
      this.socket.cork()
      setImmediate(this.endOfTurn)
    }
    if (data instanceof Uint8Array) this.add(data); else for (const chunk of data) this.add(chunk)
    return this.socket.writableLength < WRITE_HIGH_WATER_MARK
  }

  private add (chunk: Uint8Array): void {
    if (chunk.byteLength < COALESCE_BELOW) {
      // The muxers never reuse a buffer they handed over, so holding it until the turn ends is safe.
      this.small.push(chunk)
      this.smallBytes += chunk.byteLength
      if (this.smallBytes >= COALESCE_MAX) this.flushSmall()
    } else {
      this.flushSmall()
      this.ws.send(chunk, { binary: true, compress: false })
    }
  }

  sendReset (): void {
    this.ws.terminate()
  }

  sendPause (): void {
    this.ws.pause()
  }

  sendResume (): void {
    this.ws.resume()
  }

  async close (options?: AbortOptions): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return
    // What the muxer sent in this turn (e.g. its GoAway) must precede the close frame.
    this.flushSmall()
    const closed = new Promise<void>(resolve => this.ws.once('close', () => resolve()))
    this.ws.close(1000)
    const timer = setTimeout(() => this.ws.terminate(), 2000)
    options?.signal?.addEventListener('abort', () => this.ws.terminate(), { once: true })
    await closed
    clearTimeout(timer)
  }
}
