import type { Socket } from 'node:net'
import type { Stream, MessageStreamEvents } from '@libp2p/interface'
import type { Uint8ArrayList } from 'uint8arraylist'

export interface RelayStats {
  /** Bytes read from the socket and sent into the stream. */
  bytesIn: number
  /** Bytes received from the stream and written to the socket. */
  bytesOut: number
  /** Why it ended badly, if it did. */
  error?: Error
}

export interface RelayOptions {
  /** Bytes already taken from the stream (after a header) to write to the socket first. */
  head?: Uint8ArrayList
  /** Bytes already taken from the socket (sniffed) to send into the stream first. */
  socketHead?: Uint8Array
  /** Called when the stream's read side is paused or resumed because the socket is full. */
  onPause?: (paused: boolean) => void
}

/**
 * Pipes a TCP socket and a muxed stream into each other with TCP semantics: each direction
 * keeps the other's backpressure (socket.write() false pauses the stream, stream.send() false
 * pauses the socket), a FIN on either side becomes a FIN on the other while the opposite
 * direction keeps flowing, and a reset or error on either side destroys the other at once.
 * The socket must have been created with allowHalfOpen: true. Resolves when both are closed.
 *
 * Written with plain callbacks rather than as an async function: an idle connection may stay
 * open for hours, and a suspended async function keeps its whole frame and the promises it waits
 * on alive. With 10,000 idle connections this saves about 1 KB each.
 */
export function relay (socket: Socket, stream: Stream, opts: RelayOptions = {}): Promise<RelayStats> {
  const { onPause } = opts
  const stats: RelayStats = { bytesIn: 0, bytesOut: 0 }
  let streamPaused = false
  let socketPaused = false
  // A real FIN from the far end, as opposed to the stream ending because the tunnel died (the
  // muxer then closes it without an error, and also marks the remote write side closed).
  let remoteFin = stream.remoteWriteStatus === 'closed' && stream.status === 'open'
  stream.addEventListener('remoteCloseWrite', () => { remoteFin = true })

  // libuv refuses a reset once end() was called; a plain destroy then still closes the handle.
  const reset = (): void => {
    if (socket.destroyed) return
    if (socket.writableEnded) socket.destroy(); else socket.resetAndDestroy()
  }

  const setStreamPaused = (paused: boolean): void => {
    if (paused === streamPaused) return
    streamPaused = paused
    onPause?.(paused)
    if (stream.readStatus === 'closed' || stream.readStatus === 'closing') return
    if (paused) stream.pause(); else stream.resume()
  }

  const writeToSocket = (data: Uint8Array | Uint8ArrayList): void => {
    if (socket.destroyed || socket.writableEnded) return
    let ok = true
    if (data instanceof Uint8Array) {
      ok = socket.write(data)
      stats.bytesOut += data.byteLength
    } else {
      for (const chunk of data) {
        ok = socket.write(chunk)
        stats.bytesOut += chunk.byteLength
      }
    }
    if (!ok) setStreamPaused(true)
  }

  const sendToStream = (chunk: Uint8Array): void => {
    stats.bytesIn += chunk.byteLength
    let ok: boolean
    try {
      ok = stream.send(chunk)
    } catch (err) {
      fail(err as Error)
      return
    }
    if (!ok && !socketPaused) { socketPaused = true; socket.pause() }
  }

  const fail = (err: Error): void => {
    stats.error ??= err
    reset()
    stream.abort(err)
  }

  // Settles once both the stream and the socket have closed.
  let resolve: (stats: RelayStats) => void
  const done = new Promise<RelayStats>(resolve_ => { resolve = resolve_ })
  let open = 2
  const closedOne = (): void => {
    if (--open > 0) return
    if (streamPaused) onPause?.(false)
    resolve(stats)
  }
  stream.addEventListener('close', (evt: MessageStreamEvents['close']) => {
    if (evt.error !== undefined) {
      stats.error ??= evt.error
      // A reset stream means the far end is gone: pass that on as a TCP reset.
      reset()
    } else if (!remoteFin || !socket.readableEnded) {
      // Closed without both FINs: the connection beneath the stream died (peer process killed,
      // network gone). A reset, not a FIN, tells the peer its data may be cut short.
      stats.error ??= new Error('tunnel connection lost')
      reset()
    }
    closedOne()
  }, { once: true })

  // stream -> socket
  if (opts.head !== undefined && opts.head.byteLength > 0) writeToSocket(opts.head)
  stream.addEventListener('message', (evt: MessageStreamEvents['message']) => writeToSocket(evt.data))
  const onStreamEnd = (): void => {
    if (stream.status === 'aborted' || stream.status === 'reset') return
    if (!remoteFin) { fail(new Error('tunnel connection lost')); return }
    if (!socket.destroyed && !socket.writableEnded) socket.end()
  }
  stream.addEventListener('end', onStreamEnd)
  if (stream.readableEnded) onStreamEnd()
  socket.on('drain', () => setStreamPaused(false))

  // socket -> stream
  // On 'drain' the stream first sends what it queued (in a microtask, @libp2p/utils 7); a yamux
  // stream whose send window is still shut is full again right after. Resuming the socket then
  // read one more chunk into the stream's unbounded write buffer per drain of the connection:
  // next to a busy stream that is thousands a second, so a slow reader's sender grew by
  // hundreds of MB. Resume only once the stream can really take more; if not, another 'drain' follows.
  const resumeIfWritable = (): void => {
    if (socketPaused && !stream.writableNeedsDrain) { socketPaused = false; socket.resume() }
  }
  stream.addEventListener('drain', () => { if (socketPaused) queueMicrotask(resumeIfWritable) })
  if (opts.socketHead !== undefined && opts.socketHead.byteLength > 0) sendToStream(opts.socketHead)
  socket.on('data', sendToStream)
  const onSocketEnd = (): void => { stream.close().catch((err: Error) => fail(err)) }
  // The peer may have sent its FIN while the first bytes were being read (routing).
  if (socket.readableEnded) onSocketEnd(); else socket.on('end', onSocketEnd)
  socket.on('error', (err) => fail(err))
  socket.on('close', () => {
    // Closed without a FIN from its peer (destroyed locally, timed out): the stream must not linger.
    if (stream.status === 'open' && stream.writeStatus === 'writable') fail(stats.error ?? new Error('socket closed'))
    closedOne()
  })
  // Unless sending the sniffed head already found the stream full.
  if (!socketPaused) socket.resume()
  return done
}
