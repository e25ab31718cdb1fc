import { createRequire } from 'node:module'

type MaskFn = (source: Buffer, mask: Buffer, output: Buffer, offset: number, length: number) => void

/** XOR in JavaScript, for when the native bufferutil is not installed. */
const maskJs: MaskFn = (source, mask, output, offset, length) => {
  for (let i = 0; i < length; i++) output[offset + i] = source[i] ^ mask[i & 3]
}

/** bufferutil (an optional dependency, prebuilt) masks several times faster than a JS loop. */
function loadNative (): MaskFn {
  try {
    const bu = createRequire(import.meta.url)('bufferutil') as { mask?: MaskFn }
    return typeof bu.mask === 'function' ? bu.mask : maskJs
  } catch {
    return maskJs
  }
}

/** Writes `source` XOR the 4-byte `key` (rotated by `keyOffset`) into `output` at `offset` (RFC 6455 5.3). */
export const applyMask: MaskFn = loadNative()

/** The key as it applies from byte `keyOffset` of a message on. */
export function rotatedKey (key: Buffer, keyOffset: number): Buffer {
  const r = keyOffset & 3
  if (r === 0) return key
  return Buffer.from([key[r], key[(r + 1) & 3], key[(r + 2) & 3], key[(r + 3) & 3]])
}
