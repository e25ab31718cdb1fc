import { expect } from 'chai'
import { once } from 'node:events'
import { connect, createServer } from 'node:net'
import { dialTunnel } from '../../client/dial.js'
import { parseEndpoint } from '../../client/endpoint.js'
import { MAX_CONTROL_MESSAGE_BYTES, encodeFrame, openLink, readFrame } from '../../protocol/index.js'
import { echoServer, randomPayload, sha256 } from '../fixtures/net.js'
import { TOKEN, startClient, startServer, testLogger, tunnelData } from '../fixtures/tunnel.js'
import type { TunnelServer, TunnelServerOptions } from '../../index.js'
import type { TcpServer } from '../fixtures/net.js'
import type { MuxSession, MuxStream, MuxerName, WebSocketConnection } from '../../protocol/index.js'
import type { AddressInfo, Server, Socket } from 'node:net'

export const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))

/**
 * A server and an echo backend shared by the tests of the enclosing describe(): started before
 * them, closed after. Read the fields inside the tests (they are set by the before hook).
 */
export function sharedServer (opts: Partial<TunnelServerOptions> = {}): { server: TunnelServer, backend: TcpServer } {
  const ctx = {} as { server: TunnelServer, backend: TcpServer }
  before(async function () {
    ctx.backend = await echoServer()
    ctx.server = await startServer(opts)
  })
  after(async function () {
    await ctx.server?.close()
    await ctx.backend?.close()
  })
  return ctx
}

/** An authenticated WebSocket to the tunnel endpoint, with nothing run inside it yet. */
export async function rawTunnel (server: TunnelServer, muxer: MuxerName): Promise<WebSocketConnection> {
  return (await dialRaw(server, muxer)).ws
}

/** Where a raw client dials: a TunnelServer, or a server in another process by its port and fingerprint. */
export type DialTarget = Pick<TunnelServer, 'port' | 'fingerprint'>

async function dialRaw (server: DialTarget, muxer: MuxerName): ReturnType<typeof dialTunnel> {
  return await dialTunnel(parseEndpoint(`127.0.0.1:${server.port}`), {
    token: TOKEN, muxer, trust: { insecure: false, fingerprint: server.fingerprint }, timeoutMs: 5000, log: testLogger
  })
}

/**
 * A muxer of our own over an authenticated WebSocket: we speak the protocol by hand. `accept`
 * decides on the streams the server opens (default: take them and do nothing).
 */
export async function rawSession (server: DialTarget, muxerName: MuxerName, accept: (stream: MuxStream) => boolean = () => true): Promise<{ ws: WebSocketConnection, muxer: MuxSession }> {
  const { ws } = await dialRaw(server, muxerName)
  ws.on('error', () => {})
  const link = openLink(ws, {
    side: 'client',
    muxer: muxerName,
    keepaliveMs: 60_000,
    accept,
    onDead: () => {},
    onProtocolError: () => {},
    onStreamOverflow: () => {}
  })
  return { ws, muxer: link.mux }
}

/** Sends `raw` as the registration frame on a fresh control stream and returns the server's answer. */
export async function registerRaw (muxer: MuxSession, raw: Uint8Array | object): Promise<{ message: unknown, control: MuxStream }> {
  const control = muxer.open()
  control.write(raw instanceof Uint8Array ? Buffer.from(raw) : encodeFrame(raw))
  const frame = await readFrame(control, { maxBytes: MAX_CONTROL_MESSAGE_BYTES, timeoutMs: 10_000, what: 'response' })
  return { message: frame.message, control }
}

/** Resolves with the time it took for `ws` to close, or rejects after `timeoutMs`. */
export async function closedWithin (ws: WebSocketConnection, timeoutMs: number): Promise<number> {
  const started = Date.now()
  if (ws.readyState === ws.CLOSED) return 0
  return await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`WebSocket still open after ${timeoutMs} ms`)), timeoutMs)
    ws.once('close', () => { clearTimeout(t); resolve(Date.now() - started) })
  })
}

/** Resolves when the far end closes a socket (FIN, reset or error), with the time it took. */
export async function socketClosedWithin (socket: Socket, timeoutMs: number): Promise<number> {
  const started = Date.now()
  if (socket.destroyed || socket.readableEnded) return 0
  return await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`socket still open after ${timeoutMs} ms`)), timeoutMs)
    const done = (): void => { clearTimeout(t); resolve(Date.now() - started) }
    socket.once('end', done)
    socket.once('close', done)
    // 'end' only fires while data flows.
    socket.resume()
  })
}

/** Open tunnel connections (WebSockets, HTTP-transport sessions) on the server (internal; what a leak would leave behind). */
export function openTunnels (server: TunnelServer): number {
  const carriers = (server as unknown as { carriers?: Set<unknown> }).carriers
  if (!(carriers instanceof Set)) throw new Error('TunnelServer no longer keeps its tunnel connections in `carriers`: update openTunnels()')
  return carriers.size
}

/**
 * The check every hostile test ends with: a well-behaved client registers a new service and
 * moves a random payload through it byte-exact.
 */
export async function assertStillServes (server: TunnelServer, backendPort: number, serviceName: string, muxer: MuxerName = 'yamux'): Promise<void> {
  const client = startClient(server, tunnelData(backendPort, { serviceName }), { muxer })
  try {
    const { frontendPort } = await client.ready()
    const payload = randomPayload(256 * 1024)
    const back = await exchangeWithTimeout(frontendPort, payload, 10_000)
    expect(sha256(back)).to.equal(sha256(payload))
  } finally {
    await client.close()
  }
}

/** Like fixtures' exchange(), bounded in time. */
export async function exchangeWithTimeout (port: number, payload: Buffer, timeoutMs: number): Promise<Buffer> {
  const socket = connect({ port, host: '127.0.0.1', allowHalfOpen: true })
  const chunks: Buffer[] = []
  socket.on('data', (c: Buffer) => chunks.push(c))
  const timer = setTimeout(() => socket.destroy(new Error(`exchange on port ${port} timed out after ${timeoutMs} ms`)), timeoutMs)
  try {
    await once(socket, 'connect')
    socket.end(payload)
    await once(socket, 'end')
    return Buffer.concat(chunks)
  } finally {
    clearTimeout(timer)
    socket.destroy()
  }
}

/** Deterministic bytes for "random" garbage, so a failure can be replayed. */
export function seededBytes (seed: number, n: number): Buffer {
  const out = Buffer.alloc(n)
  let x = seed >>> 0 || 1
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0
    x ^= x >>> 17
    x ^= x << 5; x >>>= 0
    out[i] = x & 0xff
  }
  return out
}

/**
 * A TCP forwarder we control, standing for the network path between client and server. cut()
 * stops moving bytes both ways and refuses new connections (packets are held, as TCP would
 * retransmit them, not lost); restore() lets everything flow again.
 */
export class PathForwarder {
  readonly server: Server
  private readonly pairs = new Set<{ a: Socket, b: Socket }>()
  private isCut = false

  private constructor (server: Server) {
    this.server = server
  }

  static async start (targetPort: number): Promise<PathForwarder> {
    const server = createServer({ allowHalfOpen: true })
    const fwd = new PathForwarder(server)
    server.on('connection', (a) => fwd.onConnection(a, targetPort))
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    return fwd
  }

  get port (): number {
    return (this.server.address() as AddressInfo).port
  }

  get connections (): number {
    return this.pairs.size
  }

  private onConnection (a: Socket, targetPort: number): void {
    a.on('error', () => {})
    if (this.isCut) { a.destroy(); return }
    const b = connect({ port: targetPort, host: '127.0.0.1', allowHalfOpen: true })
    b.on('error', () => {})
    const pair = { a, b }
    this.pairs.add(pair)
    const pipe = (from: Socket, to: Socket): void => {
      from.on('data', (c: Buffer) => { if (!to.write(c)) from.pause() })
      to.on('drain', () => { if (!this.isCut) from.resume() })
      from.on('end', () => to.end())
      from.on('close', () => { to.destroy(); this.pairs.delete(pair) })
    }
    pipe(a, b)
    pipe(b, a)
  }

  cut (): void {
    this.isCut = true
    for (const { a, b } of this.pairs) { a.pause(); b.pause() }
  }

  restore (): void {
    this.isCut = false
    for (const { a, b } of this.pairs) { a.resume(); b.resume() }
  }

  async close (): Promise<void> {
    for (const { a, b } of this.pairs) { a.destroy(); b.destroy() }
    await new Promise(resolve => this.server.close(resolve))
  }
}
