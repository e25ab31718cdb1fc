import './polyfill.js'
import { yamux } from '@chainsafe/libp2p-yamux'
import { mplex } from '@libp2p/mplex'
import type { MuxerName } from './version.js'
import type { MessageStream, StreamMuxer } from '@libp2p/interface'

export interface MuxerOptions {
  /** Most streams the peer may have open at once on this connection. */
  maxInboundStreams: number
  maxOutboundStreams: number
  /** Per-stream flow control window (yamux): bounds what one slow reader can make us buffer. */
  maxStreamWindowBytes: number
}

export const DEFAULT_MUXER_OPTIONS: MuxerOptions = {
  maxInboundStreams: 20_000,
  maxOutboundStreams: 20_000,
  maxStreamWindowBytes: 4 * 1024 * 1024
}

/** Starts a muxer of the negotiated kind on a MessageStream (a WebSocket, see ws-message-stream). */
export function createMuxer (name: MuxerName, conn: MessageStream, opts: MuxerOptions = DEFAULT_MUXER_OPTIONS): StreamMuxer {
  const streamOptions = {
    // A paused stream may receive a whole window before the peer stops; keep that buffered, not reset.
    maxReadBufferLength: opts.maxStreamWindowBytes * 2,
    inactivityTimeout: 0
  }
  if (name === 'mplex') {
    return mplex({
      // mplex aborts the connection above 5 new streams a second by default; a tunnel opens
      // one per frontend connection, so the stream limits below are the real guard.
      disconnectThreshold: Number.MAX_SAFE_INTEGER,
      maxInboundStreams: opts.maxInboundStreams,
      maxOutboundStreams: opts.maxOutboundStreams,
      streamOptions
    } as Parameters<typeof mplex>[0])().createStreamMuxer(conn)
  }
  return yamux({
    // Liveness is checked with WebSocket pings, which work the same for both muxers.
    enableKeepAlive: false,
    maxInboundStreams: opts.maxInboundStreams,
    maxOutboundStreams: opts.maxOutboundStreams,
    streamOptions: { ...streamOptions, maxStreamWindowSize: opts.maxStreamWindowBytes }
  })().createStreamMuxer(conn)
}
