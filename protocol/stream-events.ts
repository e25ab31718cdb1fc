import { AbstractStream } from '@libp2p/utils'

/**
 * Gives muxed streams (yamux and mplex, both @libp2p/utils 7 AbstractStreams) a lean listener
 * list of their own in place of the EventTarget machinery they inherit.
 *
 * A stream carries about ten listeners for its lifetime (the library's own and relay's), and
 * each cost ~400 bytes there: main-event's TypedEventEmitter keeps a wrapper closure, an abort
 * closure, an options object, a bookkeeping entry and a per-type array for it, and Node's
 * EventTarget a Listener object in a per-type map. With 10,000 idle connections that was ~4 KB
 * per stream, the biggest share of both processes' memory. Here a listener takes four slots of
 * one array per stream.
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
    let list = this[kListeners]
    if (list === undefined) {
      list = [0]
      this[kListeners] = list
    } else if (find(list, type, listener) >= 0) {
      return
    }
    let abort: AbortHook | undefined
    if (signal !== undefined) {
      abort = { signal, onAbort: () => this.removeEventListener(type, listener) }
      signal.addEventListener('abort', abort.onAbort, { once: true })
    }
    // Appended: a dispatch in progress stops at the length it started with.
    list.push(type, listener, opts?.once === true ? ONCE : 0, abort)
    // As AbstractMessageStream.addEventListener does: data that arrived before anyone listened is
    // delivered now (in a microtask: the listener may be added in a constructor).
    if (type === 'message' && this.readBuffer !== undefined && this.readBuffer.byteLength > 0) {
      queueMicrotask(() => { this.dispatchReadBuffer() })
    }
  }

  proto.removeEventListener = function (this: StreamInternals, type: string, listener: Listener | null) {
    const list = this[kListeners]
    if (list === undefined || listener === null) return
    const i = find(list, type, listener)
    if (i < 0) return
    // Marked, so that a dispatch in progress skips it; taken out once no dispatch is.
    list[i + 2] = REMOVED
    const abort = list[i + 3] as AbortHook | undefined
    list[i + 3] = undefined
    if (abort !== undefined) abort.signal.removeEventListener('abort', abort.onAbort)
    if (list[0] === 0) compact(list)
  }

  proto.listenerCount = function (this: StreamInternals, type: string) {
    const list = this[kListeners]
    if (list === undefined) return 0
    let n = 0
    for (let i = 1; i < list.length; i += SLOTS) if (list[i] === type && list[i + 2] !== REMOVED) n++
    return n
  }

  proto.dispatchEvent = function (this: StreamInternals, evt: Event) {
    const list = this[kListeners]
    if (list === undefined) return true
    const type = evt.type
    const end = list.length
    ;(list[0] as number)++
    try {
      for (let i = 1; i < end; i += SLOTS) {
        if (list[i] !== type || list[i + 2] === REMOVED) continue
        const listener = list[i + 1] as Listener
        if (list[i + 2] === ONCE) this.removeEventListener(type, listener)
        try {
          if (typeof listener === 'function') listener.call(this, evt); else listener.handleEvent(evt)
        } catch (err) {
          // as EventTarget does: reported as an uncaught exception, the other listeners still run
          process.nextTick(() => { throw err })
        }
      }
    } finally {
      if (--(list[0] as number) === 0) compact(list)
    }
    return !evt.defaultPrevented
  }
}

/** Where (type, listener) sits in the list, or -1. */
function find (list: ListenerList, type: string, listener: Listener): number {
  for (let i = 1; i < list.length; i += SLOTS) {
    if (list[i] === type && list[i + 1] === listener && list[i + 2] !== REMOVED) return i
  }
  return -1
}

/** Takes the removed listeners out, in place. */
function compact (list: ListenerList): void {
  let w = 1
  for (let r = 1; r < list.length; r += SLOTS) {
    if (list[r + 2] === REMOVED) continue
    if (w !== r) for (let k = 0; k < SLOTS; k++) list[w + k] = list[r + k]
    w += SLOTS
  }
  list.length = w
}

let patched = false
const kListeners = Symbol('listeners')
/**
 * A stream's listeners in one flat array: first the number of dispatches in progress, then per
 * listener its type, the listener, its flags (ONCE; REMOVED until taken out) and its AbortHook if
 * it has a signal.
 */
type ListenerList = Array<string | Listener | number | AbortHook | undefined>
const SLOTS = 4
const ONCE = 1
const REMOVED = 2

type Listener = ((evt: Event) => void) | { handleEvent: (evt: Event) => void }
interface AbortHook { signal: AbortSignal, onAbort: () => void }
/** The parts of @libp2p/utils 7's AbstractStream (and its AbstractMessageStream) used above. */
interface StreamInternals {
  [kListeners]?: ListenerList
  readBuffer?: { byteLength: number }
  dispatchReadBuffer: () => void
  addEventListener: (type: string, listener: Listener | null, options?: boolean | ListenOptions) => void
  removeEventListener: (type: string, listener: Listener | null) => void
  listenerCount: (type: string) => number
  dispatchEvent: (evt: Event) => boolean
}
interface ListenOptions { once?: boolean, signal?: AbortSignal, capture?: boolean, passive?: boolean }
