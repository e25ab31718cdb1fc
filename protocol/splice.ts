import type { MuxStream } from './mux/index.js'

export interface SpliceStats {
  /** Bytes from `a` written into `b`, and back. */
  aToB: number
  bToA: number
  /** Why it ended badly, if it did. */
  error?: Error
}

/**
 * Joins two muxed streams (a forwarded connection: the peer node's stream and the client's) as
 * relay() joins a socket and a stream: each direction keeps the other's backpressure, a FIN
 * becomes a FIN while the opposite direction keeps flowing, a reset resets the other side.
 * `headToA` goes to `a` first (bytes that came behind the client's ack). Resolves when both closed.
 */
export function splice (a: MuxStream, b: MuxStream, headToA?: Buffer): Promise<SpliceStats> {
  const stats: SpliceStats = { aToB: 0, bToA: 0 }
  let resolve: (s: SpliceStats) => void
  const done = new Promise<SpliceStats>(resolve_ => { resolve = resolve_ })
  let open = 2
  const join = (from: MuxStream, to: MuxStream, count: (n: number) => void): void => {
    from.attach({
      onData: (chunk) => { count(chunk.byteLength); if (!to.write(chunk)) from.pause() },
      onEnd: () => to.end(),
      onDrain: () => to.resume(),
      onClose: (err) => {
        if (err !== undefined) { stats.error ??= err; to.reset(err) }
        if (--open === 0) resolve(stats)
      }
    })
  }
  if (headToA !== undefined && headToA.byteLength > 0) { stats.bToA += headToA.byteLength; a.write(headToA) }
  join(a, b, n => { stats.aToB += n })
  join(b, a, n => { stats.bToA += n })
  a.resume()
  b.resume()
  return done
}
