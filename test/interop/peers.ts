import '../fixtures/with-resolvers.js'
import { once } from 'node:events'
import { yamux } from '@chainsafe/libp2p-yamux'
import { mplex } from '@libp2p/mplex'
import { AbstractMessageStream } from '@libp2p/utils'
import { ourSession, socketPair } from '../fixtures/mux.js'
import type { SendResult } from '@libp2p/utils'
import type { Logger, MessageStreamDirection, Stream, StreamMuxer } from '@libp2p/interface'
import type { Socket } from 'node:net'
import type { Uint8ArrayList } from 'uint8arraylist'
import type { MuxSession, MuxSessionOptions, MuxStream } from '../../protocol/mux/index.js'
import type { SessionEvents } from '../fixtures/mux.js'
import type { MuxerName } from '../../protocol/version.js'

const silent: Logger = Object.assign(() => {}, {
  error: () => {},
  trace: () => {},
  enabled: false,
  newScope: (): Logger => silent
})

/** A net.Socket as the libp2p 3.x MessageStream a libp2p muxer runs on. */
export class SocketMessageStream extends AbstractMessageStream {
  private readonly socket: Socket
  constructor (socket: Socket, direction: MessageStreamDirection) {
    super({ log: silent, direction, maxReadBufferLength: Infinity, inactivityTimeout: 0 })
    this.socket = socket
    socket.on('data', (d: Buffer) => this.onData(d))
    socket.once('close', () => this.onTransportClosed())
    socket.on('error', () => {})
    socket.on('drain', () => { if (this.writableNeedsDrain) this.safeDispatchEvent('drain') })
  }

  sendData (data: Uint8ArrayList): SendResult {
    let canSendMore = true
    for (const chunk of data) canSendMore = this.socket.write(chunk)
    return { sentBytes: data.byteLength, canSendMore }
  }

  sendReset (): void { this.socket.destroy() }
  sendPause (): void { this.socket.pause() }
  sendResume (): void { this.socket.resume() }

  async close (): Promise<void> {
    if (this.socket.destroyed) return
    const closed = once(this.socket, 'close')
    this.socket.end()
    await closed
  }
}

/** A stream of either implementation, as the tests drive it. */
export interface TestStream {
  /** Writes all of `data` in `chunk`-byte writes, waiting whenever the stream says it is full. */
  send: (data: Buffer, chunk?: number) => Promise<void>
  /** Half-close (FIN). */
  end: () => Promise<void>
  reset: () => void
  pause: () => void
  resume: () => void
  /** Everything up to the peer's FIN; rejects if the stream is reset first. */
  readonly all: Promise<Buffer>
  /** Settles when the stream is fully closed; the error if it was reset. */
  readonly closed: Promise<Error | undefined>
  received: () => number
  /** Resolves once at least `n` bytes arrived (rejects if the stream closes first). */
  waitFor: (n: number) => Promise<void>
}

/** Byte-count waiters of one stream. */
class Waiters {
  private list: Array<{ n: number, resolve: () => void, reject: (e: Error) => void }> = []
  check (bytes: number): void {
    this.list = this.list.filter(w => { if (bytes >= w.n) { w.resolve(); return false } return true })
  }

  fail (err: Error): void {
    for (const w of this.list) w.reject(err)
    this.list = []
  }

  add (n: number, bytes: number): Promise<void> {
    if (bytes >= n) return Promise.resolve()
    return new Promise((resolve, reject) => this.list.push({ n, resolve, reject }))
  }
}

interface Deferred<T> { promise: Promise<T>, resolve: (v: T) => void, reject: (e: Error) => void }
function deferred<T> (): Deferred<T> {
  let resolve!: (v: T) => void
  let reject!: (e: Error) => void
  const promise = new Promise<T>((res, rej) => { resolve = res; reject = rej })
  promise.catch(() => {})
  return { promise, resolve, reject }
}

/** What a test stream's reader collects, whichever implementation feeds it. */
class Reader {
  private readonly chunks: Buffer[] = []
  bytes = 0
  readonly all = deferred<Buffer>()
  readonly closed = deferred<Error | undefined>()
  private readonly waiters = new Waiters()

  data (b: Buffer): void {
    this.chunks.push(b)
    this.bytes += b.length
    this.waiters.check(this.bytes)
  }

  end (): void { this.all.resolve(Buffer.concat(this.chunks)) }

  close (err: Error | undefined): void {
    this.waiters.fail(err ?? new Error('closed'))
    this.all.reject(err ?? new Error('closed before FIN'))
    this.closed.resolve(err)
  }

  /** The reading half of a TestStream. */
  view (): Pick<TestStream, 'all' | 'closed' | 'received' | 'waitFor'> {
    return {
      all: this.all.promise,
      closed: this.closed.promise,
      received: () => this.bytes,
      waitFor: async (n) => await this.waiters.add(n, this.bytes)
    }
  }
}

export function wrapOurs (s: MuxStream): TestStream & { stream: MuxStream } {
  const r = new Reader()
  let wake: (() => void) | undefined
  s.attach({
    onData: (c) => r.data(Buffer.from(c)),
    onEnd: () => r.end(),
    onClose: (err) => { r.close(err); wake?.() },
    onDrain: () => wake?.()
  })
  return {
    stream: s,
    async send (data, chunk = 16 * 1024) {
      for (let off = 0; off < data.length; off += chunk) {
        if (s.closed) throw s.closeError ?? new Error('stream closed')
        if (!s.write(data.subarray(off, off + chunk))) {
          await new Promise<void>(resolve => { wake = resolve })
          wake = undefined
        }
      }
    },
    async end () { s.end() },
    reset: () => s.reset(),
    pause: () => s.pause(),
    resume: () => s.resume(),
    ...r.view()
  }
}

export function wrapTheirs (s: Stream): TestStream & { stream: Stream } {
  const r = new Reader()
  s.addEventListener('message', (e) => {
    const d = e.data
    r.data(d instanceof Uint8Array ? Buffer.from(d) : Buffer.from(d.subarray()))
  })
  s.addEventListener('remoteCloseWrite', () => r.end())
  s.addEventListener('close', (e) => r.close(e.error))
  return {
    stream: s,
    async send (data, chunk = 16 * 1024) {
      for (let off = 0; off < data.length; off += chunk) {
        if (!s.send(data.subarray(off, off + chunk))) await s.onDrain()
      }
    },
    async end () { await s.close() },
    reset: () => s.abort(new Error('reset by the test')),
    pause: () => s.pause(),
    resume: () => s.resume(),
    ...r.view()
  }
}

/** One side of a connection, our muxer or libp2p's, behind one interface. */
export interface Side {
  name: 'ours' | 'theirs'
  open: () => Promise<TestStream>
  /** Streams the peer opened, wrapped (and reading) as soon as they arrive. */
  readonly incoming: TestStream[]
  /** Called with each stream the peer opens, right after it is wrapped. */
  onStream: ((s: TestStream) => void) | undefined
}

export interface Pair {
  ours: Side & { session: MuxSession, events: SessionEvents }
  theirs: Side & { muxer: StreamMuxer }
  close: () => void
}

/**
 * Our session and a libp2p muxer of the same wire format on the two ends of a loopback TCP
 * connection. `ourRole` 'client': ours dials (yamux: odd stream ids), libp2p listens; 'server':
 * the other way round.
 */
export async function interopPair (name: MuxerName, ourRole: 'client' | 'server', opts: Partial<MuxSessionOptions> = {}): Promise<Pair> {
  const { dialer, listener, close } = await socketPair()
  const ourSocket = ourRole === 'client' ? dialer : listener
  const theirSocket = ourRole === 'client' ? listener : dialer
  // Our accept() runs before the stream is handed on: wrap it there so nothing is missed.
  const accept = (s: MuxStream): boolean => {
    const w = wrapOurs(s)
    ours.incoming.push(w)
    ours.onStream?.(w)
    return true
  }
  const { session, events } = ourSession(name, ourSocket, ourRole === 'client', { ...opts, accept })
  const conn = new SocketMessageStream(theirSocket, ourRole === 'client' ? 'inbound' : 'outbound')
  const streamOptions = { inactivityTimeout: 0, maxReadBufferLength: 64 * 1024 * 1024 }
  const factory = name === 'yamux'
    ? yamux({ enableKeepAlive: false, maxInboundStreams: 10_000, maxOutboundStreams: 10_000, streamOptions })()
    : mplex({ disconnectThreshold: Number.MAX_SAFE_INTEGER })()
  const muxer: StreamMuxer = factory.createStreamMuxer(conn)

  const ours: Pair['ours'] = {
    name: 'ours',
    session,
    events,
    incoming: [],
    onStream: undefined,
    open: async () => wrapOurs(session.open())
  }
  const theirs: Pair['theirs'] = {
    name: 'theirs',
    muxer,
    incoming: [],
    onStream: undefined,
    open: async () => wrapTheirs(await muxer.createStream())
  }
  muxer.addEventListener('stream', (e) => {
    const w = wrapTheirs(e.detail)
    theirs.incoming.push(w)
    theirs.onStream?.(w)
  })
  return { ours, theirs, close }
}
