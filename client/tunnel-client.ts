import { EventEmitter } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { defaultLogger, InvalidOptionError, ReverselbError } from '../protocol/index.js'
import { Backoff } from './backoff.js'
import { describeEndpoint, parseApiEndpoint } from './endpoint.js'
import { AuthorizationError, isPermanent } from './errors.js'
import { ClientSession } from './session.js'
import { Targets } from './targets.js'
import type { E2eMode, TlsTrust, TransportMode } from './dial.js'
import type { ProxyProtocolVersion } from './proxy-header.js'
import type { Endpoint } from './endpoint.js'
import type { Logger, MuxerName, TunnelData } from '../protocol/index.js'
import type { Socket } from 'node:net'

export interface TunnelClientOptions {
  /** Skip server certificate verification (warned about). */
  insecureTls?: boolean
  /** Extra trusted CA certificate(s), PEM text. */
  ca?: string
  /** Pin the server certificate by its SHA-256 fingerprint. */
  fingerprint?: string
  /**
   * End-to-end layer (inner TLS to the server, token inside it) so a TLS-inspecting proxy reads
   * nothing: 'auto' (default) runs it whenever the outer TLS is not pinned to the server (ca,
   * insecureTls, or a fingerprint that an inspecting proxy's certificate did not match).
   */
  e2e?: E2eMode
  /**
   * 'auto' (default): the WebSocket, falling back to the HTTP transport (a streaming GET and
   * POSTs) when a proxy blocks the upgrade; 'websocket' or 'http' only. An http:// endpoint
   * always uses the HTTP transport.
   */
  transport?: TransportMode
  /** Stream muxer: 'yamux' (default, flow control per stream) or 'mplex'. */
  muxer?: MuxerName
  /** WebSocket ping interval. Default 20 s. */
  keepaliveMs?: number
  /** Time allowed to connect, handshake and register. Default 10 s. */
  connectTimeoutMs?: number
  /** Time allowed to dial a backend. Default 5 s. */
  backendDialTimeoutMs?: number
  /** Longest wait between reconnection attempts. Default 30 s. */
  maxBackoffMs?: number
  /** Opens the TCP connection to a server, e.g. through an HTTP proxy. Default: direct. */
  connect?: (endpoint: Endpoint, timeoutMs: number) => Promise<Socket>
  /**
   * HTTP(S) proxy for the WSS connection, `http://user:pass@host:port`, or 'none' for direct.
   * Unset: HTTPS_PROXY, ALL_PROXY, HTTP_PROXY and NO_PROXY decide, as in curl. `connect` wins.
   */
  proxy?: string
  /** Send a HAProxy PROXY protocol header (v1 or v2) to the backend on each connection. */
  proxyProtocol?: ProxyProtocolVersion
  logger?: Logger
}

export interface TunnelReady {
  id: string
  frontendPort: number
  frontendAddress: string
}

/**
 * The private side: keeps `backendAcceptBacklog` sessions to each API endpoint, re-establishes
 * each on its own with backoff, and relays what the server sends to the target backends.
 */
export class TunnelClient extends EventEmitter {
  private readonly endpoints: Endpoint[]
  private readonly td: TunnelData
  private readonly opts: TunnelClientOptions
  private readonly log: Logger
  private readonly targets: Targets
  private readonly abort = new AbortController()
  private readonly sessions = new Set<ClientSession>()
  private readonly loops: Array<Promise<void>> = []
  private readonly readyPromise: Promise<TunnelReady>
  private settleReady!: (value: TunnelReady | Error) => void
  /** A cluster's API endpoints as its nodes last listed them (empty: not a cluster). */
  private cluster: Endpoint[] = []

  constructor (apiEndpoint: string | string[], tunnelData: TunnelData, options: TunnelClientOptions = {}) {
    super()
    const list = (Array.isArray(apiEndpoint) ? apiEndpoint : [apiEndpoint]).flatMap(e => e.split(',')).map(e => e.trim()).filter(e => e !== '')
    if (list.length === 0) throw new InvalidOptionError('apiEndpoint is required')
    this.endpoints = list.map(e => parseApiEndpoint(e))
    if (tunnelData.token === undefined || tunnelData.token === '') throw new InvalidOptionError('token is required')
    this.td = { ...tunnelData, frontendData: { ...tunnelData.frontendData }, targetAddresses: [...tunnelData.targetAddresses] }
    this.opts = options
    this.log = options.logger ?? defaultLogger('tunnel')
    this.targets = new Targets(tunnelData.targetAddresses, tunnelData.targetPort)
    this.readyPromise = new Promise<TunnelReady>((resolve, reject) => {
      this.settleReady = (v) => { if (v instanceof Error) reject(v); else resolve(v) }
    })
    // ready() may never be awaited by a caller; its rejection must not crash the process.
    this.readyPromise.catch(() => {})
    const count = Math.max(1, tunnelData.backendAcceptBacklog ?? 1)
    for (const endpoint of this.endpoints) {
      // All sessions to one server ask for the same port; after the first registration, the port
      // the server chose is requested again on every reconnect (e.g. after a server restart).
      const registration = { ...this.td, frontendData: { ...this.td.frontendData } }
      for (let i = 0; i < count; i++) this.loops.push(this.run(endpoint, registration, i))
    }
  }

  /** Resolves on the first successful registration; rejects on auth, TLS or registration errors. */
  async ready (): Promise<TunnelReady> {
    return await this.readyPromise
  }

  /** New connections go to these backends; open ones are left alone. */
  updateTargetAddresses (addresses: string[]): void {
    this.targets.update(addresses)
    this.td.targetAddresses = [...addresses]
  }

  updateTargetPort (port: number): void {
    this.targets.update(undefined, port)
    this.td.targetPort = port
  }

  get targetAddresses (): string[] {
    return this.targets.current.addresses
  }

  get targetPort (): number {
    return this.targets.current.port
  }

  /** Connected sessions right now. */
  get connectedSessions (): number {
    return this.sessions.size
  }

  /**
   * Keeps session `index` to `first`, or, once a cluster listed its nodes, to node `index` of
   * them (sessions spread over the nodes); a lost or refused connection moves on to the next node.
   */
  private async run (first: Endpoint, registration: TunnelData, index: number): Promise<void> {
    const backoff = new Backoff(500, this.opts.maxBackoffMs ?? 30_000)
    const signal = this.abort.signal
    const fallback = { http: false }
    let endpoint = first
    let moveOn = false
    while (!signal.aborted) {
      if (moveOn && this.cluster.length > 0) endpoint = this.nextNode(endpoint, first)
      moveOn = true
      const where = describeEndpoint(endpoint)
      let delayFloor = 0
      try {
        const session = await ClientSession.open(endpoint, registration, {
          token: registration.token ?? '',
          muxer: this.opts.muxer ?? 'yamux',
          e2e: this.opts.e2e,
          transport: this.opts.transport,
          fallback,
          trust: this.trust(),
          timeoutMs: this.opts.connectTimeoutMs ?? 10_000,
          backendDialTimeoutMs: this.opts.backendDialTimeoutMs ?? 5_000,
          keepaliveMs: this.opts.keepaliveMs ?? 20_000,
          connect: this.opts.connect,
          proxy: this.opts.proxy,
          targets: this.targets,
          proxyProtocol: this.opts.proxyProtocol,
          log: this.log
        })
        if (signal.aborted) { session.close(); break }
        backoff.reset()
        this.sessions.add(session)
        const { id, frontendPort, frontendAddress, endpoints } = session.response
        registration.frontendData.port = frontendPort
        if (endpoints !== undefined && endpoints.length > 0) {
          this.cluster = endpoints.flatMap(e => { try { return [parseApiEndpoint(e)] } catch { return [] } })
          const mine = index === 0 ? undefined : this.cluster[index % this.cluster.length]
          if (mine !== undefined && describeEndpoint(mine) !== where) {
            // This session's share is another node: it moves there (the first session stays).
            this.log.info(`tunnel ${registration.serviceName}: cluster of ${this.cluster.length} nodes; session ${index + 1} moves to ${describeEndpoint(mine)}`)
            session.close()
            this.sessions.delete(session)
            endpoint = mine
            moveOn = false
            continue
          }
        }
        this.log.info(`tunnel ${registration.serviceName} registered with ${where} as session ${id}: frontend ${frontendAddress !== '' ? frontendAddress : where.replace(/:\d+$/, '')}:${frontendPort}`)
        this.settleReady({ id, frontendPort, frontendAddress })
        this.emit('connected', session.response)
        await session.closed
        this.sessions.delete(session)
        this.emit('disconnected', session.response)
        if (!signal.aborted) this.log.warn(`tunnel ${registration.serviceName}: connection to ${where} lost; reconnecting`)
      } catch (err) {
        if (signal.aborted) break
        if (isPermanent(err)) this.settleReady(err as Error)
        // A wrong token will not fix itself quickly: wait longer rather than hammer the server.
        if (err instanceof AuthorizationError) delayFloor = 5_000
        this.log.error(`tunnel ${registration.serviceName}: ${(err as Error).message}`)
        if (this.listenerCount('error') > 0) this.emit('error', err)
      }
      const delay = backoff.next(delayFloor)
      this.log.debug(`reconnecting to ${where} in ${delay} ms`)
      await sleep(delay, undefined, { signal }).catch(() => {})
    }
  }

  /**
   * The node after `current` in the cluster's list, which ends with the address the client was
   * given (a balancer in front of the nodes) when the nodes did not list it themselves.
   */
  private nextNode (current: Endpoint, first: Endpoint): Endpoint {
    const names = this.cluster.map(describeEndpoint)
    const ring = names.includes(describeEndpoint(first)) ? this.cluster : [...this.cluster, first]
    const i = ring.findIndex(e => describeEndpoint(e) === describeEndpoint(current))
    return ring[(i + 1) % ring.length]
  }

  private trust (): TlsTrust {
    return { insecure: this.opts.insecureTls === true, ca: this.opts.ca, fingerprint: this.opts.fingerprint }
  }

  /** Closes every session and stops reconnecting. */
  async close (): Promise<void> {
    this.abort.abort()
    this.settleReady(new ReverselbError('ERR_REVERSELB_CLIENT_CLOSED', 'tunnel client closed'))
    for (const s of this.sessions) s.close()
    await Promise.all(this.loops)
  }
}
