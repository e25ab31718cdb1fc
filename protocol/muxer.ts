import './polyfill.js'
import { yamux } from '@chainsafe/libp2p-yamux'
import { mplex } from '@libp2p/mplex'
import { limitYamuxFrames } from './yamux-guard.js'
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
  const muxer = yamux({
    // Liveness is checked with WebSocket pings, which work the same for both muxers.
    enableKeepAlive: false,
    maxInboundStreams: opts.maxInboundStreams,
    maxOutboundStreams: opts.maxOutboundStreams,
    streamOptions: { ...streamOptions, maxStreamWindowSize: opts.maxStreamWindowBytes }
  })().createStreamMuxer(conn)
  openYamuxWindows(muxer, opts.maxStreamWindowBytes)
  limitYamuxFrames(muxer, opts.maxStreamWindowBytes)
  return muxer
}

/** The parts of @chainsafe/libp2p-yamux 8's YamuxMuxer and YamuxStream that openYamuxWindows uses. */
interface YamuxInternals {
  _newStream?: (id: number, state: number, direction: string) => YamuxStreamInternals
}
interface YamuxStreamInternals {
  state: number
  recvWindow: number
  recvWindowCapacity: number
  sendWindowUpdate: () => void
}
/** StreamState.Established in @chainsafe/libp2p-yamux 8. */
const YAMUX_ESTABLISHED = 3

/**
 * Gives every yamux stream its full receive window at once, and sends window updates only when
 * half of it is used up (as Go's yamux does).
 *
 * Left alone, @chainsafe/libp2p-yamux 8 grows a stream's window beyond the initial 256 KiB only
 * from RTTs measured with its own keep-alive pings, which we disable (WebSocket pings do that job),
 * so every stream stays at 256 KiB, too little to keep a 4-process loopback pipeline busy; and it
 * answers every data frame with a window update, i.e. one extra tiny frame per 64 KiB.
 *
 * Wire compatible: the peer still assumes the initial 256 KiB and learns the larger window from an
 * ordinary WindowUpdate (sent with the SYN for streams we open, with the first update otherwise).
 * Reaches into the library's internals; when they are not there (another version), streams keep
 * the library's behaviour.
 */
function openYamuxWindows (muxer: StreamMuxer, windowBytes: number): void {
  const m = muxer as unknown as YamuxInternals
  const newStream = m._newStream
  if (typeof newStream !== 'function') return
  m._newStream = (id, state, direction) => {
    const stream = newStream.call(m, id, state, direction)
    if (typeof stream.recvWindow !== 'number' || typeof stream.sendWindowUpdate !== 'function') return stream
    if (windowBytes > stream.recvWindow) stream.recvWindow = windowBytes
    const sendWindowUpdate = stream.sendWindowUpdate.bind(stream)
    stream.sendWindowUpdate = () => {
      if (stream.state === YAMUX_ESTABLISHED && stream.recvWindowCapacity >= stream.recvWindow / 2) return
      sendWindowUpdate()
    }
    return stream
  }
}
