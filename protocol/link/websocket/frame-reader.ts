import { ReverselbError } from '../../errors.js'
import { applyMask, rotatedKey } from './mask.js'
import { MAX_HEADER_BYTES, OPCODE } from './frame-header.js'

/** A peer that broke RFC 6455; `closeCode` is the status we close with (1002, 1003 or 1009). */
export class WebSocketProtocolError extends ReverselbError {
  override name = 'WebSocketProtocolError'
  constructor (readonly closeCode: number, message: string) {
    super('ERR_REVERSELB_WEBSOCKET', message)
  }
}

export interface FrameSink {
  /**
   * A piece of a binary message's payload, unmasked, as it arrived (a view of the chunk pushed):
   * message boundaries are not reported, as the tunnel's byte stream has none.
   */
  data: (piece: Buffer) => void
  /** A whole control frame (close, ping, pong): at most 125 bytes. */
  control: (opcode: number, payload: Buffer) => void
  /** The peer broke the protocol; nothing more is read. */
  fail: (err: WebSocketProtocolError) => void
}

export interface FrameReaderOptions {
  /** Whether frames must be masked (a server reads a client's) or must not (a client reads a server's). */
  masked: boolean
  /** The longest message (all its fragments) accepted. */
  maxMessageBytes: number
}

const MAX_CONTROL_BYTES = 125
const ZERO_KEY = Buffer.alloc(4)

/**
 * Parses RFC 6455 frames from chunks split anywhere, for a binary-only tunnel: payload goes on
 * piece by piece without being gathered, and what is held between chunks is at most one header
 * (14 bytes) or one control frame (125 bytes). Every violation ends in fail(), never a throw.
 */
export class FrameReader {
  private readonly head = Buffer.alloc(MAX_HEADER_BYTES)
  private headBytes = 0
  /** Payload bytes of the current frame still to come; -1 while reading a header. */
  private left = -1
  private opcode = 0
  private key: Buffer | undefined
  /** Payload bytes of the current frame unmasked so far: where the key stands. */
  private keyAt = 0
  /** Inside a fragmented binary message. */
  private inMessage = false
  private messageBytes = 0
  private control: Buffer | undefined
  private controlAt = 0
  private stopped = false

  constructor (private readonly sink: FrameSink, private readonly opts: FrameReaderOptions) {}

  push (chunk: Buffer): void {
    let pos = 0
    while (pos < chunk.length && !this.stopped) {
      if (this.left < 0) {
        pos = this.readHeader(chunk, pos)
        continue
      }
      const n = Math.min(this.left, chunk.length - pos)
      const piece = chunk.subarray(pos, pos + n)
      pos += n
      this.left -= n
      if (this.key !== undefined) {
        applyMask(piece, rotatedKey(this.key, this.keyAt), piece, 0, n)
        this.keyAt += n
      }
      if (this.control !== undefined) {
        piece.copy(this.control, this.controlAt)
        this.controlAt += n
        if (this.left === 0) this.endControl()
      } else {
        if (this.left === 0) this.left = -1
        if (n > 0) this.sink.data(piece)
      }
    }
  }

  /** Consumes header bytes from `pos`; once the header is whole, starts its frame. Returns the new position. */
  private readHeader (chunk: Buffer, pos: number): number {
    while (pos < chunk.length) {
      this.head[this.headBytes++] = chunk[pos++]
      if (this.headBytes >= 2 && this.headBytes === this.headerSize()) {
        this.startFrame()
        return pos
      }
    }
    return pos
  }

  private headerSize (): number {
    const code = this.head[1] & 0x7f
    return 2 + (code === 126 ? 2 : code === 127 ? 8 : 0) + ((this.head[1] & 0x80) !== 0 ? 4 : 0)
  }

  private startFrame (): void {
    const h = this.head
    const fin = (h[0] & 0x80) !== 0
    const opcode = h[0] & 0x0f
    const masked = (h[1] & 0x80) !== 0
    const code = h[1] & 0x7f
    let len = code
    let p = 2
    if (code === 126) { len = h.readUInt16BE(2); p = 4 } else if (code === 127) {
      const high = h.readUInt32BE(2)
      // Above 2^53 a length is not even a safe integer; far above any limit anyway.
      len = high > 0x1fffff ? Number.MAX_SAFE_INTEGER : high * 0x100000000 + h.readUInt32BE(6)
      p = 10
    }
    this.headBytes = 0
    const problem = this.problem(h[0], masked, len)
    if (problem !== undefined) { this.fail(...problem); return }
    this.key = undefined
    if (masked) {
      const key = h.subarray(p, p + 4)
      if (!key.equals(ZERO_KEY)) this.key = Buffer.from(key)
    }
    this.keyAt = 0
    this.opcode = opcode
    if (opcode >= 0x8) {
      this.control = Buffer.alloc(len)
      this.controlAt = 0
      this.left = len
      if (len === 0) this.endControl()
      return
    }
    this.inMessage = !fin
    this.control = undefined
    this.left = len === 0 ? -1 : len
  }

  /** What is wrong with a frame (its first byte, mask bit and length), as the close code and reason; counts message bytes. */
  private problem (b0: number, masked: boolean, len: number): [number, string] | undefined {
    const fin = (b0 & 0x80) !== 0
    const opcode = b0 & 0x0f
    if ((b0 & 0x70) !== 0) return [1002, 'RSV1, RSV2 and RSV3 must be clear (no extension was agreed)']
    if (masked !== this.opts.masked) return [1002, this.opts.masked ? 'a client frame must be masked' : 'a server frame must not be masked']
    if (opcode >= 0x8) {
      if (opcode !== OPCODE.close && opcode !== OPCODE.ping && opcode !== OPCODE.pong) return [1002, `unknown control opcode ${opcode}`]
      if (!fin) return [1002, 'a control frame must not be fragmented']
      if (len > MAX_CONTROL_BYTES) return [1002, `a control frame of ${len} bytes (at most ${MAX_CONTROL_BYTES})`]
      return undefined
    }
    if (opcode === OPCODE.text) return [1003, 'a text message in a binary tunnel']
    if (opcode !== OPCODE.binary && opcode !== OPCODE.continuation) return [1002, `unknown data opcode ${opcode}`]
    if (opcode === OPCODE.continuation && !this.inMessage) return [1002, 'a continuation frame outside a fragmented message']
    if (opcode === OPCODE.binary && this.inMessage) return [1002, 'a new message inside a fragmented one']
    this.messageBytes = (opcode === OPCODE.binary ? 0 : this.messageBytes) + len
    if (this.messageBytes > this.opts.maxMessageBytes) return [1009, `a message of more than ${this.opts.maxMessageBytes} bytes`]
    return undefined
  }

  private endControl (): void {
    const payload = this.control ?? Buffer.alloc(0)
    this.control = undefined
    this.left = -1
    this.sink.control(this.opcode, payload)
  }

  /** Reads nothing more (after a close frame). */
  stop (): void {
    this.stopped = true
  }

  private fail (code: number, message: string): void {
    this.stopped = true
    this.sink.fail(new WebSocketProtocolError(code, `WebSocket protocol error: ${message}`))
  }
}
