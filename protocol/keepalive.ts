import type { Socket } from 'node:net'
import type { WebSocket } from 'ws'

/**
 * Pings the peer every `intervalMs` and terminates the WebSocket when a whole interval passes
 * with nothing heard (no pong, no message) and nothing of ours accepted by the peer either (we
 * may have stopped reading on purpose, see read-gate). WebSocket pings also keep idle proxies
 * from dropping the connection, and work the same whichever muxer runs inside.
 */
export function keepAlive (ws: WebSocket, intervalMs: number, onDead: () => void): () => void {
  const socket = (ws as unknown as { _socket?: Socket })._socket
  // bytesWritten counts bytes still queued in the socket too; only what left it shows the peer reads.
  const sent = (): number => (socket?.bytesWritten ?? 0) - (socket?.writableLength ?? 0)
  let written = sent()
  let heard = true
  const mark = (): void => { heard = true }
  ws.on('pong', mark)
  ws.on('message', mark)
  ws.on('ping', mark)
  const timer = setInterval(() => {
    const nowWritten = sent()
    if (nowWritten !== written && (socket?.writableLength ?? 0) > 0) heard = true
    written = nowWritten
    if (!heard) {
      onDead()
      ws.terminate()
      return
    }
    heard = false
    try { ws.ping() } catch { /* closing already */ }
  }, intervalMs)
  timer.unref()
  const stop = (): void => {
    clearInterval(timer)
    ws.off('pong', mark)
    ws.off('message', mark)
    ws.off('ping', mark)
  }
  ws.once('close', stop)
  return stop
}
