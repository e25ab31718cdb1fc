import type { Socket } from 'node:net'
import type { MuxStream } from './mux/index.js'

export interface RelayStats {
  /** Bytes read from the socket and sent into the stream. */
  bytesFromSocket: number
  /** Bytes received from the stream and written to the socket. */
  bytesToSocket: number
  /** Why it ended badly, if it did. */
  error?: Error
}

export interface RelayOptions {
  /** Bytes already taken from the stream (after a header) to write to the socket first. */
  head?: Buffer
  /** Bytes already taken from the socket (sniffed) to send into the stream first. */
  socketHead?: Buffer
}

/**
 * Pipes a TCP socket and a muxed stream into each other with TCP semantics: each direction
 * keeps the other's backpressure (socket.write() false pauses the stream, stream.write() false
 * pauses the socket), a FIN on either side becomes a FIN on the other while the opposite
 * direction keeps flowing, and a reset or error on either side resets the other at once.
 * The socket must have been created with allowHalfOpen: true. Resolves when both are closed.
 *
 * Written with plain callbacks rather than as an async function: an idle connection may stay
 * open for hours, and a suspended async function keeps its whole frame alive.
 */
export function relay (socket: Socket, stream: MuxStream, opts: RelayOptions = {}): Promise<RelayStats> {
  const stats: RelayStats = { bytesFromSocket: 0, bytesToSocket: 0 }
  let socketPaused = false

  // libuv refuses a reset once end() was called; a plain destroy then still closes the handle.
  const resetSocket = (): void => {
    if (socket.destroyed) return
    if (socket.writableEnded) socket.destroy(); else socket.resetAndDestroy()
  }
  const fail = (err: Error): void => {
    stats.error ??= err
    resetSocket()
    stream.reset(err)
  }

  let resolve: (stats: RelayStats) => void
  const done = new Promise<RelayStats>(resolve_ => { resolve = resolve_ })
  let open = 2
  const closedOne = (): void => { if (--open === 0) resolve(stats) }
  /** Both directions ended and everything was handed to the kernel: closed without shutdown(). */
  let closedClean = false
  // The stream's FIN becomes the socket's. When the socket's peer already sent its FIN and nothing
  // waits in Node's buffer, close() alone sends the FIN after what the kernel still holds, exactly
  // as shutdown() then close() would: one syscall and one round of stream events less per connection.
  const endSocket = (): void => {
    if (socket.destroyed || socket.writableEnded) return
    if (socket.readableEnded && socket.writableLength === 0) {
      closedClean = true
      socket.destroy()
    } else {
      socket.end()
    }
  }

  const streamPausedBySocket = (): boolean => socket.writableNeedDrain
  const writeToSocket = (chunk: Buffer): void => {
    if (socket.destroyed || socket.writableEnded) return
    stats.bytesToSocket += chunk.byteLength
    if (!socket.write(chunk)) stream.pause()
  }
  const sendToStream = (chunk: Buffer): void => {
    stats.bytesFromSocket += chunk.byteLength
    if (!stream.write(chunk) && !socketPaused) { socketPaused = true; socket.pause() }
  }

  // socket -> stream
  socket.on('data', sendToStream)
  const onSocketEnd = (): void => stream.end()
  socket.on('error', fail)
  socket.on('close', () => {
    // Closed without both FINs (destroyed locally, timed out, reset): the stream must not linger.
    // After both FINs the stream finishes by itself (what waits for the send window still goes out).
    if (!stream.closed && !closedClean && !(socket.readableEnded && socket.writableFinished)) fail(stats.error ?? new Error('socket closed'))
    closedOne()
  })
  socket.on('drain', () => stream.resume())

  // stream -> socket
  if (opts.head !== undefined && opts.head.byteLength > 0) writeToSocket(opts.head)
  if (opts.socketHead !== undefined && opts.socketHead.byteLength > 0) sendToStream(opts.socketHead)
  // The peer may have sent its FIN while the first bytes were being read (routing).
  if (socket.readableEnded) onSocketEnd(); else socket.on('end', onSocketEnd)
  stream.attach({
    onData: writeToSocket,
    onEnd: endSocket,
    onDrain: () => { if (socketPaused) { socketPaused = false; socket.resume() } },
    onClose: (err) => {
      // A reset stream, or a lost tunnel: the peer's data may be cut short; say so with a TCP reset.
      if (err !== undefined) { stats.error ??= err; resetSocket() }
      closedOne()
    }
  })
  // readFrame left the stream paused; unless the socket is full already, what waited flows now.
  if (!streamPausedBySocket()) stream.resume()
  // Unless sending the sniffed head already found the stream full.
  if (!socketPaused) socket.resume()
  return done
}
