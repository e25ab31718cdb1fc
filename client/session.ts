import {
  E2E_AUTH_FAILED, MAX_CONTROL_MESSAGE_BYTES, openLink, readFrame, relay, validateStreamHeader, validateTunnelDataResponse, writeFrame
} from '../protocol/index.js'
import { dialTunnel } from './dial.js'
import { formatEndpoint } from './endpoint.js'
import { AuthorizationError, RegistrationRefusedError } from './errors.js'
import { proxyHeader } from './proxy-header.js'
import type { DialOptions } from './dial.js'
import type { Endpoint } from './endpoint.js'
import type { Targets } from './targets.js'
import type { ProxyProtocolVersion } from './proxy-header.js'
import type { Link, MuxSession, MuxStream, TunnelData, TunnelDataResponse } from '../protocol/index.js'
import type { Socket } from 'node:net'

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
  private readonly link: Link
  private readonly opts: SessionOptions
  active = 0

  private constructor (link: Link, response: TunnelDataResponse, opts: SessionOptions) {
    this.link = link
    this.response = response
    this.opts = opts
    this.closed = link.closed
  }

  static async open (endpoint: Endpoint, td: TunnelData, opts: SessionOptions): Promise<ClientSession> {
    const { ws, socket, mask, inner } = await dialTunnel(endpoint, opts)
    const where = formatEndpoint(endpoint)
    ws.on('error', (err) => opts.log.debug(`connection to ${where}: ${err.message}`))
    let session: ClientSession | undefined
    const early: MuxStream[] = []
    const link = openLink(ws, socket, {
      side: 'client',
      muxer: opts.muxer,
      mask,
      inner,
      keepaliveMs: opts.keepaliveMs,
      // Streams the server opens before the registration answer is read wait for it.
      accept: (stream) => {
        if (session !== undefined) session.handle(stream); else early.push(stream)
        return true
      },
      onDead: () => opts.log.warn(`server ${where} stopped answering pings; reconnecting`),
      onProtocolError: (err) => opts.log.error(`server ${where} broke the ${opts.muxer} protocol (${err.code}): ${err.message}; reconnecting`),
      onStreamOverflow: (stream, bytes) => opts.log.warn(`stream ${stream.id}: backend fell ${bytes} bytes behind; reset (mplex has no flow control; yamux does)`)
    })
    try {
      const response = await register(link.mux, td, opts, inner !== undefined)
      session = new ClientSession(link, response, opts)
      for (const s of early) session.handle(s)
      return session
    } catch (err) {
      ws.terminate()
      throw err
    }
  }

  private handle (stream: MuxStream): void {
    this.relayStream(stream).catch((err: Error) => {
      this.opts.log.debug(`stream ${stream.id}: ${err.message}`)
      stream.reset(err)
    })
  }

  private async relayStream (stream: MuxStream): Promise<void> {
    const frame = await readFrame(stream, { maxBytes: MAX_CONTROL_MESSAGE_BYTES, timeoutMs: this.opts.timeoutMs, what: 'stream header' })
    const header = validateStreamHeader(frame.message)
    let socket
    try {
      socket = await this.opts.targets.dial(this.opts.backendDialTimeoutMs)
    } catch (err) {
      this.opts.log.warn(`connection from ${header.sourceAddress}: ${(err as Error).message}`)
      writeFrame(stream, { ok: false, error: (err as Error).message })
      stream.end()
      return
    }
    writeFrame(stream, { ok: true })
    if (this.opts.proxyProtocol !== undefined) socket.write(proxyHeader(this.opts.proxyProtocol, header.sourceAddress, header.destinationAddress ?? ''))
    // Only when logged: reading remoteAddress is a syscall and makes the socket keep a cached address.
    if (this.opts.log.isDebugEnabled()) this.opts.log.debug(`connection from ${header.sourceAddress} -> backend ${socket.remoteAddress ?? '?'}:${socket.remotePort ?? 0}`)
    // Returned, not awaited: this function's frame need not live as long as the connection does.
    return this.relayBackend(stream, socket, header.sourceAddress, frame.rest)
  }

  private relayBackend (stream: MuxStream, socket: Socket, sourceAddress: string, head: Buffer): Promise<void> {
    this.active++
    return relay(socket, stream, { head }).then(stats => {
      this.active--
      if (this.opts.log.isDebugEnabled()) this.opts.log.debug(`connection from ${sourceAddress} closed: ${stats.bytesIn} bytes from backend, ${stats.bytesOut} to it`)
    })
  }

  close (): void {
    this.link.close(1000)
  }
}

/**
 * Registers on the control stream. The server authenticates at the upgrade, and the token is not
 * repeated inside the tunnel; except in the end-to-end layer, where this is the only place it goes.
 */
async function register (mux: MuxSession, td: TunnelData, opts: SessionOptions, e2e: boolean): Promise<TunnelDataResponse> {
  const control = mux.open()
  const { token: _omit, ...registration } = td
  writeFrame(control, e2e ? { ...registration, token: opts.token } : registration)
  const frame = await readFrame(control, { maxBytes: MAX_CONTROL_MESSAGE_BYTES, timeoutMs: opts.timeoutMs, what: 'registration response' })
  const response = validateTunnelDataResponse(frame.message)
  if (response.error !== undefined && e2e && response.error.startsWith(E2E_AUTH_FAILED)) {
    throw new AuthorizationError('authorization failed: the server rejected the token (sent inside the end-to-end layer)')
  }
  if (response.error !== undefined) throw new RegistrationRefusedError(`registration refused: ${response.error}`)
  return response
}
