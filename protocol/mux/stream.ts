import { ReverselbError } from '../errors.js'
import { StreamResetError } from './errors.js'

/**
 * The `n` payload bytes at `off` of a received message, for a stream to keep. A view is free, but
 * it keeps the whole message alive while queued or in a socket's buffer: a small piece of a large
 * message (a peer can pad a 4 MiB message around one data byte) is copied so that what a stream
 * counts is what it holds.
 */
export function piece (data: Buffer, off: number, n: number): Buffer {
  if (n === data.length) return data
  const view = data.subarray(off, off + n)
  return n * 8 < data.length ? Buffer.from(view) : view
}

/** What the reader of a stream hears; set with attach(). */
export interface StreamHandlers {
  /** Bytes from the peer. Call pause() inside to stop the next ones (they wait in the stream). */
  onData: (chunk: Buffer) => void
  /** The peer sent FIN: no more data comes; our direction may go on. */
  onEnd: () => void
  /** The stream is gone: cleanly (both FINs, `err` undefined) or reset / connection lost. Last call. */
  onClose: (err: Error | undefined) => void
  /** write() may be called again after it returned false. */
  onDrain: () => void
}

/** The codec-specific half of a stream, implemented by each session (yamux.ts, mplex.ts). */
export interface StreamOwner {
  /** Sends what may be sent now; keeps the rest in stream.pendingOut. False: wait for onDrain. */
  writeData: (stream: MuxStream, chunk: Buffer) => boolean
  writeEnd: (stream: MuxStream) => void
  writeReset: (stream: MuxStream) => void
  /** The reader took `bytes` (yamux grants the peer more window). */
  consumed: (stream: MuxStream, bytes: number) => void
  /** Bytes started (+) or stopped (-) waiting for a paused or detached reader (mplex bounds them). */
  queued: (stream: MuxStream, delta: number) => void
  /** The stream is closed: forget it. */
  release: (stream: MuxStream) => void
}

/**
 * One muxed stream with TCP semantics: data and FIN in each direction independently, reset, and
 * backpressure both ways (write() returns false, pause() stops delivery). While paused or detached,
 * what arrives waits here in arrival order, FIN last; the codec bounds how much (yamux: the window).
 */
export class MuxStream {
  readonly id: number
  /** Codec state (yamux windows, mplex initiator) lives in subclasses' fields; see the owners. */
  protected readonly owner: StreamOwner
  private handlers: StreamHandlers | undefined
  private queue: Buffer[] | undefined
  queuedBytes = 0
  private paused = false
  /** The peer's FIN arrived / was handed to the reader. */
  remoteEnded = false
  private endDelivered = false
  /** end() was called / our FIN went out (it waits behind pendingOut). */
  localEnded = false
  finSent = false
  closed = false
  closeError: Error | undefined
  /** A write returned false and the writer waits for onDrain. */
  needDrain = false
  /** What the send window did not let out yet (yamux). */
  pendingOut: Buffer | undefined

  constructor (id: number, owner: StreamOwner) {
    this.id = id
    this.owner = owner
  }

  /** Starts delivering to `handlers`, beginning with what waited; a closed stream reports it at once. */
  attach (handlers: StreamHandlers): void {
    this.handlers = handlers
    if (this.closed) { handlers.onClose(this.closeError); return }
    this.deliver()
  }

  /** What arrives from now on waits in the stream until the next attach(). */
  detach (): void {
    this.handlers = undefined
  }

  write (chunk: Buffer): boolean {
    if (this.closed) return true
    if (this.localEnded) throw new ReverselbError('ERR_REVERSELB_STREAM_WRITE_AFTER_END', `stream ${this.id}: write after end`)
    if (chunk.byteLength === 0) return !this.needDrain
    return this.owner.writeData(this, chunk)
  }

  /** Half-close: sends FIN once what waits for the window is out. */
  end (): void {
    if (this.closed || this.localEnded) return
    this.localEnded = true
    if (this.pendingOut === undefined) this.owner.writeEnd(this)
    this.maybeFinish()
  }

  reset (err?: Error): void {
    if (this.closed) return
    this.owner.writeReset(this)
    this.finish(err ?? new StreamResetError('ERR_REVERSELB_STREAM_RESET', 'stream reset'))
  }

  pause (): void {
    this.paused = true
  }

  resume (): void {
    if (!this.paused) return
    this.paused = false
    this.deliver()
  }

  get isPaused (): boolean {
    return this.paused
  }

  // ---- called by the owner (session) ----

  push (chunk: Buffer): void {
    // Data after the peer's FIN breaks the protocol; it must not reach a reader after onEnd (or
    // be handed over with the queue before it): dropped, like data for a closed stream.
    if (this.closed || this.remoteEnded) return
    const h = this.handlers
    if (h !== undefined && !this.paused && this.queue === undefined) {
      h.onData(chunk)
      this.owner.consumed(this, chunk.byteLength)
      return
    }
    this.queue ??= []
    this.queue.push(chunk)
    this.queuedBytes += chunk.byteLength
    this.owner.queued(this, chunk.byteLength)
  }

  pushEnd (): void {
    if (this.closed || this.remoteEnded) return
    this.remoteEnded = true
    this.deliver()
  }

  /** Our FIN went out (after pendingOut, if it waited). */
  sentFin (): void {
    this.finSent = true
    this.maybeFinish()
  }

  /** The owner may call this when a blocked write can go on. */
  signalDrain (): void {
    if (!this.needDrain || this.closed) return
    this.needDrain = false
    this.handlers?.onDrain()
  }

  finish (err: Error | undefined): void {
    if (this.closed) return
    this.closed = true
    this.closeError = err
    this.queue = undefined
    if (this.queuedBytes > 0) this.owner.queued(this, -this.queuedBytes)
    this.queuedBytes = 0
    this.pendingOut = undefined
    this.owner.release(this)
    this.handlers?.onClose(err)
  }

  private deliver (): void {
    const q = this.queue
    if (q !== undefined) {
      let i = 0
      while (i < q.length && this.handlers !== undefined && !this.paused && !this.closed) {
        const chunk = q[i++]
        this.queuedBytes -= chunk.byteLength
        this.owner.queued(this, -chunk.byteLength)
        this.handlers.onData(chunk)
        this.owner.consumed(this, chunk.byteLength)
      }
      if (this.queue === q) {
        if (i >= q.length) this.queue = undefined; else if (i > 0) q.splice(0, i)
      }
    }
    if (this.remoteEnded && !this.endDelivered && this.queue === undefined && this.handlers !== undefined && !this.paused && !this.closed) {
      this.endDelivered = true
      this.handlers.onEnd()
      this.maybeFinish()
    }
  }

  private maybeFinish (): void {
    if (this.finSent && this.endDelivered) this.finish(undefined)
  }
}
