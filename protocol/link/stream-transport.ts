import type { MuxSink, MuxTransport } from '../mux/transport.js'
import type { Duplex } from 'node:stream'

/**
 * The muxer's transport over any ordered byte stream (muxer frames delimit themselves): the
 * inner TLS of the end-to-end layer. Frames of one event-loop turn leave corked as one write
 * (one TLS record rather than one per frame); write()'s answer and 'drain' are the backpressure.
 */
export class StreamTransport implements MuxTransport {
  private sink: MuxSink | undefined
  private corked = false
  private readingPaused = false
  private closed = false
  /** Bytes of frames without payload sent since the stream was last empty (see WebSocketTransportOptions). */
  private controlBytes = 0

  constructor (private readonly stream: Duplex, private readonly maxQueuedBytes: number) {}

  bind (sink: MuxSink): void {
    this.sink = sink
    this.stream.on('data', (data: Buffer) => {
      try {
        sink.receive(data)
      } catch (err) {
        // A bug in a stream's handler must cost this connection, never the process.
        this.stream.destroy(err as Error)
      }
    })
    this.stream.on('drain', this.onDrain)
    this.stream.on('error', () => {})
    this.stream.once('close', () => { this.closed = true; sink.closed() })
  }

  send (header: Buffer, payload?: Buffer): boolean {
    if (this.closed || this.stream.destroyed || !this.stream.writable) return true
    if (!this.corked) {
      this.corked = true
      this.stream.cork()
      setImmediate(this.endOfTurn)
    }
    const plen = payload?.length ?? 0
    if (plen === 0) this.controlBytes += header.length
    // The header is the caller's to reuse; the payload is kept by reference until written.
    let ok = this.stream.write(Buffer.from(header))
    if (payload !== undefined && plen > 0) ok = this.stream.write(payload)
    this.checkQueue()
    return ok
  }

  /** A peer that makes us answer (window updates, pongs) but does not read stops being read. */
  private checkQueue (): void {
    const queued = this.stream.writableLength
    if (queued === 0) this.controlBytes = 0
    if (queued > this.maxQueuedBytes && this.controlBytes > this.maxQueuedBytes / 16 && !this.readingPaused) {
      this.readingPaused = true
      this.stream.pause()
    }
  }

  private readonly onDrain = (): void => {
    this.controlBytes = 0
    if (this.readingPaused) {
      this.readingPaused = false
      this.stream.resume()
    }
    this.sink?.drained()
  }

  private readonly endOfTurn = (): void => {
    this.corked = false
    this.stream.uncork()
  }

  close (): void {
    if (this.corked) { this.corked = false; this.stream.uncork() }
    this.stream.end()
  }
}
