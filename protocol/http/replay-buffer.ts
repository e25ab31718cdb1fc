import { ReverselbError } from '../errors.js'
/** A sequence number (byte offset) that does not fit what one side has: the request is refused. */
export class SequenceError extends ReverselbError {
  override name = 'SequenceError'
  constructor (message: string) { super('ERR_REVERSELB_HTTP_TUNNEL_SEQUENCE', message) }
}

/**
 * The bytes sent in one direction that the receiver has not acknowledged, by byte offset: what a
 * resumed download (or a retried upload) is sent from. Holds [base, end).
 */
export class ReplayBuffer {
  private chunks: Buffer[] = []
  /** Offset of the first byte kept. */
  base = 0
  /** Offset after the last byte appended. */
  end = 0

  get unacked (): number {
    return this.end - this.base
  }

  append (chunk: Buffer): void {
    if (chunk.length === 0) return
    this.chunks.push(chunk)
    this.end += chunk.length
  }

  /** The receiver has everything before `offset`: drops it. An older acknowledgement changes nothing. */
  ack (offset: number): void {
    if (!Number.isSafeInteger(offset) || offset > this.end) throw new SequenceError(`acknowledgement ${offset} is beyond the ${this.end} bytes sent`)
    let drop = offset - this.base
    while (drop > 0 && this.chunks.length > 0) {
      const first = this.chunks[0]
      if (first.length <= drop) { this.chunks.shift(); drop -= first.length; this.base += first.length } else {
        this.chunks[0] = first.subarray(drop)
        this.base += drop
        drop = 0
      }
    }
  }

  /** The kept bytes from `offset` on (by reference), at most `max` of them. */
  slice (offset: number, max = Infinity): Buffer[] {
    if (!Number.isSafeInteger(offset) || offset < this.base || offset > this.end) {
      throw new SequenceError(`cannot resume from byte ${offset}: bytes ${this.base} to ${this.end} are kept`)
    }
    const out: Buffer[] = []
    let skip = offset - this.base
    let room = max
    for (const c of this.chunks) {
      if (room <= 0) break
      if (skip >= c.length) { skip -= c.length; continue }
      const part = c.subarray(skip, skip + room)
      skip = 0
      room -= part.length
      out.push(part)
    }
    return out
  }
}

/**
 * The receiving side of one direction: takes each body at its offset exactly once, in order. A
 * repeat of what it has (a retry whose answer was lost) is acknowledged again and dropped; a body
 * past a gap is refused.
 */
export class InOrderReceiver {
  /** Offset of the next byte expected. */
  next = 0

  /** The part of `body` (at `seq`) not yet received; throws a SequenceError for a gap. */
  take (seq: number, body: Buffer): Buffer {
    if (!Number.isSafeInteger(seq) || seq < 0) throw new SequenceError(`sequence number "${String(seq)}" is not a byte offset`)
    if (seq > this.next) throw new SequenceError(`bytes from ${seq} arrived before bytes ${this.next} to ${seq} (out of order)`)
    const fresh = body.subarray(Math.min(body.length, this.next - seq))
    this.next += fresh.length
    return fresh
  }
}
