import { AbstractStream } from '@libp2p/utils'

/**
 * Gives muxed streams (yamux and mplex, both @libp2p/utils 7 AbstractStreams) a lean listener
 * list of their own in place of the EventTarget machinery they inherit.
 *
 * A stream carries about ten listeners for its lifetime (the library's own and relay's), and
 * each cost ~400 bytes there: main-event's TypedEventEmitter keeps a wrapper closure, an abort
 * closure, an options object, a bookkeeping entry and a per-type array for it, and Node's
 * EventTarget a Listener object in a per-type map. With 10,000 idle connections that was ~4 KB
 * per stream, the biggest share of both processes' memory. Here a listener is one small entry.
 *
 * Semantics kept: listeners run in the order added, each (type, listener) pair at most once,
 * `once` and `signal` options, handleEvent objects, listeners added during a dispatch wait for
 * the next one and listeners removed during it are skipped, listenerCount() (the stream counts
 * 'message' listeners to decide between buffering and delivering), a listener's exception is
 * reported as uncaught without stopping the dispatch, and dispatchEvent() returns
 * !defaultPrevented. Not kept: event.target stays null (nothing here reads it) and capture is
 * ignored (streams have no propagation path). Patched once, on the AbstractStream class, which
 * our WebSocketMessageStream does not extend; left alone when its shape is not as expected.
 */
export function leanStreamEvents (): void {
  const proto = AbstractStream.prototype as unknown as StreamInternals
  if (patched || typeof proto.dispatchReadBuffer !== 'function' || typeof proto.listenerCount !== 'function') return
  patched = true

  proto.addEventListener = function (this: StreamInternals, type: string, listener: Listener | null, options?: boolean | ListenOptions) {
    if (listener === null || listener === undefined) return
    const opts = typeof options === 'object' ? options : undefined
    const signal = opts?.signal ?? undefined
    if (signal?.aborted === true) return
    const list = this[kListeners] ?? EMPTY
    for (const e of list) if (e.type === type && e.listener === listener) return
    const entry: Entry = { type, listener, once: opts?.once === true, removed: false, signal: undefined, onAbort: undefined }
    if (signal !== undefined) {
      entry.signal = signal
      entry.onAbort = () => this.removeEventListener(type, listener)
      signal.addEventListener('abort', entry.onAbort, { once: true })
    }
    // copy on write, so that a dispatch in progress walks the list as it was when it began
    this[kListeners] = [...list, entry]
    // As AbstractMessageStream.addEventListener does: data that arrived before anyone listened is
    // delivered now (in a microtask: the listener may be added in a constructor).
    if (type === 'message' && this.readBuffer !== undefined && this.readBuffer.byteLength > 0) {
      queueMicrotask(() => { this.dispatchReadBuffer() })
    }
  }

  proto.removeEventListener = function (this: StreamInternals, type: string, listener: Listener | null) {
    const list = this[kListeners]
    if (list === undefined) return
    const i = list.findIndex(e => e.type === type && e.listener === listener)
    if (i < 0) return
    const entry = list[i]
    entry.removed = true
    if (entry.signal !== undefined && entry.onAbort !== undefined) entry.signal.removeEventListener('abort', entry.onAbort)
    this[kListeners] = list.length === 1 ? undefined : list.filter((_, k) => k !== i)
  }

  proto.listenerCount = function (this: StreamInternals, type: string) {
    let n = 0
    for (const e of this[kListeners] ?? EMPTY) if (e.type === type) n++
    return n
  }

  proto.dispatchEvent = function (this: StreamInternals, evt: Event) {
    const list = this[kListeners]
    if (list === undefined) return true
    const type = evt.type
    for (const e of list) {
      if (e.type !== type || e.removed) continue
      if (e.once) this.removeEventListener(type, e.listener)
      try {
        if (typeof e.listener === 'function') e.listener.call(this, evt); else e.listener.handleEvent(evt)
      } catch (err) {
        // as EventTarget does: reported as an uncaught exception, the other listeners still run
        process.nextTick(() => { throw err })
      }
    }
    return !evt.defaultPrevented
  }
}

let patched = false
const kListeners = Symbol('listeners')
const EMPTY: readonly Entry[] = []

type Listener = ((evt: Event) => void) | { handleEvent: (evt: Event) => void }
interface Entry {
  type: string
  listener: Listener
  once: boolean
  /** Set when removed, so that a dispatch in progress skips it. */
  removed: boolean
  signal: AbortSignal | undefined
  onAbort: (() => void) | undefined
}
/** The parts of @libp2p/utils 7's AbstractStream (and its AbstractMessageStream) used above. */
interface StreamInternals {
  [kListeners]?: readonly Entry[]
  readBuffer?: { byteLength: number }
  dispatchReadBuffer: () => void
  addEventListener: (type: string, listener: Listener | null, options?: boolean | ListenOptions) => void
  removeEventListener: (type: string, listener: Listener | null) => void
  listenerCount: (type: string) => number
  dispatchEvent: (evt: Event) => boolean
}
interface ListenOptions { once?: boolean, signal?: AbortSignal, capture?: boolean, passive?: boolean }
