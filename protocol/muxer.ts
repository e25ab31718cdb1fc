import './polyfill.js'
import { yamux } from '@chainsafe/libp2p-yamux'
import { mplex } from '@libp2p/mplex'
import { tuneStreamClasses } from './stream-classes.js'
import { leanStreamEvents } from './stream-events.js'
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

/**
 * Starts a muxer of the negotiated kind on a MessageStream (a WebSocket, see ws-message-stream),
 * with the performance adjustments below (full yamux windows and fewer window updates, a Map for
 * yamux's stream lookup) and those of stream-classes.ts and stream-events.ts.
 */
export function createMuxer (name: MuxerName, conn: MessageStream, opts: MuxerOptions = DEFAULT_MUXER_OPTIONS): StreamMuxer {
  leanStreamEvents()
  const muxer = startMuxer(name, conn, opts)
  tuneStreamClasses(muxer)
  return muxer
}

function startMuxer (name: MuxerName, conn: MessageStream, opts: MuxerOptions): StreamMuxer {
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
  openYamuxWindows(muxer)
  limitYamuxFrames(muxer, opts.maxStreamWindowBytes)
  indexYamuxStreams(muxer)
  return muxer
}

/** The parts of @chainsafe/libp2p-yamux 8's YamuxMuxer and YamuxStream used below. */
interface YamuxInternals {
  _newStream?: (id: number, state: number, direction: string) => YamuxStreamInternals
  handleStreamMessage?: (frame: YamuxFrame) => void
  incomingStream?: (id: number) => void
  closeStream?: (id: number) => void
}
interface YamuxStreamInternals {
  streamId: number
  state: number
  recvWindow: number
  recvWindowCapacity: number
  maxStreamWindowSize: number
  readStatus: string
  sendWindowUpdate: () => void
  sendResume: () => void
  handleWindowUpdate: (frame: YamuxFrame) => void
  handleData: (frame: YamuxFrame) => void
}
interface YamuxFrame {
  header: { type: number, flag: number, streamID: number, length: number }
}
/** FrameType.Data and .WindowUpdate, Flag.SYN in @chainsafe/libp2p-yamux 8. */
const YAMUX_DATA = 0
const YAMUX_WINDOW_UPDATE = 1
const YAMUX_SYN = 1
/** StreamState.SYNReceived, .Established and .Paused in @chainsafe/libp2p-yamux 8. */
const YAMUX_SYN_RECEIVED = 2
const YAMUX_ESTABLISHED = 3
const YAMUX_PAUSED = 5

/**
 * Lets a busy yamux stream use its whole window, and sends window updates only when half of the
 * window is used up (as Go's yamux does) rather than after every frame.
 *
 * Left alone, @chainsafe/libp2p-yamux 8 grows a stream's window beyond the initial 256 KiB only
 * from RTTs measured with its own keep-alive pings, which we disable (WebSocket pings do that job),
 * so every stream stays at 256 KiB, too little to keep a 4-process loopback pipeline busy; and it
 * answers every data frame with a window update, i.e. one extra frame per 64 KiB, or per message
 * for small exchanges. Here a stream starts at the standard 256 KiB and, once half of that is
 * used, is raised to its maxStreamWindowSize in one update; short connections send no updates.
 *
 * Wire compatible: the peer assumes the initial 256 KiB and learns the larger window from ordinary
 * WindowUpdate frames. Patched once on the stream class (used by nothing else here), so it costs
 * nothing per stream; when the library's internals are not as expected, it is left alone.
 */
function openYamuxWindows (muxer: StreamMuxer): void {
  const m = muxer as unknown as YamuxInternals
  const newStream = m._newStream
  if (typeof newStream !== 'function') return
  m._newStream = (id, state, direction) => {
    const stream = newStream.call(m, id, state, direction)
    const proto = Object.getPrototypeOf(stream) as Partial<YamuxStreamInternals> | null
    if (proto !== null && !patchedClasses.has(proto)) {
      patchedClasses.add(proto)
      const sendWindowUpdate = proto.sendWindowUpdate
      if (typeof sendWindowUpdate === 'function' && typeof stream.recvWindow === 'number' &&
        typeof stream.recvWindowCapacity === 'number' && typeof stream.maxStreamWindowSize === 'number') {
        proto.sendWindowUpdate = function (this: YamuxStreamInternals) {
          // A stream we have not answered yet needs no update of its own either: the ACK rides on
          // the first frame we send. SYN (streams we open) and pauses stay the library's business.
          if (this.state === YAMUX_ESTABLISHED || this.state === YAMUX_SYN_RECEIVED) {
            if (this.recvWindowCapacity > this.recvWindow / 2) return
            if (this.recvWindow < this.maxStreamWindowSize) this.recvWindow = this.maxStreamWindowSize
          }
          sendWindowUpdate.call(this)
        }
      }
      keepRepausedStreamsClosed(proto)
    }
    return stream
  }
}

/**
 * @libp2p/utils 7's resume() delivers what the stream buffered while paused and then calls
 * sendResume(), which in @chainsafe/libp2p-yamux 8 marks the stream Established and opens its
 * window. But delivering may already have paused it again (the relay pauses a stream as soon as
 * its socket is full): as Established it then answered every further frame with more window,
 * until the peer had sent more than the read buffer may hold and the stream was reset; a slow
 * reader (1 MB/s, next to a fast one) lost its connection within seconds. The window still opens
 * once per resume (for what was delivered, so the pipe keeps flowing), but a stream paused again
 * stays Paused: what it buffers is bounded by one window per resume, and a resume needs a drain.
 */
function keepRepausedStreamsClosed (proto: Partial<YamuxStreamInternals>): void {
  const sendResume = proto.sendResume
  if (typeof sendResume !== 'function') return
  proto.sendResume = function (this: YamuxStreamInternals) {
    sendResume.call(this)
    if (this.readStatus === 'paused') this.state = YAMUX_PAUSED
  }
}
/** Stream classes whose prototype openYamuxWindows has already adjusted. */
const patchedClasses = new WeakSet<object>()

/**
 * Finds a frame's stream in a Map instead of @chainsafe/libp2p-yamux 8's linear search of all
 * streams (streams.find) for every frame received: with 10,000 idle connections on a tunnel
 * connection, every frame of a busy one cost a walk through 10,000 entries. handleStreamMessage
 * below is the library's own, with only the lookup changed. Skipped when the library's internals
 * are not as expected.
 */
function indexYamuxStreams (muxer: StreamMuxer): void {
  const m = muxer as unknown as YamuxInternals
  const { _newStream: newStream, handleStreamMessage, incomingStream, closeStream } = m
  if (typeof newStream !== 'function' || typeof handleStreamMessage !== 'function' ||
    typeof incomingStream !== 'function' || typeof closeStream !== 'function') return
  const byId = new Map<number, YamuxStreamInternals>()
  m._newStream = (id, state, direction) => {
    const stream = newStream.call(m, id, state, direction)
    byId.set(id, stream)
    return stream
  }
  // the library calls closeStream(id) from each stream's 'close' listener
  m.closeStream = (id) => {
    byId.delete(id)
    closeStream.call(m, id)
  }
  m.handleStreamMessage = (frame) => {
    const { streamID, flag, type } = frame.header
    if ((flag & YAMUX_SYN) === YAMUX_SYN) incomingStream.call(m, streamID)
    const stream = byId.get(streamID)
    if (stream === undefined) return
    if (type === YAMUX_WINDOW_UPDATE) stream.handleWindowUpdate(frame)
    else if (type === YAMUX_DATA) stream.handleData(frame)
    else throw new Error('unreachable')
  }
}
