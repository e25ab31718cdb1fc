import type { StreamMuxer } from '@libp2p/interface'
import type { Uint8ArrayList } from 'uint8arraylist'

const HEADER_LENGTH = 12
const TYPE_DATA = 0

interface YamuxDecoderInternals {
  decoder?: { buffer: Uint8ArrayList, readFrame: () => unknown }
}

/**
 * @chainsafe/libp2p-yamux 8 buffers a Data frame of any announced length (up to 4 GiB) before it
 * checks the stream's window, so one header from a peer could make us hold unbounded memory.
 * Refuse, as soon as its header is in, any Data frame longer than a window can ever be: the
 * muxer then aborts the connection. Without the internals (another version) this does nothing.
 */
export function limitYamuxFrames (muxer: StreamMuxer, maxFrameBytes: number): void {
  const decoder = (muxer as unknown as YamuxDecoderInternals).decoder
  if (decoder === undefined || typeof decoder.readFrame !== 'function') return
  const readFrame = decoder.readFrame.bind(decoder)
  decoder.readFrame = () => {
    const buf = decoder.buffer
    if (buf.byteLength >= HEADER_LENGTH && buf.get(1) === TYPE_DATA) {
      const length = buf.getUint32(8)
      if (length > maxFrameBytes) throw new Error(`yamux data frame of ${length} bytes is larger than any stream window (${maxFrameBytes})`)
    }
    return readFrame()
  }
}
