import type { MessageStream, MessageStreamEvents } from '@libp2p/interface'

/**
 * Listens to a libp2p stream's event at about a third of the memory of stream.addEventListener().
 *
 * libp2p streams are main-event TypedEventEmitters, which keep a wrapper closure, an abort
 * closure, an options object and a bookkeeping entry (~300 bytes) for every listener so that
 * listenerCount() can count it; relay adds five listeners per stream, which with 10,000 idle
 * connections came to megabytes. Registered on the EventTarget beneath, a listener is called the
 * same way and in the same order, but the stream's listenerCount() does not see it: so never use
 * this for 'message' (the stream counts those listeners to decide whether to buffer or deliver),
 * only for events the stream merely dispatches ('close', 'end', 'drain', 'remoteCloseWrite').
 */
export function listen<K extends UncountedEvent> (stream: MessageStream, type: K, listener: (evt: MessageStreamEvents[K]) => void): void {
  addListener.call(stream, type, listener as (evt: Event) => void)
}

/** Removes a listener added with listen(). */
export function unlisten<K extends UncountedEvent> (stream: MessageStream, type: K, listener: (evt: MessageStreamEvents[K]) => void): void {
  removeListener.call(stream, type, listener as (evt: Event) => void)
}

type UncountedEvent = 'close' | 'end' | 'drain' | 'remoteCloseWrite'
const { addEventListener: addListener, removeEventListener: removeListener } = EventTarget.prototype
