import './polyfill.js'
import { AbstractMessageStream } from '@libp2p/utils'
import { logger } from '@libp2p/logger'
import { WebSocket } from 'ws'
import type { SendResult } from '@libp2p/utils'
import type { AbortOptions, MessageStreamDirection } from '@libp2p/interface'
import type { Socket } from 'node:net'
import type { Uint8ArrayList } from 'uint8arraylist'

/** Bytes queued on the TCP socket beneath the WebSocket before writers are told to wait. */
const WRITE_HIGH_WATER_MARK = 1024 * 1024

/**
 * Presents a `ws` WebSocket as the MessageStream a libp2p 3.x muxer runs on. Unlike the adapter
 * inside @libp2p/websockets it uses the socket's own 'drain' event rather than polling
 * bufferedAmount, and pause/resume really stop reading (ws.pause() stops the TCP socket).
 */
export class WebSocketMessageStream extends AbstractMessageStream {
  private readonly ws: WebSocket
  private readonly socket: Socket

  constructor (ws: WebSocket, direction: MessageStreamDirection) {
    super({ log: logger(`reverselb:ws:${direction}`), direction, maxReadBufferLength: Infinity })
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

  sendData (data: Uint8ArrayList): SendResult {
    // A muxer may still flush (window updates from a microtask) after the socket closed; throwing
    // there would be an uncaught exception. The 'close' handler already ends every stream.
    if (this.ws.readyState !== WebSocket.OPEN) return { sentBytes: data.byteLength, canSendMore: true }
    // One WebSocket message per muxer write; subarray() only copies when it spans several chunks.
    this.ws.send(data.subarray(), { binary: true, compress: false })
    return { sentBytes: data.byteLength, canSendMore: this.socket.writableLength < WRITE_HIGH_WATER_MARK }
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
    const closed = new Promise<void>(resolve => this.ws.once('close', () => resolve()))
    this.ws.close(1000)
    const timer = setTimeout(() => this.ws.terminate(), 2000)
    options?.signal?.addEventListener('abort', () => this.ws.terminate(), { once: true })
    await closed
    clearTimeout(timer)
  }
}
