import { ReverselbError } from '../errors.js'
import { MuxProtocolError, resetByPeer } from './errors.js'
import { MuxSession } from './session.js'
import { MuxStream, piece } from './stream.js'
import type { MuxSessionOptions } from './session.js'
import type { MuxTransport } from './transport.js'

// hashicorp/yamux spec.md: a 12-byte header (version, type, flags, stream id, length), big-endian.
export const YAMUX_HEADER = 12
export const enum Type { Data = 0, WindowUpdate = 1, Ping = 2, GoAway = 3 }
export const enum Flag { SYN = 1, ACK = 2, FIN = 4, RST = 8 }
/** Every stream starts with this window in both directions (spec). */
export const INITIAL_WINDOW = 256 * 1024
const MAX_WINDOW = 0xffffffff
/** Largest data frame we send: the read size of a socket, so one chunk is one frame. */
const MAX_FRAME = 64 * 1024

class YamuxStream extends MuxStream {
  /** Bytes we may still send. */
  sendWindow = INITIAL_WINDOW
  /** Bytes the peer may still send us. */
  recvCredit = INITIAL_WINDOW
  /** Window size we grant; doubles at each update up to the session's maximum. */
  recvTarget = INITIAL_WINDOW
  /** Taken by the reader but not yet granted back. */
  unacked = 0
  /** SYN (we opened it) or ACK (the peer did) to carry on our next frame. */
  flagsOut = 0
  readonly inbound: boolean
  constructor (id: number, owner: YamuxSession, inbound: boolean) {
    super(id, owner)
    this.inbound = inbound
    this.flagsOut = inbound ? Flag.ACK : Flag.SYN
  }
}

/**
 * yamux over a MuxTransport. Windows: the reader grants the peer more once half of the current
 * window was taken (not merely received), so a paused reader holds at most one window; each grant
 * doubles the window up to maxStreamWindowBytes, so short exchanges send no updates and bulk ones
 * soon run with the full window.
 */
export class YamuxSession extends MuxSession {
  private readonly streams = new Map<number, YamuxStream>()
  private nextId: number
  private lastInbound = 0
  private inbound = 0
  /** Bytes all streams hold for paused or detached readers. */
  private buffered = 0
  private readonly out = Buffer.allocUnsafe(YAMUX_HEADER)
  // Decoder state: a header split across reads, then the payload of a data frame.
  private readonly head = Buffer.allocUnsafe(YAMUX_HEADER)
  private headLen = 0
  private dataLeft = 0
  private dataStream: YamuxStream | undefined
  private dataFlags = 0
  private pingSecond = 0
  private pings = 0

  constructor (transport: MuxTransport, opts: MuxSessionOptions) {
    super(transport, opts)
    this.nextId = opts.client ? 1 : 2
  }

  get streamCount (): number {
    return this.streams.size
  }

  protected allStreams (): Iterable<MuxStream> {
    return this.streams.values()
  }

  open (): MuxStream {
    if (this.isClosed) throw new ReverselbError('ERR_REVERSELB_MUX_CLOSED', 'muxed connection is closed')
    if (this.nextId > MAX_WINDOW) throw new ReverselbError('ERR_REVERSELB_MUX_IDS_EXHAUSTED', 'stream ids exhausted on this connection')
    const stream = new YamuxStream(this.nextId, this, false)
    this.nextId += 2
    this.streams.set(stream.id, stream)
    return stream
  }

  private frame (type: Type, flags: number, id: number, length: number, payload?: Buffer): void {
    const h = this.out
    h[0] = 0
    h[1] = type
    h.writeUInt16BE(flags, 2)
    h.writeUInt32BE(id, 4)
    h.writeUInt32BE(length, 8)
    this.send(h, payload)
  }

  private flagsFor (s: YamuxStream): number {
    const f = s.flagsOut
    s.flagsOut = 0
    return f
  }

  writeData (stream: MuxStream, chunk: Buffer): boolean {
    const s = stream as YamuxStream
    if (s.pendingOut !== undefined) {
      s.pendingOut = Buffer.concat([s.pendingOut, chunk])
      s.needDrain = true
      return false
    }
    const rest = this.sendAllowed(s, chunk)
    if (rest !== undefined) {
      s.pendingOut = rest
      s.needDrain = true
      return false
    }
    return this.full ? this.wait(s) : true
  }

  /** Sends what the window allows; returns what it does not. */
  private sendAllowed (s: YamuxStream, chunk: Buffer): Buffer | undefined {
    let off = 0
    while (off < chunk.length && s.sendWindow > 0) {
      const n = Math.min(chunk.length - off, s.sendWindow, MAX_FRAME)
      this.frame(Type.Data, this.flagsFor(s), s.id, n, n === chunk.length ? chunk : chunk.subarray(off, off + n))
      s.sendWindow -= n
      off += n
    }
    return off === chunk.length ? undefined : chunk.subarray(off)
  }

  /** A window update arrived for a stream with data waiting. */
  private flushPending (s: YamuxStream): void {
    const pending = s.pendingOut
    if (pending === undefined) return
    s.pendingOut = this.sendAllowed(s, pending)
    if (s.pendingOut !== undefined) return
    if (s.localEnded && !s.finSent) this.writeEnd(s)
    if (s.closed) return
    if (this.full) this.wait(s); else s.signalDrain()
  }

  protected override resumeWriter (stream: MuxStream): void {
    // Still short of window: the window update will tell the writer.
    if (stream.pendingOut === undefined) stream.signalDrain()
  }

  writeEnd (stream: MuxStream): void {
    const s = stream as YamuxStream
    this.frame(Type.WindowUpdate, this.flagsFor(s) | Flag.FIN, s.id, 0)
    s.sentFin()
  }

  writeReset (stream: MuxStream): void {
    this.frame(Type.WindowUpdate, Flag.RST, stream.id, 0)
  }

  consumed (stream: MuxStream, bytes: number): void {
    const s = stream as YamuxStream
    if (s.closed || s.remoteEnded) return
    s.unacked += bytes
    if (s.unacked < s.recvTarget / 2) return
    let delta = s.unacked
    // Windows grow only while the connection holds little for stalled readers.
    if (s.recvTarget < this.opts.maxStreamWindowBytes && this.buffered < this.opts.maxSessionBufferBytes / 2) {
      const target = Math.min(s.recvTarget * 2, this.opts.maxStreamWindowBytes)
      delta += target - s.recvTarget
      s.recvTarget = target
    }
    s.unacked = 0
    s.recvCredit += delta
    this.frame(Type.WindowUpdate, this.flagsFor(s), s.id, delta)
  }

  queued (stream: MuxStream, delta: number): void {
    // Each stream holds at most its window; all of them together at most maxSessionBufferBytes
    // (many peers that stop reading at once would otherwise each keep a full window here).
    this.buffered += delta
    if (delta > 0 && this.buffered > this.opts.maxSessionBufferBytes) {
      this.opts.onStreamOverflow(stream, stream.queuedBytes)
      stream.reset(new MuxProtocolError('ERR_REVERSELB_MUX_WINDOW_EXCEEDED', `streams of this connection hold more than ${this.opts.maxSessionBufferBytes} bytes for readers that do not take them`))
    }
  }

  release (stream: MuxStream): void {
    const s = stream as YamuxStream
    if (this.streams.delete(s.id) && s.inbound) this.inbound--
    this.forget(s)
  }

  protected sendGoAway (code: number): void {
    this.frame(Type.GoAway, 0, 0, code)
  }

  receive (data: Buffer): void {
    let off = 0
    const len = data.length
    while (off < len && !this.isClosed) {
      if (this.dataLeft > 0) {
        const n = Math.min(this.dataLeft, len - off)
        this.dataLeft -= n
        const s = this.dataStream
        if (s !== undefined) s.push(piece(data, off, n))
        off += n
        if (this.dataLeft === 0) this.applyFlags(s, this.dataFlags)
      } else if (this.headLen === 0 && len - off >= YAMUX_HEADER) {
        const at = off
        off += YAMUX_HEADER
        this.header(data, at)
      } else {
        const n = Math.min(YAMUX_HEADER - this.headLen, len - off)
        data.copy(this.head, this.headLen, off, off + n)
        this.headLen += n
        off += n
        if (this.headLen === YAMUX_HEADER) {
          this.headLen = 0
          this.header(this.head, 0)
        }
      }
    }
  }

  private header (b: Buffer, o: number): void {
    const version = b[o]
    const type = b[o + 1]
    const flags = b.readUInt16BE(o + 2)
    const id = b.readUInt32BE(o + 4)
    const length = b.readUInt32BE(o + 8)
    if (version !== 0) { this.fail(new MuxProtocolError('ERR_REVERSELB_MUX_VERSION', `yamux version ${version} (only 0 exists)`)); return }
    if (type === Type.Data || type === Type.WindowUpdate) {
      if (id === 0) { this.fail(new MuxProtocolError('ERR_REVERSELB_MUX_STREAM_ID', 'data or window update on stream 0')); return }
      let s = this.streams.get(id)
      if ((flags & Flag.SYN) !== 0) {
        if (!this.checkNewId(id)) return
        s = this.incoming(id)
      }
      if (type === Type.WindowUpdate) {
        if (s !== undefined && length > 0) {
          if (s.sendWindow + length > MAX_WINDOW) {
            this.fail(new MuxProtocolError('ERR_REVERSELB_MUX_WINDOW_OVERFLOW', `window update of ${length} on stream ${id} overflows 2^32-1`))
            return
          }
          s.sendWindow += length
          this.flushPending(s)
        }
        this.applyFlags(s, flags)
        return
      }
      if (s !== undefined) {
        if (length > s.recvCredit) {
          this.fail(new MuxProtocolError('ERR_REVERSELB_MUX_WINDOW_EXCEEDED', `data frame of ${length} bytes on stream ${id} exceeds its window of ${s.recvCredit}`))
          return
        }
        s.recvCredit -= length
      } else if (length > this.opts.maxStreamWindowBytes) {
        // A stream we closed may still get what was in flight, never more than a window.
        this.fail(new MuxProtocolError('ERR_REVERSELB_MUX_FRAME_TOO_LARGE', `data frame of ${length} bytes on unknown stream ${id}`))
        return
      }
      if (length === 0) { this.applyFlags(s, flags); return }
      this.dataLeft = length
      this.dataStream = s
      this.dataFlags = flags
      return
    }
    if (type === Type.Ping) {
      if (id !== 0) { this.fail(new MuxProtocolError('ERR_REVERSELB_MUX_STREAM_ID', `ping on stream ${id}`)); return }
      if ((flags & Flag.SYN) !== 0 && this.pingAllowed()) this.frame(Type.Ping, Flag.ACK, 0, length)
      return
    }
    if (type === Type.GoAway) {
      this.transport.close()
      this.closed(length === 0 ? undefined : new MuxProtocolError('ERR_REVERSELB_MUX_GOAWAY', `peer closed the connection with GoAway code ${length}`))
      return
    }
    this.fail(new MuxProtocolError('ERR_REVERSELB_MUX_FRAME_TYPE', `unknown yamux frame type ${type}`))
  }

  private checkNewId (id: number): boolean {
    if ((id % 2 === 1) === this.opts.client) {
      this.fail(new MuxProtocolError('ERR_REVERSELB_MUX_STREAM_ID', `peer opened stream ${id}, which has our parity`))
      return false
    }
    if (id <= this.lastInbound || this.streams.has(id)) {
      this.fail(new MuxProtocolError('ERR_REVERSELB_MUX_STREAM_ID', `peer reused stream id ${id}`))
      return false
    }
    this.lastInbound = id
    return true
  }

  private incoming (id: number): YamuxStream | undefined {
    if (this.inbound >= this.opts.maxInboundStreams) {
      this.frame(Type.WindowUpdate, Flag.RST, id, 0)
      return undefined
    }
    const s = new YamuxStream(id, this, true)
    this.streams.set(id, s)
    this.inbound++
    if (this.opts.accept(s)) return s
    this.streams.delete(id)
    this.inbound--
    this.frame(Type.WindowUpdate, Flag.RST, id, 0)
    this.countRefusal()
    return undefined
  }

  private applyFlags (s: YamuxStream | undefined, flags: number): void {
    if (s === undefined) return
    if ((flags & Flag.RST) !== 0) s.finish(resetByPeer())
    else if ((flags & Flag.FIN) !== 0) s.pushEnd()
  }

  private pingAllowed (): boolean {
    const second = Math.floor(Date.now() / 1000)
    if (second !== this.pingSecond) { this.pingSecond = second; this.pings = 0 }
    return ++this.pings <= this.opts.maxPingsPerSecond
  }
}
