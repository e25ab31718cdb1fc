import { ProtocolError } from './messages.js'
import type { MuxStream } from './mux/index.js'

// Control messages travel as a 4-byte big-endian length followed by that many bytes of UTF-8 JSON.
const LENGTH_BYTES = 4

export function encodeFrame (message: unknown): Buffer {
  // Encoded straight into the frame: no intermediate buffer and copy (a frame per new connection).
  const json = JSON.stringify(message)
  const length = Buffer.byteLength(json, 'utf8')
  const out = Buffer.allocUnsafe(LENGTH_BYTES + length)
  out.writeUInt32BE(length, 0)
  out.write(json, LENGTH_BYTES, 'utf8')
  return out
}

export function writeFrame (stream: MuxStream, message: unknown): void {
  stream.write(encodeFrame(message))
}

export interface ReadFrameOptions {
  maxBytes: number
  timeoutMs: number
  /** Names the message in errors, e.g. "registration". */
  what: string
}

export interface Frame {
  message: unknown
  /** Bytes that arrived after the frame: the start of the relayed data. */
  rest: Buffer
}

export interface DecodedFrame {
  message: unknown
  /** Bytes the frame took from the front of the buffer (length prefix included). */
  length: number
}

/**
 * Decodes the frame at the front of `buf` without consuming anything: undefined while more bytes
 * are needed; throws a ProtocolError on an oversized or malformed frame. Pure, so it can be fuzzed.
 */
export function decodeFrame (buf: Uint8Array, maxBytes: number, what: string): DecodedFrame | undefined {
  if (buf.byteLength < LENGTH_BYTES) return undefined
  const b = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength)
  const len = b.readUInt32BE(0)
  if (len > maxBytes) throw new ProtocolError(`${what} of ${len} bytes exceeds the limit of ${maxBytes}`)
  if (b.byteLength < LENGTH_BYTES + len) return undefined
  let message: unknown
  try {
    message = JSON.parse(b.toString('utf8', LENGTH_BYTES, LENGTH_BYTES + len))
  } catch {
    throw new ProtocolError(`${what} is not valid JSON`)
  }
  return { message, length: LENGTH_BYTES + len }
}

/**
 * Reads one length-prefixed JSON frame, then leaves the stream paused and detached: what follows
 * waits in it for the next reader (relay). Rejects with a ProtocolError on oversized or malformed
 * input, on timeout, or when the stream ends or closes first; then the caller resets the stream.
 */
export async function readFrame (stream: MuxStream, opts: ReadFrameOptions): Promise<Frame> {
  return await new Promise<Frame>((resolve, reject) => {
    let buf: Buffer = Buffer.alloc(0)
    let settled = false
    const settle = (): void => {
      settled = true
      clearTimeout(timer)
      stream.pause()
      stream.detach()
    }
    const fail = (msg: string): void => {
      if (settled) return
      settle()
      reject(new ProtocolError(msg))
    }
    const timer = setTimeout(() => fail(`no ${opts.what} within ${opts.timeoutMs} ms`), opts.timeoutMs)
    stream.attach({
      onData: (chunk) => {
        if (settled) return
        buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk])
        let decoded: DecodedFrame | undefined
        try {
          decoded = decodeFrame(buf, opts.maxBytes, opts.what)
        } catch (err) {
          fail((err as Error).message)
          return
        }
        if (decoded === undefined) return
        settle()
        resolve({ message: decoded.message, rest: buf.subarray(decoded.length) })
      },
      onEnd: () => fail(`stream ended before the ${opts.what} was complete`),
      onClose: (err) => fail(`stream closed before the ${opts.what} arrived${err !== undefined ? `: ${err.message}` : ''}`),
      onDrain: () => {}
    })
  })
}
