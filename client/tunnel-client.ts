import { EventEmitter } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { defaultLogger, InvalidOptionError, ReverselbError } from '../protocol/index.js'
import { Backoff } from './backoff.js'
import { describeEndpoint, formatEndpoint, parseApiEndpoint } from './endpoint.js'
import { AuthorizationError, RegistrationRefusedError, isPermanent } from './errors.js'
import { ClientSession } from './session.js'
import { ServiceError, ServiceSet, serviceEntry, serviceKey } from './services.js'
import type { E2eMode, TlsTrust, TransportMode } from './dial.js'
import type { ProxyProtocolVersion } from './proxy-header.js'
import type { Endpoint } from './endpoint.js'
import type { ServiceEntry, ServiceOptions } from './services.js'
import type { Logger, MuxerName, TunnelData, TunnelDataResponse } from '../protocol/index.js'
import type { Socket } from 'node:net'

export interface TunnelClientOptions {
  /** The shared secret; default: the `token` of the first service given to the constructor. */
  token?: string
  /** Sessions kept to each server; default: the first service's `backendAcceptBacklog`, else 1. */
  connections?: number
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

/** A service as the client carries it now. */
export interface ServiceInfo {
  /** `service` or `service:instance`. */
  name: string
  serviceName: string
  instanceName?: string
  /** The frontend port asked for (0 = the server picks). */
  requestedPort: number
  /** Ports the servers gave it, by API endpoint (`host:port`); missing until registered there. */
  frontendPorts: Record<string, number>
  targetAddresses: string[]
  targetPort: number
}

/** What setServices changed. */
export interface ServiceChanges {
  added: string[]
  removed: string[]
  changed: string[]
  /** The additions and changes that failed, once all settled. */
  settled: Promise<Array<{ name: string, error: Error }>>
}

/** What the client remembers of one API endpoint across its sessions' reconnects. */
interface EndpointState {
  endpoint: Endpoint
  where: string
  /** Ports the server gave each service: asked for again on every reconnect (e.g. after a server restart). */
  ports: Map<string, number>
  sessions: Set<ClientSession>
  /** Said once: this server is a previous release that takes one service per connection. */
  warnedSingle: boolean
  /** Services this server refused: a session opens with another one first (one refused service must not keep the others out). */
  refused: Set<string>
}

/**
 * The private side: keeps `connections` sessions to each API endpoint, each carrying every service
 * (one WebSocket for all of them), re-establishes each on its own with backoff, and relays what
 * the server sends to the service's backends. Services can be added, removed and changed at run
 * time; connections of the services left alone are never touched.
 */
export class TunnelClient extends EventEmitter {
  private readonly endpoints: EndpointState[]
  private readonly set = new ServiceSet()
  private readonly token: string
  private readonly opts: TunnelClientOptions
  private readonly log: Logger
  private readonly abort = new AbortController()
  private readonly loops: Array<Promise<void>> = []
  private readonly readyPromise: Promise<TunnelReady>
  private settleReady!: (value: TunnelReady | Error) => void
  /** The first service given to the constructor: what updateTargetAddresses/updateTargetPort change. */
  private readonly primary?: string
  /** Wakes loops waiting for a first service. */
  private wake = (): void => {}
  private waiting = new Promise<void>(resolve => { this.wake = resolve })
  /** Settles each added service's promise on its first registration or refusal. */
  private readonly pending = new Map<string, { resolve: (r: TunnelReady) => void, reject: (err: Error) => void }>()
  /** A cluster's API endpoints as its nodes last listed them (empty: not a cluster). */
  private cluster: Endpoint[] = []

  constructor (apiEndpoint: string | string[], tunnelData: TunnelData | TunnelData[], options: TunnelClientOptions = {}) {
    super()
    const list = (Array.isArray(apiEndpoint) ? apiEndpoint : [apiEndpoint]).flatMap(e => e.split(',')).map(e => e.trim()).filter(e => e !== '')
    if (list.length === 0) throw new InvalidOptionError('apiEndpoint is required')
    const services = Array.isArray(tunnelData) ? tunnelData : [tunnelData]
    this.token = options.token ?? services[0]?.token ?? ''
    if (this.token === '') throw new InvalidOptionError('token is required')
    this.opts = options
    this.log = options.logger ?? defaultLogger('tunnel')
    for (const td of services) this.set.add(serviceEntry(td, { proxyProtocol: options.proxyProtocol }))
    this.primary = this.set.list()[0]?.name
    this.endpoints = list.map(e => {
      const endpoint = parseApiEndpoint(e)
      return { endpoint, where: describeEndpoint(endpoint), ports: new Map(), sessions: new Set(), warnedSingle: false, refused: new Set() }
    })
    this.readyPromise = new Promise<TunnelReady>((resolve, reject) => {
      this.settleReady = (v) => { if (v instanceof Error) reject(v); else resolve(v) }
    })
    // ready() may never be awaited by a caller; its rejection must not crash the process.
    this.readyPromise.catch(() => {})
    const count = Math.max(1, options.connections ?? services[0]?.backendAcceptBacklog ?? 1)
    for (const state of this.endpoints) {
      for (let i = 0; i < count; i++) this.loops.push(this.run(state, i))
    }
  }

  /** Resolves on the first successful registration; rejects on auth, TLS or registration errors. */
  async ready (): Promise<TunnelReady> {
    return await this.readyPromise
  }

  /**
   * Adds a service to every session (against a previous-release server, which takes one service
   * per connection, only when it is the client's only one). Resolves on its first registration;
   * rejects with ServiceError (a bad or duplicate service) or the first failure to register it
   * (the service stays, and is registered again on every reconnect, until removeService).
   */
  async addService (data: TunnelData, options: ServiceOptions = {}): Promise<TunnelReady> {
    const entry = serviceEntry(data, { proxyProtocol: options.proxyProtocol ?? this.opts.proxyProtocol })
    this.set.add(entry)
    const registered = new Promise<TunnelReady>((resolve, reject) => this.pending.set(entry.name, { resolve, reject }))
    registered.catch(() => {})
    for (const state of this.endpoints) {
      for (const session of state.sessions) this.attach(state, session, entry)
    }
    this.wake()
    return await registered
  }

  /**
   * Unregisters a service from every session: no new connections come for it. When these were its
   * last sessions, the server closes its frontend and the connections still open on it.
   */
  removeService (name: string): void {
    this.set.remove(name)
    this.pending.get(name)?.reject(new ServiceError(`service "${name}" was removed before it registered`, 'ERR_REVERSELB_SERVICE_UNKNOWN'))
    this.pending.delete(name)
    for (const state of this.endpoints) {
      state.ports.delete(name)
      state.refused.delete(name)
      for (const session of state.sessions) {
        session.remove(name)
        // A connection with no service left is of no use; its loop waits for one.
        if (session.serviceCount === 0) session.close()
      }
    }
  }

  /**
   * Changes a service in place when only its backends change (new connections go to the new
   * ones; open ones are left alone); a new frontend port re-registers it.
   */
  async updateService (data: TunnelData, options: ServiceOptions = {}): Promise<void> {
    const name = serviceKey(data)
    const current = this.set.get(name)
    const next = serviceEntry(data, { proxyProtocol: options.proxyProtocol ?? this.opts.proxyProtocol })
    if (next.data.frontendData.port !== current.data.frontendData.port) {
      this.removeService(name)
      await this.addService(data, options)
      return
    }
    current.targets.update(next.data.targetAddresses, next.data.targetPort)
    Object.assign(current.data, { targetAddresses: next.data.targetAddresses, targetPort: next.data.targetPort })
    Object.assign(current.options, next.options)
  }

  /**
   * Makes the services exactly `list`: adds the new ones, removes the missing ones, updates the
   * changed ones; the others are not touched. `settled` resolves once every addition registered or
   * failed (a server that is down makes that wait; the rest applies at once).
   */
  setServices (list: Array<{ data: TunnelData, options?: ServiceOptions }>): ServiceChanges {
    const wanted = new Map(list.map(s => [serviceKey(s.data), s]))
    if (wanted.size !== list.length) throw new ServiceError('two services have the same name', 'ERR_REVERSELB_SERVICE_EXISTS')
    // Every entry is checked before anything changes: a bad one leaves the running set alone.
    for (const { data, options } of wanted.values()) serviceEntry(data, options)
    const changes: ServiceChanges = { added: [], removed: [], changed: [], settled: Promise.resolve([]) }
    for (const entry of this.set.list()) {
      if (!wanted.has(entry.name)) { this.removeService(entry.name); changes.removed.push(entry.name) }
    }
    const work: Array<Promise<{ name: string, error: Error } | undefined>> = []
    for (const [name, { data, options }] of wanted) {
      const failed = (error: Error): { name: string, error: Error } => ({ name, error })
      if (!this.set.has(name)) {
        changes.added.push(name)
        work.push(this.addService(data, options).then(() => undefined, failed))
      } else if (changed(this.set.get(name), data, options ?? {}, this.opts.proxyProtocol)) {
        changes.changed.push(name)
        work.push(this.updateService(data, options).then(() => undefined, failed))
      }
    }
    changes.settled = Promise.all(work).then(r => r.filter(x => x !== undefined))
    return changes
  }

  /** The services this client carries now. */
  services (): ServiceInfo[] {
    return this.set.list().map(e => {
      const frontendPorts: Record<string, number> = {}
      for (const s of this.endpoints) {
        const port = s.ports.get(e.name)
        if (port !== undefined && port !== 0) frontendPorts[formatEndpoint(s.endpoint)] = port
      }
      const { addresses, port } = e.targets.current
      const info: ServiceInfo = { name: e.name, serviceName: e.data.serviceName, requestedPort: e.data.frontendData.port, frontendPorts, targetAddresses: addresses, targetPort: port }
      if (e.data.instanceName !== undefined) info.instanceName = e.data.instanceName
      return info
    })
  }

  /** New connections of the constructor's service go to these backends; open ones are left alone. */
  updateTargetAddresses (addresses: string[]): void {
    const entry = this.primaryEntry()
    entry.targets.update(addresses)
    entry.data.targetAddresses = [...addresses]
  }

  updateTargetPort (port: number): void {
    const entry = this.primaryEntry()
    entry.targets.update(undefined, port)
    entry.data.targetPort = port
  }

  get targetAddresses (): string[] {
    return this.primaryEntry().targets.current.addresses
  }

  get targetPort (): number {
    return this.primaryEntry().targets.current.port
  }

  /** Connected sessions right now. */
  get connectedSessions (): number {
    return this.endpoints.reduce((n, s) => n + s.sessions.size, 0)
  }

  private primaryEntry (): ServiceEntry {
    if (this.primary === undefined) throw new ServiceError('this client was made without a service', 'ERR_REVERSELB_SERVICE_UNKNOWN')
    return this.set.get(this.primary)
  }

  /** What a service registers with one server: the port that server gave it before, once it did. */
  private registration (state: EndpointState, entry: ServiceEntry): TunnelData {
    const port = state.ports.get(entry.name) ?? entry.data.frontendData.port
    return { ...entry.data, frontendData: { port } }
  }

  private registered (state: EndpointState, name: string, response: TunnelDataResponse): void {
    const { id, frontendPort, frontendAddress } = response
    state.ports.set(name, frontendPort)
    state.refused.delete(name)
    this.log.info(`tunnel ${name} registered with ${state.where} as session ${id}: frontend ${frontendAddress !== '' ? frontendAddress : state.where.replace(/:\d+$/, '')}:${frontendPort}`)
    this.settleReady({ id, frontendPort, frontendAddress })
    this.pending.get(name)?.resolve({ id, frontendPort, frontendAddress })
    this.pending.delete(name)
  }

  /** Registers one more service on a live session (multi-service servers only). */
  private attach (state: EndpointState, session: ClientSession, entry: ServiceEntry): void {
    if (!session.multiService) { this.warnSingle(state); return }
    session.add(entry.name, this.registration(state, entry)).then(
      (response) => { if (this.set.has(entry.name)) this.registered(state, entry.name, response); else session.remove(entry.name) },
      (err: Error) => {
        if (this.abort.signal.aborted || !this.set.has(entry.name)) return
        this.log.error(`tunnel ${entry.name}: ${err.message}`)
        if (err instanceof RegistrationRefusedError) state.refused.add(entry.name)
        this.pending.get(entry.name)?.reject(err)
        this.pending.delete(entry.name)
      }
    )
  }

  private warnSingle (state: EndpointState): void {
    if (state.warnedSingle) return
    state.warnedSingle = true
    const [first, ...rest] = this.set.list().map(e => e.name)
    this.log.warn(`server ${state.where} takes one service per connection (a previous release without "services"): only ${first} is registered there; not ${rest.join(', ')}`)
  }

  /**
   * Keeps session `index` to the state's endpoint, or, once a cluster listed its nodes, to node
   * `index` of them (one client's sessions spread over the nodes); a lost or refused connection
   * moves on to the next node.
   */
  private async run (state: EndpointState, index: number): Promise<void> {
    const backoff = new Backoff(500, this.opts.maxBackoffMs ?? 30_000)
    const signal = this.abort.signal
    const fallback = { http: false }
    let endpoint = state.endpoint
    let moveOn = false
    while (!signal.aborted) {
      if (moveOn && this.cluster.length > 0) endpoint = this.nextNode(endpoint, state.endpoint)
      moveOn = true
      const where = describeEndpoint(endpoint)
      const first = this.set.list().find(e => !state.refused.has(e.name)) ?? this.set.list()[0]
      if (first === undefined) {
        // No service to carry: wait for one rather than hold a connection open for nothing.
        await Promise.race([this.waiting, new Promise(resolve => signal.addEventListener('abort', resolve, { once: true }))])
        this.waiting = new Promise<void>(resolve => { this.wake = resolve })
        continue
      }
      let delayFloor = 0
      try {
        const session = await ClientSession.open(endpoint, first.name, this.registration(state, first), {
          token: this.token,
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
          lookup: (service, instance) => this.set.lookup(service, instance),
          proxyProtocol: this.opts.proxyProtocol,
          log: this.log
        })
        if (signal.aborted) { session.close(); break }
        backoff.reset()
        const mine = this.learnCluster(session.response.endpoints, index)
        if (mine !== undefined && describeEndpoint(mine) !== where) {
          // This session's share is another node: it moves there (the first session stays).
          this.log.info(`tunnel ${first.name}: cluster of ${this.cluster.length} nodes; session ${index + 1} moves to ${describeEndpoint(mine)}`)
          session.close()
          endpoint = mine
          moveOn = false
          continue
        }
        state.sessions.add(session)
        if (this.set.has(first.name)) this.registered(state, first.name, session.response); else session.remove(first.name)
        // Services added while this session registered its first one, and the rest of the list.
        for (const entry of this.set.list()) if (!session.has(entry.name)) this.attach(state, session, entry)
        if (session.serviceCount === 0) session.close()
        this.emit('connected', session.response)
        await session.closed
        state.sessions.delete(session)
        this.emit('disconnected', session.response)
        if (!signal.aborted && this.set.size > 0) this.log.warn(`tunnel ${first.name}: connection to ${where} lost; reconnecting`)
      } catch (err) {
        if (signal.aborted) break
        const others = err instanceof RegistrationRefusedError && this.set.list().some(e => e !== first && !state.refused.has(e.name))
        if (err instanceof RegistrationRefusedError) state.refused.add(first.name)
        if (isPermanent(err)) {
          if (!others) this.settleReady(err as Error)
          this.pending.get(first.name)?.reject(err as Error)
          this.pending.delete(first.name)
        }
        // A wrong token will not fix itself quickly: wait longer rather than hammer the server.
        if (err instanceof AuthorizationError) delayFloor = 5_000
        this.log.error(`tunnel ${first.name}: ${(err as Error).message}`)
        if (this.listenerCount('error') > 0) this.emit('error', err)
      }
      const delay = backoff.next(delayFloor)
      this.log.debug(`reconnecting to ${where} in ${delay} ms`)
      await sleep(delay, undefined, { signal }).catch(() => {})
    }
  }

  /** Keeps the nodes a cluster listed; the node session `index` belongs on (none for the first). */
  private learnCluster (endpoints: string[] | undefined, index: number): Endpoint | undefined {
    if (endpoints === undefined || endpoints.length === 0) return undefined
    this.cluster = endpoints.flatMap(e => { try { return [parseApiEndpoint(e)] } catch { return [] } })
    return index === 0 || this.cluster.length === 0 ? undefined : this.cluster[index % this.cluster.length]
  }

  /**
   * The node after `current` in the cluster's list, which ends with the address the client was
   * given (a balancer in front of the nodes) when the nodes did not list it themselves.
   */
  private nextNode (current: Endpoint, given: Endpoint): Endpoint {
    const names = this.cluster.map(describeEndpoint)
    const ring = names.includes(describeEndpoint(given)) ? this.cluster : [...this.cluster, given]
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
    for (const { reject } of this.pending.values()) reject(new ReverselbError('ERR_REVERSELB_CLIENT_CLOSED', 'tunnel client closed'))
    this.pending.clear()
    for (const state of this.endpoints) for (const s of state.sessions) s.close()
    await Promise.all(this.loops)
  }
}

/** True when `data` and `options` differ from what `entry` carries now. */
function changed (entry: ServiceEntry, data: TunnelData, options: ServiceOptions, fallback: ServiceOptions['proxyProtocol']): boolean {
  const next = serviceEntry(data, { proxyProtocol: options.proxyProtocol ?? fallback })
  const { addresses, port } = entry.targets.current
  return next.data.frontendData.port !== entry.data.frontendData.port || port !== next.data.targetPort ||
    addresses.join(',') !== next.data.targetAddresses.join(',') || next.options.proxyProtocol !== entry.options.proxyProtocol
}
