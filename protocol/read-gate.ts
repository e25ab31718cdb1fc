import type { MessageStream } from '@libp2p/interface'

/**
 * mplex has no per-stream flow control: a paused stream keeps receiving until its buffer limit
 * and is then reset. To lose nothing, a connection running mplex stops reading the whole
 * WebSocket while any of its streams waits for a slow socket (head-of-line blocking, but
 * lossless; TCP backpressure then stops the sender). yamux needs none of this.
 */
export function readGate (conn: MessageStream): (paused: boolean) => void {
  let waiting = 0
  return (paused) => {
    waiting += paused ? 1 : -1
    if (paused && waiting === 1) conn.pause()
    if (!paused && waiting === 0) conn.resume()
  }
}
