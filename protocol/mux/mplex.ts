import { ReverselbError } from '../errors.js'
import { MuxProtocolError, resetByPeer } from './errors.js'
import { MuxSession } from './session.js'
import { MuxStream, piece } from './stream.js'
import { MAX_VARINT_BYTES, UvarintReader, writeUvarint } from './varint.js'
import type { MuxSessionOptions } from './session.js'
import type { MuxTransport } from './transport.js'

// libp2p/specs mplex: uvarint header (id * 8 + flag), uvarint length, data.
export const enum MplexFlag {
  NewStream = 0,
  MessageReceiver = 1,
  MessageInitiator = 2,
  CloseReceiver = 3,
  CloseInitiator = 4,
  ResetReceiver = 5,
  ResetInitiator = 6
}
/** Largest message either side sends or accepts (spec: 1 MiB). */
export const MPLEX_MAX_MESSAGE = 1024 * 1024
/** Our messages: one socket read each. */
const MAX_FRAME = 64 * 1024

class MplexStream extends MuxStream {
  /** We opened it: our messages carry the Initiator flags. */
  readonly initiator: boolean
  constructor (id: number, owner: MplexSession, initiator: boolean) {
    super(id, owner)
    this.initiator = initiator
  }
}

const enum State { Header, Length, Data }

/**
 * mplex over a MuxTransport. mplex has no flow control: a stream whose reader does not keep up
 * holds what arrives, up to maxStreamBufferBytes, and is then reset (logged through
 * onStreamOverflow) rather than stopping the whole connection; the other streams go on.
 */
export class MplexSession extends MuxSession {
  /** Streams we opened and streams the peer opened: ids are counted separately on each side. */
  private readonly local = new Map<number, MplexStream>()
  private readonly remote = new Map<number, MplexStream>()
  private nextId = 0
  private buffered = 0
  private readonly out = Buffer.allocUnsafe(2 * MAX_VARINT_BYTES)
  private state = State.Header
  private readonly varint = new UvarintReader()
  private frameId = 0
  private frameFlag = 0
  private dataLeft = 0
  private dataStream: MplexStream | undefined

  constructor (transport: MuxTransport, opts: MuxSessionOptions) {
    super(transport, opts)
  }

  get streamCount (): number {
    return this.local.size + this.remote.size
  }

  protected * allStreams (): Iterable<MuxStream> {
    yield * this.local.values()
    yield * this.remote.values()
  }

  open (): MuxStream {
    if (this.isClosed) throw new ReverselbError('ERR_REVERSELB_MUX_CLOSED', 'muxed connection is closed')
    const s = new MplexStream(this.nextId++, this, true)
    this.local.set(s.id, s)
    this.frame(s.id, MplexFlag.NewStream, Buffer.from(String(s.id)))
    return s
  }

  private frame (id: number, flag: MplexFlag, payload?: Buffer): void {
    let o = writeUvarint(id * 8 + flag, this.out, 0)
    o = writeUvarint(payload?.length ?? 0, this.out, o)
    this.send(this.out.subarray(0, o), payload)
  }

  writeData (stream: MuxStream, chunk: Buffer): boolean {
    const s = stream as MplexStream
    const flag = s.initiator ? MplexFlag.MessageInitiator : MplexFlag.MessageReceiver
    for (let off = 0; off < chunk.length; off += MAX_FRAME) {
      this.frame(s.id, flag, off === 0 && chunk.length <= MAX_FRAME ? chunk : chunk.subarray(off, Math.min(chunk.length, off + MAX_FRAME)))
    }
    return this.full ? this.wait(s) : true
  }

  writeEnd (stream: MuxStream): void {
    const s = stream as MplexStream
    this.frame(s.id, s.initiator ? MplexFlag.CloseInitiator : MplexFlag.CloseReceiver)
    s.sentFin()
  }

  writeReset (stream: MuxStream): void {
    const s = stream as MplexStream
    this.frame(s.id, s.initiator ? MplexFlag.ResetInitiator : MplexFlag.ResetReceiver)
  }

  consumed (): void {
    // No window to grant.
  }

  queued (stream: MuxStream, delta: number): void {
    this.buffered += delta
    if (delta <= 0) return
    if (stream.queuedBytes > this.opts.maxStreamBufferBytes || this.buffered > this.opts.maxSessionBufferBytes) {
      const bytes = stream.queuedBytes
      this.opts.onStreamOverflow(stream, bytes)
      stream.reset(new MuxProtocolError('ERR_REVERSELB_MUX_WINDOW_EXCEEDED', `reader fell ${bytes} bytes behind (mplex has no flow control)`))
    }
  }

  release (stream: MuxStream): void {
    const s = stream as MplexStream
    if (s.initiator) this.local.delete(s.id); else this.remote.delete(s.id)
    this.forget(s)
  }

  protected sendGoAway (): void {
    // mplex has no GoAway: closing the transport says it.
  }

  receive (data: Buffer): void {
    let off = 0
    const len = data.length
    try {
      while (off < len && !this.isClosed) {
        if (this.state === State.Data) {
          const n = Math.min(this.dataLeft, len - off)
          this.dataLeft -= n
          this.dataStream?.push(piece(data, off, n))
          off += n
          if (this.dataLeft === 0) this.state = State.Header
          continue
        }
        const v = this.varint.feed(data[off++])
        if (v === undefined) continue
        if (this.state === State.Header) {
          this.frameId = Math.floor(v / 8)
          this.frameFlag = v % 8
          this.state = State.Length
        } else {
          this.message(v)
        }
      }
    } catch (err) {
      this.fail(new MuxProtocolError('ERR_REVERSELB_MUX_FRAME_TOO_LARGE', `malformed mplex header: ${(err as Error).message}`))
    }
  }

  /** A header and its length are in: act on the flag, then take the data (if any). */
  private message (length: number): void {
    const id = this.frameId
    const flag = this.frameFlag
    this.state = State.Header
    if (length > MPLEX_MAX_MESSAGE) {
      this.fail(new MuxProtocolError('ERR_REVERSELB_MUX_FRAME_TOO_LARGE', `mplex message of ${length} bytes exceeds ${MPLEX_MAX_MESSAGE}`))
      return
    }
    let target: MplexStream | undefined
    switch (flag) {
      case MplexFlag.NewStream:
        this.incoming(id)
        break // the data is the stream's name: skipped
      case MplexFlag.MessageInitiator:
        target = this.remote.get(id)
        break
      case MplexFlag.MessageReceiver:
        target = this.local.get(id)
        break
      case MplexFlag.CloseInitiator:
        this.remote.get(id)?.pushEnd()
        break
      case MplexFlag.CloseReceiver:
        this.local.get(id)?.pushEnd()
        break
      case MplexFlag.ResetInitiator:
        this.remote.get(id)?.finish(resetByPeer())
        break
      case MplexFlag.ResetReceiver:
        this.local.get(id)?.finish(resetByPeer())
        break
      default:
        this.fail(new MuxProtocolError('ERR_REVERSELB_MUX_FLAGS', `unknown mplex flag ${flag}`))
        return
    }
    if (length > 0) {
      this.state = State.Data
      this.dataLeft = length
      this.dataStream = target
    }
  }

  private incoming (id: number): void {
    if (this.remote.has(id)) { this.fail(new MuxProtocolError('ERR_REVERSELB_MUX_STREAM_ID', `peer reused stream id ${id}`)); return }
    if (this.remote.size >= this.opts.maxInboundStreams) {
      this.frame(id, MplexFlag.ResetReceiver)
      return
    }
    const s = new MplexStream(id, this, false)
    this.remote.set(id, s)
    if (this.opts.accept(s)) return
    this.remote.delete(id)
    this.frame(id, MplexFlag.ResetReceiver)
    this.countRefusal()
  }
}
