/**
 * What a muxer session runs on: an ordered, reliable byte pipe whose writes report backpressure.
 * The WebSocket link implements it (../link/ws-transport.ts); so can any other carrier.
 */
export interface MuxTransport {
  /**
   * Queues one frame: `header` is copied before this returns (the caller reuses it), `payload` is
   * kept by reference until sent and must not change. False: the pipe is full; wait for drained().
   */
  send: (header: Buffer, payload?: Buffer) => boolean
  /** Sends what is queued, then closes. */
  close: () => void
}

/** What the transport calls on the session. */
export interface MuxSink {
  /** Bytes from the peer, in order; the session may keep subarrays of them. */
  receive: (data: Buffer) => void
  /** The pipe can take more after send() said false. */
  drained: () => void
  /** The pipe is gone; every stream ends. */
  closed: (err?: Error) => void
}
