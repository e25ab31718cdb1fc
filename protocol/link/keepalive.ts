import type { WebSocketConnection } from './websocket/connection.js'
import type { Duplex } from 'node:stream'

/** Bytes left unsent for a whole interval, with none taken by the peer, that make it dead. */
const STALLED_BYTES = 1024 * 1024
/** WebSocket pings answered per second; a peer pinging faster gets no more pongs. */
const PONGS_PER_SECOND = 10

/**
 * Pings the peer every `intervalMs`; the link is dead when a whole interval passes in which the
 * peer took none of our bytes and either sent us nothing (no pong, no message) or left megabytes
 * of ours unread; or when it leaves two pings in a row unanswered for a whole interval each while
 * we read it (it sends, but does not read us). Taking our bytes proves it alive even while we
 * stopped reading it on purpose (a full queue toward it). Also answers the peer's pings, at a bounded rate (the connection
 * does not answer them itself: every pong is another buffer queued toward a peer that may not read).
 */
export function keepAlive (ws: WebSocketConnection, intervalMs: number, onDead: () => void, queued: () => number): () => void {
  const socket = ws.socket
  // bytesWritten counts bytes still queued in the socket too; only what left it shows the peer reads.
  const counted = socket as Duplex & { bytesWritten?: number }
  const sent = (): number => (counted.bytesWritten ?? 0) - socket.writableLength
  let written = sent()
  let heard = true
  const mark = (): void => { heard = true }
  // Our pings the peer has not answered. Its messages show it alive, not that it reads: one that
  // keeps sending but leaves two pings unanswered for a whole interval each does not read us
  // (unless we stopped reading it ourselves: then its pongs wait behind what we left unread).
  let unanswered = 0
  const onPong = (): void => { heard = true; unanswered = 0 }
  let pongSecond = 0
  let pongs = 0
  const onPing = (data: Buffer): void => {
    heard = true
    const second = Math.floor(Date.now() / 1000)
    if (second !== pongSecond) { pongSecond = second; pongs = 0 }
    if (++pongs > PONGS_PER_SECOND) return
    try { ws.pong(data) } catch { /* closing already */ }
  }
  ws.on('pong', onPong)
  ws.on('data', mark)
  ws.on('ping', onPing)
  const timer = setInterval(() => {
    const nowWritten = sent()
    const progressed = nowWritten !== written
    written = nowWritten
    const stalled = !progressed && queued() >= STALLED_BYTES
    if (progressed && socket.writableLength > 0) heard = true
    const deaf = unanswered >= 2 && !socket.isPaused()
    if (!heard || stalled || deaf) {
      onDead()
      ws.terminate()
      return
    }
    heard = false
    unanswered++
    try { ws.ping() } catch { /* closing already */ }
  }, intervalMs)
  timer.unref()
  const stop = (): void => {
    clearInterval(timer)
    ws.off('pong', onPong)
    ws.off('data', mark)
    ws.off('ping', onPing)
  }
  ws.once('close', stop)
  return stop
}
