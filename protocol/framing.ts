import { Uint8ArrayList } from 'uint8arraylist'
import { ProtocolError } from './messages.js'
import type { MessageStream, MessageStreamEvents, Stream } from '@libp2p/interface'

// Control messages travel as a 4-byte big-endian length followed by that many bytes of UTF-8 JSON.
const LENGTH_BYTES = 4

export function encodeFrame (message: unknown): Uint8Array {
  const body = Buffer.from(JSON.stringify(message), 'utf8')
  const out = Buffer.allocUnsafe(LENGTH_BYTES + body.length)
  out.writeUInt32BE(body.length, 0)
  body.copy(out, LENGTH_BYTES)
  return out
}

export function writeFrame (stream: MessageStream, message: unknown): void {
  stream.send(encodeFrame(message))
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
  rest: Uint8ArrayList
  /** True when the peer had already closed its write side when the frame completed. */
  ended: boolean
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
export function decodeFrame (buf: Uint8ArrayList | Uint8Array, maxBytes: number, what: string): DecodedFrame | undefined {
  if (buf.byteLength < LENGTH_BYTES) return undefined
  const list = buf instanceof Uint8ArrayList ? buf : new Uint8ArrayList(buf)
  const len = list.getUint32(0)
  if (len > maxBytes) throw new ProtocolError(`${what} of ${len} bytes exceeds the limit of ${maxBytes}`)
  if (list.byteLength < LENGTH_BYTES + len) return undefined
  const body = list.subarray(LENGTH_BYTES, LENGTH_BYTES + len)
  let message: unknown
  try {
    message = JSON.parse(Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8'))
  } catch {
    throw new ProtocolError(`${what} is not valid JSON`)
  }
  return { message, length: LENGTH_BYTES + len }
}

/**
 * Reads one length-prefixed JSON frame. Rejects with a ProtocolError on oversized or malformed
 * input, on timeout, or when the stream ends first; never leaves a listener behind.
 */
export async function readFrame (stream: Stream, opts: ReadFrameOptions): Promise<Frame> {
  return await new Promise<Frame>((resolve, reject) => {
    const buf = new Uint8ArrayList()
    let ended = false
    const cleanup = (): void => {
      clearTimeout(timer)
      stream.removeEventListener('message', onMessage)
      stream.removeEventListener('remoteCloseWrite', onEnd)
      stream.removeEventListener('close', onClose)
    }
    const fail = (msg: string): void => { cleanup(); reject(new ProtocolError(msg)) }
    const tryParse = (): boolean => {
      let decoded: DecodedFrame | undefined
      try {
        decoded = decodeFrame(buf, opts.maxBytes, opts.what)
      } catch (err) {
        fail((err as Error).message)
        return true
      }
      if (decoded === undefined) return false
      buf.consume(decoded.length)
      cleanup()
      resolve({ message: decoded.message, rest: buf, ended })
      return true
    }
    const onMessage = (evt: MessageStreamEvents['message']): void => {
      buf.append(evt.data)
      if (!tryParse() && ended && stream.readBufferLength === 0) fail(`stream ended before the ${opts.what} was complete`)
    }
    const onEnd = (): void => {
      ended = true
      if (!tryParse()) fail(`stream ended before the ${opts.what} was complete`)
    }
    const onClose = (evt: MessageStreamEvents['close']): void => {
      fail(`stream closed before the ${opts.what} arrived${evt.error !== undefined ? `: ${evt.error.message}` : ''}`)
    }
    // The peer may have sent its frame and FIN before anyone listened; the bytes are still queued.
    if (stream.remoteWriteStatus === 'closed') {
      ended = true
      if (stream.readBufferLength === 0) { reject(new ProtocolError(`stream ended before the ${opts.what} was complete`)); return }
    }
    const timer = setTimeout(() => fail(`no ${opts.what} within ${opts.timeoutMs} ms`), opts.timeoutMs)
    stream.addEventListener('message', onMessage)
    stream.addEventListener('remoteCloseWrite', onEnd)
    stream.addEventListener('close', onClose)
  })
}
