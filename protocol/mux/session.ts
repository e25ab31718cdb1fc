import { MuxProtocolError, tunnelLost } from './errors.js'
import type { MuxStream, StreamOwner } from './stream.js'
import type { MuxSink, MuxTransport } from './transport.js'

export interface MuxSessionOptions {
  /** The side that dialed the connection (the tunnel client). yamux: its streams have odd ids. */
  client: boolean
  /** Decides on a stream the peer opens; false refuses it (reset, counted against maxRefusedStreams). */
  accept: (stream: MuxStream) => boolean
  /** Most streams the peer may have open at once; further opens are refused. */
  maxInboundStreams: number
  /** Refused stream opens tolerated before the connection is closed as hostile. */
  maxRefusedStreams: number
  /** yamux: largest per-stream receive window (it starts at the spec's 256 KiB and doubles at each update up to this). */
  maxStreamWindowBytes: number
  /** mplex: most bytes a stream may hold for a reader that does not take them before it is reset (mplex has no flow control). */
  maxStreamBufferBytes: number
  /** Most bytes all streams of the connection may hold together for their readers before the receiving one is reset (yamux windows stop growing at half of it). */
  maxSessionBufferBytes: number
  /** Pings answered per second; more are ignored (yamux). */
  maxPingsPerSecond: number
  /** The peer broke the protocol: the connection is closed after this; log it. */
  onProtocolError: (err: MuxProtocolError) => void
  /** A stream was reset because its reader fell too far behind (mplex); log it. */
  onStreamOverflow: (stream: MuxStream, bytes: number) => void
}

export const DEFAULT_MUX_OPTIONS: Omit<MuxSessionOptions, 'client' | 'accept' | 'onProtocolError' | 'onStreamOverflow'> = {
  maxInboundStreams: 20_000,
  maxRefusedStreams: 8,
  maxStreamWindowBytes: 4 * 1024 * 1024,
  maxStreamBufferBytes: 16 * 1024 * 1024,
  maxSessionBufferBytes: 64 * 1024 * 1024,
  maxPingsPerSecond: 10
}

/**
 * The part of a muxer both codecs share: the transport, streams waiting for it to drain, closing.
 * Subclasses parse and write their wire format and keep their streams.
 */
export abstract class MuxSession implements MuxSink, StreamOwner {
  protected readonly transport: MuxTransport
  protected readonly opts: MuxSessionOptions
  /** Streams whose writer waits for the transport to drain. */
  private readonly waiting = new Set<MuxStream>()
  /** The transport said it is full. */
  protected full = false
  protected refused = 0
  isClosed = false
  /** Called once when the session ends (transport gone, protocol error, close()). */
  onClose: ((err?: Error) => void) | undefined

  constructor (transport: MuxTransport, opts: MuxSessionOptions) {
    this.transport = transport
    this.opts = opts
  }

  /** Opens a stream to the peer. */
  abstract open (): MuxStream
  abstract receive (data: Buffer): void
  /** Number of open streams. */
  abstract get streamCount (): number
  abstract writeData (stream: MuxStream, chunk: Buffer): boolean
  abstract writeEnd (stream: MuxStream): void
  abstract writeReset (stream: MuxStream): void
  abstract consumed (stream: MuxStream, bytes: number): void
  abstract queued (stream: MuxStream, delta: number): void
  abstract release (stream: MuxStream): void
  /** Every open stream, for closing them all. */
  protected abstract allStreams (): Iterable<MuxStream>
  /** Tells the peer the session ends (yamux GoAway); code 0 normal, 1 protocol error. */
  protected abstract sendGoAway (code: number): void

  /** Sends one frame; remembers a full transport. */
  protected send (header: Buffer, payload?: Buffer): void {
    if (!this.transport.send(header, payload)) this.full = true
  }

  /** A writer found the transport full: it hears onDrain once the transport drains. */
  protected wait (stream: MuxStream): boolean {
    stream.needDrain = true
    this.waiting.add(stream)
    return false
  }

  drained (): void {
    this.full = false
    for (const stream of this.waiting) {
      this.waiting.delete(stream)
      this.resumeWriter(stream)
      if (this.full) break
    }
  }

  /** Sends what waited for the transport; tells the writer when all of it is out. */
  protected resumeWriter (stream: MuxStream): void {
    stream.signalDrain()
  }

  protected forget (stream: MuxStream): void {
    this.waiting.delete(stream)
  }

  /** Refuses a stream the peer opened; past the limit the peer is treated as hostile. */
  protected countRefusal (): void {
    if (++this.refused > this.opts.maxRefusedStreams) {
      this.fail(new MuxProtocolError('ERR_REVERSELB_MUX_TOO_MANY_REFUSED', `peer opened ${this.refused} streams it may not open`))
    }
  }

  closed (err?: Error): void {
    if (this.isClosed) return
    this.isClosed = true
    this.waiting.clear()
    const lost = tunnelLost()
    for (const stream of [...this.allStreams()]) stream.finish(lost)
    this.onClose?.(err)
  }

  /** Ends the session: GoAway, then the transport closes once what is queued is out. */
  close (): void {
    if (this.isClosed) return
    this.sendGoAway(0)
    this.transport.close()
    this.closed()
  }

  /** The peer broke the protocol: GoAway with the protocol-error code, close, report. */
  protected fail (err: MuxProtocolError): void {
    if (this.isClosed) return
    this.sendGoAway(1)
    this.transport.close()
    this.opts.onProtocolError(err)
    this.closed(err)
  }
}
