import {
  MAX_CONTROL_MESSAGE_BYTES, WebSocketMessageStream, createMuxer, keepAlive, readFrame, readGate, relay,
  validateStreamHeader, validateTunnelDataResponse, writeFrame
} from '../protocol/index.js'
import { dialTunnel } from './dial.js'
import { formatEndpoint } from './endpoint.js'
import { RegistrationRefusedError } from './errors.js'
import { proxyHeader } from './proxy-header.js'
import type { DialOptions } from './dial.js'
import type { Endpoint } from './endpoint.js'
import type { Targets } from './targets.js'
import type { ProxyProtocolVersion } from './proxy-header.js'
import type { TunnelData, TunnelDataResponse } from '../protocol/index.js'
import type { Stream, StreamMuxer } from '@libp2p/interface'
import type { Socket } from 'node:net'
import type { Uint8ArrayList } from 'uint8arraylist'
import type { WebSocket } from 'ws'

export interface SessionOptions extends DialOptions {
  keepaliveMs: number
  /** How long a backend dial may take before the server is told it failed. */
  backendDialTimeoutMs: number
  targets: Targets
  /** Send a PROXY protocol header to the backend first, so it sees the real client address. */
  proxyProtocol?: ProxyProtocolVersion
}

/** One registered connection to one server: relays every stream the server opens. */
export class ClientSession {
  readonly response: TunnelDataResponse
  /** Resolves when the connection is gone, for whatever reason. */
  readonly closed: Promise<void>
  private readonly ws: WebSocket
  private readonly opts: SessionOptions
  private readonly onPause?: (paused: boolean) => void
  active = 0

  private constructor (ws: WebSocket, response: TunnelDataResponse, opts: SessionOptions, onPause?: (paused: boolean) => void) {
    this.ws = ws
    this.onPause = onPause
    this.response = response
    this.opts = opts
    this.closed = new Promise(resolve => {
      if (ws.readyState === ws.CLOSED) resolve(); else ws.once('close', () => resolve())
    })
  }

  static async open (endpoint: Endpoint, td: TunnelData, opts: SessionOptions): Promise<ClientSession> {
    const ws = await dialTunnel(endpoint, opts)
    ws.on('error', (err) => opts.log.debug(`connection to ${formatEndpoint(endpoint)}: ${err.message}`))
    try {
      const conn = new WebSocketMessageStream(ws, 'outbound')
      const muxer = createMuxer(opts.muxer, conn)
      keepAlive(ws, opts.keepaliveMs, () => opts.log.warn(`server ${formatEndpoint(endpoint)} stopped answering pings; reconnecting`))
      let session: ClientSession | undefined
      const early: Stream[] = []
      muxer.addEventListener('stream', (evt) => {
        if (session !== undefined) session.handle(evt.detail); else early.push(evt.detail)
      })
      const response = await register(muxer, td, opts)
      session = new ClientSession(ws, response, opts, opts.muxer === 'mplex' ? readGate(conn) : undefined)
      for (const s of early) session.handle(s)
      return session
    } catch (err) {
      ws.terminate()
      throw err
    }
  }

  private handle (stream: Stream): void {
    this.relayStream(stream).catch((err: Error) => {
      this.opts.log.debug(`stream ${stream.id}: ${err.message}`)
      stream.abort(err)
    })
  }

  private async relayStream (stream: Stream): Promise<void> {
    const frame = await readFrame(stream, { maxBytes: MAX_CONTROL_MESSAGE_BYTES, timeoutMs: this.opts.timeoutMs, what: 'stream header' })
    const header = validateStreamHeader(frame.message)
    let socket
    try {
      socket = await this.opts.targets.dial(this.opts.backendDialTimeoutMs)
    } catch (err) {
      this.opts.log.warn(`connection from ${header.sourceAddress}: ${(err as Error).message}`)
      writeFrame(stream, { ok: false, error: (err as Error).message })
      await stream.close()
      return
    }
    writeFrame(stream, { ok: true })
    if (this.opts.proxyProtocol !== undefined) socket.write(proxyHeader(this.opts.proxyProtocol, header.sourceAddress, header.destinationAddress ?? ''))
    // Only when logged: reading remoteAddress is a syscall and makes the socket keep a cached address.
    if (this.opts.log.isDebugEnabled()) this.opts.log.debug(`connection from ${header.sourceAddress} -> backend ${socket.remoteAddress ?? '?'}:${socket.remotePort ?? 0}`)
    // Returned, not awaited: this function's frame need not live as long as the connection does.
    return this.relayBackend(stream, socket, header.sourceAddress, frame.rest)
  }

  private relayBackend (stream: Stream, socket: Socket, sourceAddress: string, head: Uint8ArrayList): Promise<void> {
    this.active++
    return relay(socket, stream, { head, onPause: this.onPause }).then(stats => {
      this.active--
      if (this.opts.log.isDebugEnabled()) this.opts.log.debug(`connection from ${sourceAddress} closed: ${stats.bytesIn} bytes from backend, ${stats.bytesOut} to it`)
    })
  }

  close (): void {
    this.ws.close(1000)
    // A dead server never answers the close handshake.
    setTimeout(() => this.ws.terminate(), 2000).unref()
  }
}

async function register (muxer: StreamMuxer, td: TunnelData, opts: SessionOptions): Promise<TunnelDataResponse> {
  const control = await muxer.createStream()
  // The server authenticates at the upgrade; the token is never repeated inside the tunnel.
  const { token: _omit, ...registration } = td
  writeFrame(control, registration)
  const frame = await readFrame(control, { maxBytes: MAX_CONTROL_MESSAGE_BYTES, timeoutMs: opts.timeoutMs, what: 'registration response' })
  const response = validateTunnelDataResponse(frame.message)
  if (response.error !== undefined) throw new RegistrationRefusedError(`registration refused: ${response.error}`)
  return response
}
