import {
  E2E_AUTH_FAILED, FEATURE_SERVICES, MAX_CONTROL_MESSAGE_BYTES, encodeFrame, openLink, openStreamLink, readFrame, relay, validateStreamHeader, validateTunnelDataResponse, writeFrame
} from '../protocol/index.js'
import { dialTunnel } from './dial.js'
import { dialHttpTunnel } from './http-dial.js'
import { formatEndpoint } from './endpoint.js'
import { AuthorizationError, RegistrationRefusedError, UpgradeBlockedError } from './errors.js'
import { proxyHeader } from './proxy-header.js'
import type { DialedTunnel, DialOptions } from './dial.js'
import type { Endpoint } from './endpoint.js'
import type { ServiceEntry } from './services.js'
import type { ProxyProtocolVersion } from './proxy-header.js'
import type { Link, MuxStream, StreamAck, StreamLinkOptions, TunnelData, TunnelDataResponse } from '../protocol/index.js'
import type { Socket } from 'node:net'

/** The answer to every stream whose backend was reached, encoded once (muxers never modify what they send). */
const BACKEND_REACHED = encodeFrame({ ok: true } satisfies StreamAck)

export interface SessionOptions extends DialOptions {
  keepaliveMs: number
  /** How long a backend dial may take before the server is told it failed. */
  backendDialTimeoutMs: number
  /** The service a relayed connection is for (see ServiceSet.lookup). */
  lookup: (service: string, instance: string | undefined) => ServiceEntry | undefined
  /** Shared by one endpoint's reconnects: once an upgrade was blocked, --transport auto goes straight to HTTP. */
  fallback?: { http: boolean }
  /** Send a PROXY protocol header to the backend first, so it sees the real client address (unless the service says otherwise). */
  proxyProtocol?: ProxyProtocolVersion
}

/**
 * One connection to one server: registers its first service, and, when the server supports it
 * (`features: ["services"]`), every further one on a control stream of its own; relays every
 * stream the server opens to the backend of the service it is for.
 */
export class ClientSession {
  /** The first registration's answer. */
  readonly response: TunnelDataResponse
  /** Resolves when the connection is gone, for whatever reason. */
  readonly closed: Promise<void>
  /** The server takes more than one service on this connection. */
  readonly multiService: boolean
  private readonly link: Link
  private readonly opts: SessionOptions
  private readonly e2e: boolean
  /** Control streams by service name; ending one unregisters that service. */
  private readonly controls = new Map<string, MuxStream>()

  private constructor (link: Link, first: string, control: MuxStream, response: TunnelDataResponse, opts: SessionOptions, e2e: boolean) {
    this.link = link
    this.response = response
    this.opts = opts
    this.e2e = e2e
    this.closed = link.closed
    this.multiService = response.features?.includes(FEATURE_SERVICES) === true
    this.controls.set(first, control)
  }

  static async open (endpoint: Endpoint, first: string, td: TunnelData, opts: SessionOptions): Promise<ClientSession> {
    const where = formatEndpoint(endpoint)
    const carried = await carry(endpoint, opts)
    let session: ClientSession | undefined
    const early: MuxStream[] = []
    const link = carried.open({
      side: 'client',
      muxer: opts.muxer,
      // Streams the server opens before the registration answer is read wait for it.
      accept: (stream) => {
        if (session !== undefined) session.handle(stream); else early.push(stream)
        return true
      },
      onProtocolError: (err) => opts.log.error(`server ${where} broke the ${opts.muxer} protocol (${err.code}): ${err.message}; reconnecting`),
      onStreamOverflow: (stream, bytes) => opts.log.warn(`stream ${stream.id}: backend fell ${bytes} bytes behind; reset (mplex has no flow control; yamux does)`)
    })
    try {
      const control = link.mux.open()
      const response = await register(control, td, opts, carried.e2e)
      session = new ClientSession(link, first, control, response, opts, carried.e2e)
      for (const s of early) session.handle(s)
      return session
    } catch (err) {
      carried.terminate()
      throw err
    }
  }

  /** Registers one more service on this connection (multiService only); rejects when refused. */
  async add (name: string, td: TunnelData): Promise<TunnelDataResponse> {
    if (!this.multiService) throw new Error('this server takes one service per connection')
    const control = this.link.mux.open()
    this.controls.set(name, control)
    try {
      return await register(control, td, this.opts, this.e2e)
    } catch (err) {
      if (this.controls.get(name) === control) this.controls.delete(name)
      control.reset()
      throw err
    }
  }

  /** Unregisters a service by ending its control stream; the server closes a connection left with none. */
  remove (name: string): void {
    const control = this.controls.get(name)
    if (control === undefined) return
    this.controls.delete(name)
    control.end()
  }

  /** Services registered (or registering) on this connection. */
  has (name: string): boolean {
    return this.controls.has(name)
  }

  get serviceCount (): number {
    return this.controls.size
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
    const service = this.opts.lookup(header.serviceName, header.instanceName)
    let socket: Socket
    try {
      if (service === undefined) throw new Error(`service "${header.serviceName}${header.instanceName !== undefined ? `:${header.instanceName}` : ''}" is no longer carried by this client`)
      socket = await service.targets.dial(this.opts.backendDialTimeoutMs)
    } catch (err) {
      this.opts.log.warn(`connection from ${header.sourceAddress}: ${(err as Error).message}`)
      writeFrame(stream, { ok: false, error: (err as Error).message })
      stream.end()
      return
    }
    stream.write(BACKEND_REACHED)
    const proxyProtocol = service.options.proxyProtocol ?? this.opts.proxyProtocol
    if (proxyProtocol !== undefined) socket.write(proxyHeader(proxyProtocol, header.sourceAddress, header.destinationAddress ?? ''))
    // Only when logged: reading remoteAddress is a syscall and makes the socket keep a cached address.
    if (this.opts.log.isDebugEnabled()) this.opts.log.debug(`connection from ${header.sourceAddress} -> backend ${socket.remoteAddress ?? '?'}:${socket.remotePort ?? 0}`)
    // Not awaited: this function's frame and its promise need not live as long as the connection does.
    this.relayBackend(stream, socket, header.sourceAddress, frame.rest)
  }

  private relayBackend (stream: MuxStream, socket: Socket, sourceAddress: string, head: Buffer): void {
    // The closure (and the source address it keeps) only when it will log.
    const log = this.opts.log
    relay(socket, stream, { head }, !log.isDebugEnabled() ? ignoreStats : stats => {
      log.debug(`connection from ${sourceAddress} closed: ${stats.bytesFromSocket} bytes from backend, ${stats.bytesToSocket} to it`)
    })
  }

  close (): void {
    this.link.close(1000)
  }
}

const ignoreStats = (): void => {}

/**
 * Registers on the control stream. The server authenticates at the upgrade, and the token is not
 * repeated inside the tunnel; except in the end-to-end layer, where this is the only place it goes.
 */
async function register (control: MuxStream, td: TunnelData, opts: SessionOptions, e2e: boolean): Promise<TunnelDataResponse> {
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

/** A connected carrier before the muxer runs on it. */
interface Carried {
  /** Opens the link on it (over the end-to-end layer when on). */
  open: (opts: StreamLinkOptions) => Link
  e2e: boolean
  terminate: () => void
}

/**
 * Connects to the server by the transport the options and the endpoint ask for: the WebSocket,
 * or the HTTP transport (an http:// endpoint, --transport http, or --transport auto after a
 * blocked upgrade: from then on for this session loop, see SessionOptions.fallback).
 */
async function carry (endpoint: Endpoint, opts: SessionOptions): Promise<Carried> {
  const mode = opts.transport ?? 'auto'
  const http = async (): Promise<Carried> => {
    const { carrier, inner } = await dialHttpTunnel(endpoint, opts)
    return { open: (o) => openStreamLink(carrier, { ...o, inner }), e2e: inner !== undefined, terminate: () => carrier.destroy() }
  }
  if (endpoint.plain === true || mode === 'http' || opts.fallback?.http === true) return await http()
  let dialed: DialedTunnel
  try {
    dialed = await dialTunnel(endpoint, opts)
  } catch (err) {
    if (mode !== 'auto' || !(err instanceof UpgradeBlockedError)) throw err
    opts.log.warn(`${err.message}; --transport auto: falling back to the HTTP transport`)
    if (opts.fallback !== undefined) opts.fallback.http = true
    return await http()
  }
  const { ws, inner } = dialed
  const where = formatEndpoint(endpoint)
  ws.on('error', (err) => opts.log.debug(`connection to ${where}: ${err.message}`))
  return {
    open: (o) => openLink(ws, {
      ...o,
      inner,
      keepaliveMs: opts.keepaliveMs,
      onDead: () => opts.log.warn(`server ${where} stopped answering pings; reconnecting`)
    }),
    e2e: inner !== undefined,
    terminate: () => ws.terminate()
  }
}