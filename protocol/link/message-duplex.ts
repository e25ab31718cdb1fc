import { Duplex } from 'node:stream'
import type { WebSocketConnection } from './websocket/connection.js'

/** Bytes that may wait unsent in the socket before a write waits for them to leave. */
const HIGH_WATER = 1024 * 1024

/**
 * The binary messages of a WebSocket as one byte stream, for a layer that needs a Duplex (the
 * inner TLS of the end-to-end layer). A write completes at once while little is queued, else
 * when the socket has taken it, so the writer feels the socket's backpressure without waiting a
 * round of the event loop per TLS record; a reader that stops pauses the WebSocket.
 */
export class MessageDuplex extends Duplex {
  constructor (private readonly ws: WebSocketConnection) {
    super({ allowHalfOpen: false })
    ws.on('data', (piece: Buffer) => { if (!this.push(piece)) ws.pause() })
    ws.once('close', () => { this.push(null); this.destroy() })
  }

  override _read (): void {
    if (this.ws.isPaused) this.ws.resume()
  }

  override _write (chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    if (this.ws.readyState !== this.ws.OPEN) { callback(new Error('the WebSocket is closed')); return }
    if (this.ws.bufferedAmount < HIGH_WATER) {
      this.ws.send(chunk)
      callback()
    } else {
      this.ws.send(chunk, callback)
    }
  }

  override _writev (chunks: Array<{ chunk: Buffer }>, callback: (err?: Error | null) => void): void {
    this._write(chunks.length === 1 ? chunks[0].chunk : Buffer.concat(chunks.map(c => c.chunk)), 'binary', callback)
  }

  override _final (callback: () => void): void { callback() }

  override _destroy (err: Error | null, callback: (err?: Error | null) => void): void {
    if (this.ws.readyState !== this.ws.CLOSED) this.ws.terminate()
    callback(err)
  }
}
