import { randomFillSync } from 'node:crypto'

/**
 * How a client masks its frames (RFC 6455): 'random' as the RFC asks; 'zero' where TLS is pinned
 * to the server's certificate, so no proxy can read a frame and XOR-ing every byte buys nothing;
 * the server sends unmasked ('none').
 */
export type MaskMode = 'none' | 'zero' | 'random'

export const OPCODE = { continuation: 0x0, text: 0x1, binary: 0x2, close: 0x8, ping: 0x9, pong: 0xa } as const

/** Longest frame header: 2 + 8 (length) + 4 (mask key). */
export const MAX_HEADER_BYTES = 14

export function headerLength (len: number, mask: MaskMode): number {
  return (len < 126 ? 2 : len < 65536 ? 4 : 10) + (mask === 'none' ? 0 : 4)
}

/**
 * Writes a final frame's header for `len` payload bytes into `buf` at `at`; returns the mask key
 * when random (the caller masks the payload with it), else undefined (zero: XOR changes nothing).
 */
export function writeHeader (buf: Buffer, at: number, opcode: number, len: number, mask: MaskMode): Buffer | undefined {
  let p = at
  buf[p++] = 0x80 | opcode
  const m = mask === 'none' ? 0 : 0x80
  if (len < 126) {
    buf[p++] = m | len
  } else if (len < 65536) {
    buf[p++] = m | 126
    buf.writeUInt16BE(len, p)
    p += 2
  } else {
    buf[p++] = m | 127
    buf.writeUInt32BE(Math.floor(len / 0x100000000), p)
    buf.writeUInt32BE(len >>> 0, p + 4)
    p += 8
  }
  if (mask === 'none') return undefined
  if (mask === 'zero') { buf.fill(0, p, p + 4); return undefined }
  randomFillSync(buf, p, 4)
  return Buffer.from(buf.subarray(p, p + 4))
}
