import { StreamMessageEvent } from '@libp2p/interface'
import type { StreamMuxer } from '@libp2p/interface'
import type { Uint8ArrayList } from 'uint8arraylist'

/** The parts of @libp2p/utils 7's AbstractMessageStream, the base of every muxed stream, used here. */
interface StreamInternals {
  writableNeedsDrain: boolean
  readStatus: string
  remoteWriteStatus: string
  readBuffer: { byteLength: number }
  onMuxerNeedsDrain: () => void
  onMuxerDrain: () => void
  onData: (data: Uint8Array | Uint8ArrayList) => void
  listenerCount: (type: string) => number
  dispatchEvent: (event: Event) => boolean
  safeDispatchEvent: (type: string, detail?: unknown) => boolean
}

/** Stream classes already adjusted: patched once per class, so nothing is added per stream. */
const tuned = new WeakSet<object>()

/**
 * Adjusts the class of the streams this muxer makes (both muxers make every stream, inbound and
 * outbound, in _newStream). Our muxers' stream classes are used by nothing else in the process.
 * When the library's internals are not as expected, a method is left alone.
 */
export function tuneStreamClasses (muxer: StreamMuxer): void {
  const m = muxer as unknown as { _newStream?: (...args: unknown[]) => object }
  const newStream = m._newStream
  if (typeof newStream !== 'function') return
  m._newStream = (...args) => {
    const stream = newStream.apply(m, args)
    const proto = Object.getPrototypeOf(stream) as Partial<StreamInternals> | null
    if (proto !== null && !tuned.has(proto)) {
      tuned.add(proto)
      targetDrainSignals(proto)
      deliverDirectly(proto)
      skipUnheardEvents(proto)
    }
    return stream
  }
}

/**
 * Tells only the streams that are actually waiting when the connection beneath fills up and
 * drains again. @libp2p/utils 7's AbstractStreamMuxer marks every stream of the connection as
 * waiting whenever one write finds the socket full, and on 'drain' dispatches an event to every
 * stream: with 10,000 idle connections, each drain of a busy one cost 10,000 events and made
 * its throughput drop about sevenfold. A stream that writes while the connection is full still
 * learns it from the write's own return value (the muxer hands it through), marks itself, and is
 * woken on drain.
 */
function targetDrainSignals (proto: Partial<StreamInternals>): void {
  const onMuxerDrain = proto.onMuxerDrain
  if (typeof onMuxerDrain !== 'function' || typeof proto.onMuxerNeedsDrain !== 'function') return
  proto.onMuxerNeedsDrain = function () {}
  proto.onMuxerDrain = function (this: StreamInternals) {
    if (this.writableNeedsDrain) onMuxerDrain.call(this)
  }
}

/**
 * onData appends every frame to the read buffer, copies it out again (sublist) and consumes it
 * before dispatching it. While nothing is queued, the stream is not paused and the peer has not
 * finished (the cases the base class's bookkeeping is for), the frame is dispatched as it is.
 */
function deliverDirectly (proto: Partial<StreamInternals>): void {
  const onData = proto.onData
  if (typeof onData !== 'function') return
  proto.onData = function (this: StreamInternals, data) {
    if (this.readStatus !== 'readable' || this.remoteWriteStatus !== 'writable' || this.readBuffer.byteLength > 0 ||
      data.byteLength === 0 || this.listenerCount('message') === 0) {
      onData.call(this, data)
      return
    }
    this.dispatchEvent(new StreamMessageEvent(data))
  }
}

/**
 * The base class dispatches events nobody may be listening to, e.g. 'idle' after every write:
 * each one a new CustomEvent through Node's EventTarget. With no listener that has no effect, so
 * it is skipped. (Listeners are only ever added through the class's own addEventListener, which
 * listenerCount counts.)
 */
function skipUnheardEvents (proto: Partial<StreamInternals>): void {
  const safeDispatchEvent = proto.safeDispatchEvent
  if (typeof safeDispatchEvent !== 'function' || typeof proto.listenerCount !== 'function') return
  proto.safeDispatchEvent = function (this: StreamInternals, type, detail) {
    if (this.listenerCount(type) === 0) return true
    return safeDispatchEvent.call(this, type, detail)
  }
}
