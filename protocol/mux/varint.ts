/** Unsigned LEB128 (multiformats unsigned-varint), limited to 9 bytes as mplex requires. */
export const MAX_VARINT_BYTES = 9

/** Writes `value` at `offset`; returns the offset after it. */
export function writeUvarint (value: number, buf: Buffer, offset: number): number {
  while (value >= 0x80) {
    buf[offset++] = (value % 0x80) | 0x80
    value = Math.floor(value / 0x80)
  }
  buf[offset++] = value
  return offset
}

/**
 * Incremental reader: feed() bytes one at a time; it answers the value when a byte without the
 * continuation bit ends it, undefined while more are needed. Throws past 9 bytes.
 */
export class UvarintReader {
  private value = 0
  private scale = 1
  private bytes = 0

  feed (byte: number): number | undefined {
    if (++this.bytes > MAX_VARINT_BYTES) throw new RangeError('varint longer than 9 bytes')
    this.value += (byte & 0x7f) * this.scale
    this.scale *= 0x80
    if ((byte & 0x80) !== 0) return undefined
    const v = this.value
    this.value = 0
    this.scale = 1
    this.bytes = 0
    if (!Number.isSafeInteger(v)) throw new RangeError('varint exceeds 2^53')
    return v
  }
}
