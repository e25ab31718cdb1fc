import { ReverselbError } from '../protocol/index.js'
import { EventEmitter } from 'node:events'
import { createServer } from 'node:https'
import { createServer as createHttpServer } from 'node:http'
import { TLSSocket, createSecureContext } from 'node:tls'
import {
  E2E_ALPN, E2E_MIN_VERSION, MessageDuplex, openStreamLink, TUNNEL_PATH, defaultLogger, openLink
} from '../protocol/index.js'
import { TokenAuth } from './auth.js'
import { loadCertificate, selfSignedCertificate, storedSelfSignedCertificate } from './certificate.js'
import { guardConnections, requestTimeouts } from './conn-guard.js'
import { HttpTunnel } from './http-tunnel.js'
import { dispatch } from './dispatch.js'
import { OperatorEndpoints } from './operator-endpoints.js'
import { DEFAULT_LIMITS, checkLimits } from './limits.js'
import { PortPool } from './port-pool.js'
import { PortRanges } from './port-ranges.js'
import { ServiceRegistry } from './registry.js'
import { ControlStreams } from './control-streams.js'
import { UpgradeGate } from './upgrade-gate.js'
import { completeUpgrade } from './websocket-upgrade.js'
import { ClusterNode } from './cluster/cluster-node.js'
import { CLUSTER_PATH } from './cluster/peer-dial.js'
import type { ClusterOptions } from './cluster/cluster-node.js'
import type { Link, LinkOptions, Logger, MuxStream, WebSocketConnection } from '../protocol/index.js'
import type { HttpTunnelSession } from './http-tunnel-session.js'
import type { LbPolicy } from './balancer.js'
import type { TokenSpec } from './auth.js'
import type { ServerCertificate } from './certificate.js'
import type { Limits } from './limits.js'
import type { AdmittedClient } from './upgrade-gate.js'
import type { ControlDeps } from './control-streams.js'
import type { OperatorEndpointOptions } from './operator-endpoints.js'
import type { ServerEvents } from './events.js'
import type { TransportName } from './session.js'
import type { IncomingMessage } from 'node:http'
import type { Server } from 'node:https'
import type { Server as HttpServer } from 'node:http'
import type { Duplex } from 'node:stream'
import type { SecureContext } from 'node:tls'

export interface TunnelServerOptions extends OperatorEndpointOptions {
  /** API (WSS) port; 0 picks a free one. Default 9999. */
  port?: number
  /** Address the API port binds; default all interfaces. */
  host?: string
  /** Shared secret(s) clients must present; a TokenSpec may restrict a token to some services. */
  token: string | Array<string | TokenSpec>
  /** Subject name of the self-signed certificate. Default 'localhost'. */
  autoCertSubjectName?: string
  /**
   * Directory that keeps the self-signed certificate (cert.pem, key.pem) across restarts: made on
   * the first start, reused after, so its fingerprint stays the same. Default: a new one each start.
   */
  autoCertDir?: string
  /** PEM files of an operator's own certificate; replaces the self-signed one. */
  tlsCert?: string
  tlsKey?: string
  /** First port and size of the dynamic frontend pool. Default 8000 and 100. */
  dynPort?: number
  dynPortCount?: number
  /** Address frontend listeners bind; default all interfaces. */
  frontendHost?: string
  lbPolicy?: LbPolicy
  /**
   * Port of a plain-HTTP (no TLS) listener for the HTTP transport alone, for clients behind
   * proxies that allow no CONNECT (-e http://host:PORT; the end-to-end layer secures it). Default off.
   */
  httpTunnelPort?: number
  /** WebSocket ping interval. Default 20 s. */
  keepaliveMs?: number
  /** Time allowed for TLS, upgrade and registration. Default 10 s. */
  handshakeTimeoutMs?: number
  /** Time a client has to dial its backend for a new connection. Default 10 s. */
  dialTimeoutMs?: number
  /** On ports shared by named instances: most bytes and time spent reading the first bytes. Default 16 KiB, 10 s. */
  sniffMaxBytes?: number
  sniffTimeoutMs?: number
  /** What clients are allowed; see Limits for the defaults. */
  limits?: Partial<Limits>
  /** Join a cluster of servers that share services through NATS JetStream (docs/cluster.md). Default: alone. */
  cluster?: ClusterOptions
  logger?: Logger
}

export interface ServerAddress {
  port: number
  /** SHA-256 fingerprint of the certificate, for clients' --fingerprint. */
  fingerprint: string
}

/** The public side: accepts tunnel clients over WSS and serves their frontend ports. */
export class TunnelServer extends EventEmitter<ServerEvents> {
  readonly registry: ServiceRegistry
  private readonly opts: Required<Omit<TunnelServerOptions, 'host' | 'frontendHost' | 'tlsCert' | 'tlsKey' | 'autoCertDir' | 'logger' | 'token' | 'limits' | 'httpTunnelPort' | 'cluster' | keyof OperatorEndpointOptions>> & TunnelServerOptions
  private readonly log: Logger
  private readonly auth: TokenAuth
  readonly limits: Limits
  private allowedPorts: PortRanges
  private readonly gate: UpgradeGate
  private readonly pool: PortPool
  /** Every tunnel connection open now (WebSocket or HTTP-transport session). */
  private readonly carriers = new Set<Carrier>()
  /** The control streams of each registered-or-registering connection. */
  private readonly connections = new Set<ControlStreams>()
  private https?: Server
  /** The plain-HTTP listener of httpTunnelPort, when on. */
  private plainHttp?: HttpServer
  private readonly httpTunnel: HttpTunnel
  private certificate?: ServerCertificate
  /** The same certificate for the end-to-end layer's inner TLS (1.3 only). */
  private innerContext?: SecureContext
  /** REST API, dashboard, metrics and NATS (see endpoints.ts); undefined when none is configured. */
  private endpoints?: OperatorEndpoints
  /** This server's part of a cluster, with --cluster. */
  private clusterNode?: ClusterNode

  constructor (options: TunnelServerOptions) {
    super()
    this.opts = {
      port: 9999,
      autoCertSubjectName: 'localhost',
      dynPort: 8000,
      dynPortCount: 100,
      lbPolicy: 'roundrobin',
      keepaliveMs: 20_000,
      handshakeTimeoutMs: 10_000,
      dialTimeoutMs: 10_000,
      sniffMaxBytes: 16 * 1024,
      sniffTimeoutMs: 10_000,
      ...options
    }
    this.log = options.logger ?? defaultLogger('server')
    this.auth = new TokenAuth(Array.isArray(options.token) ? options.token : [options.token])
    this.limits = { ...DEFAULT_LIMITS, ...options.limits }
    checkLimits(this.limits)
    this.allowedPorts = PortRanges.parse(this.limits.allowedPorts)
    this.gate = new UpgradeGate({
      auth: this.auth, limits: this.limits, log: this.log, onAuthFailure: (remoteAddress) => this.emit('authFailure', { remoteAddress })
    })
    this.httpTunnel = new HttpTunnel({
      gate: this.gate,
      log: this.log,
      // A client that reached us for none of its downloads or uploads this long is gone.
      idleMs: Math.max(30_000, 2 * this.opts.keepaliveMs),
      onSession: (session, client) => this.runTunnel(httpCarrier(session), client)
    })
    this.pool = new PortPool(this.opts.dynPort, this.opts.dynPortCount)
    this.registry = new ServiceRegistry({
      pool: this.pool,
      frontendHost: options.frontendHost,
      policy: this.opts.lbPolicy,
      portGraceMs: this.limits.portGraceMs,
      ...(options.cluster !== undefined ? { claimPort: async (name, requested) => await this.cluster.shared.claimPort(name, requested, this.pool) } : {}),
      onServiceUp: (service) => this.emit('serviceUp', { service }),
      onServiceDown: (service) => this.emit('serviceDown', { service }),
      onConnection: (service, socket) => {
        this.endpoints?.frontendConnection(service, socket)
        dispatch(service, socket, {
          ackTimeoutMs: this.opts.dialTimeoutMs,
          sniff: { maxBytes: this.opts.sniffMaxBytes, timeoutMs: this.opts.sniffTimeoutMs },
          limits: this.limits,
          log: this.log,
          events: this
        })
          .catch((err: Error) => { this.log.error(`dispatch failed: ${err.message}`); socket.destroy() })
      }
    })
  }

  get fingerprint (): string {
    if (this.certificate === undefined) throw new ReverselbError('ERR_REVERSELB_NOT_LISTENING', 'server is not listening')
    return this.certificate.fingerprint
  }

  /** The cluster node, with the cluster option, once listening. */
  get cluster (): ClusterNode {
    if (this.clusterNode === undefined) throw new ReverselbError('ERR_REVERSELB_NOT_LISTENING', 'server is not part of a cluster, or not listening')
    return this.clusterNode
  }

  get port (): number {
    const addr = this.https?.address()
    if (addr == null || typeof addr === 'string') throw new ReverselbError('ERR_REVERSELB_NOT_LISTENING', 'server is not listening')
    return addr.port
  }

  async listen (): Promise<ServerAddress> {
    this.certificate = await this.loadCertificate()
    this.innerContext = createSecureContext({ cert: this.certificate.cert, key: this.certificate.key, minVersion: E2E_MIN_VERSION })
    const https = createServer({
      cert: this.certificate.cert,
      key: this.certificate.key,
      handshakeTimeout: this.opts.handshakeTimeoutMs,
      // Checked often (see requestTimeouts): slowloris sockets must not outlive them.
      ...requestTimeouts(this.opts.handshakeTimeoutMs)
    })
    guardConnections(https, { perAddress: this.limits.maxConnectionsPerAddress + this.limits.maxSessionsPerAddress, what: 'tunnel port', log: this.log })
    https.on('request', (req, res) => {
      if (this.httpTunnel.handle(req, res)) return
      if (req.url === '/healthz') { res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n'); return }
      res.writeHead(426, { 'content-type': 'text/plain', upgrade: 'websocket' })
        .end(`reverselb tunnel endpoint: clients connect with a WebSocket upgrade at ${TUNNEL_PATH}\n`)
    })
    https.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(req, socket, head))
    https.on('tlsClientError', (err, socket) => {
      this.log.debug(`TLS handshake failed from ${socket.remoteAddress ?? '?'}: ${err.message}`)
    })
    await new Promise<void>((resolve, reject) => {
      https.once('error', reject)
      https.listen({ port: this.opts.port, host: this.opts.host }, () => { https.off('error', reject); resolve() })
    })
    this.https = https
    try {
      if (this.opts.httpTunnelPort !== undefined) this.plainHttp = await this.listenPlainHttp(this.opts.httpTunnelPort)
      if (this.opts.cluster !== undefined) {
        this.clusterNode = await ClusterNode.start(this.opts.cluster, {
          apiPort: this.port,
          certificate: this.certificate,
          registry: this.registry,
          pool: this.pool,
          events: this,
          keepaliveMs: this.opts.keepaliveMs,
          maxQueuedBytes: this.limits.maxQueuedBytes,
          dialTimeoutMs: this.opts.dialTimeoutMs,
          portGraceMs: this.limits.portGraceMs,
          log: this.log
        })
      }
      // NATS authenticates with the first token not restricted to some services or ports (the operator's own).
      const specs = (Array.isArray(this.opts.token) ? this.opts.token : [this.opts.token]).map(t => typeof t === 'string' ? { token: t } : t)
      const token = (specs.find(s => s.services === undefined && s.ports === undefined) ?? specs[0]).token
      this.endpoints = await OperatorEndpoints.start(this, { ...this.opts, token, certificate: this.certificate, auth: this.auth, registry: this.registry, cluster: this.clusterNode, log: this.log })
    } catch (err) {
      await this.close()
      throw err
    }
    this.log.info(`tunnel service listening on: wss://${this.opts.host ?? '[::]'}:${this.port}${TUNNEL_PATH}`)
    this.log.info(`certificate SHA-256 fingerprint: ${this.certificate.fingerprint}`)
    return { port: this.port, fingerprint: this.certificate.fingerprint }
  }

  /**
   * Takes a new token list and limits (the CLI's SIGHUP). Everything is checked before anything
   * changes. Connections whose token was removed, or may no longer register one of their services,
   * are closed (and logged); the others stay. Limits apply to what comes next: new registrations,
   * connections and sessions (a connection's queue bound and refused-stream count keep theirs).
   */
  reload ({ token, limits }: { token?: TunnelServerOptions['token'], limits?: Partial<Limits> }): void {
    const next = { ...this.limits, ...limits }
    checkLimits(next)
    const allowedPorts = PortRanges.parse(next.allowedPorts)
    if (token !== undefined) this.auth.replace(Array.isArray(token) ? token : [token])
    Object.assign(this.limits, next)
    this.allowedPorts = allowedPorts
    for (const connection of this.connections) connection.revalidate(grant => this.auth.regrant(grant))
    this.log.info(`reloaded: ${token !== undefined ? 'tokens and ' : ''}limits; ${this.connections.size} client connections checked`)
  }

  /** The HTTP transport without TLS, on a port of its own: nothing else is served there. */
  private async listenPlainHttp (port: number): Promise<HttpServer> {
    const server = createHttpServer({ ...requestTimeouts(this.opts.handshakeTimeoutMs) })
    guardConnections(server, { perAddress: this.limits.maxConnectionsPerAddress + this.limits.maxSessionsPerAddress, what: 'HTTP tunnel port', log: this.log })
    server.on('request', (req, res) => {
      if (this.httpTunnel.handle(req, res, true)) return
      res.writeHead(404, { 'content-type': 'text/plain' }).end('reverselb HTTP tunnel port: only the HTTP transport is served here\n')
    })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen({ port, host: this.opts.host }, () => { server.off('error', reject); resolve() })
    })
    const addr = server.address()
    this.log.info(`HTTP transport (plain HTTP, for proxies without CONNECT) listening on: http://${this.opts.host ?? '[::]'}:${typeof addr === 'object' && addr !== null ? addr.port : port}`)
    return server
  }

  /** The plain-HTTP transport port, when on. */
  get httpTunnelPort (): number | undefined {
    const addr = this.plainHttp?.address()
    return addr == null || typeof addr === 'string' ? undefined : addr.port
  }

  /** The operator's certificate, the one kept in autoCertDir, or a fresh self-signed one. */
  private async loadCertificate (): Promise<ServerCertificate> {
    const { tlsCert, tlsKey, autoCertDir, autoCertSubjectName } = this.opts
    if (tlsCert !== undefined && tlsKey !== undefined) return await loadCertificate(tlsCert, tlsKey)
    if (autoCertDir === undefined) return await selfSignedCertificate(autoCertSubjectName)
    const stored = await storedSelfSignedCertificate(autoCertDir, autoCertSubjectName)
    this.log.info(stored.created
      ? `generated a self-signed certificate for "${autoCertSubjectName}" and stored it in ${autoCertDir} for the next starts`
      : `using the self-signed certificate stored in ${autoCertDir}`)
    for (const w of stored.warnings) this.log.warn(w)
    return stored
  }

  private onUpgrade (req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => {})
    if (this.clusterNode !== undefined && (req.url ?? '').split('?')[0] === CLUSTER_PATH) {
      this.clusterNode.acceptPeer(req, socket, head)
      return
    }
    const client = this.gate.check(req, socket)
    if (client === undefined) return
    const ws = completeUpgrade(req, socket, head)
    if (ws === undefined) return
    ws.on('error', (err) => this.log.debug(`tunnel client ${client.from}: ${err.message}`))
    this.runTunnel(webSocketCarrier(ws), client)
  }

  /** Runs a tunnel session on `carrier`; whatever fails drops that connection alone. */
  private runTunnel (carrier: Carrier, client: AdmittedClient): void {
    this.onTunnel(carrier, client).catch((err: Error) => {
      this.log.warn(`tunnel client ${client.from} dropped: ${err.message}`)
      carrier.terminate()
    })
  }

  private async onTunnel (carrier: Carrier, { from, grant: upgradeGrant, muxer: muxerName, e2e, publicHost }: AdmittedClient): Promise<void> {
    this.carriers.add(carrier)
    const release = this.gate.holdSession(from)
    void carrier.closed.then(() => {
      this.carriers.delete(carrier)
      release()
    })
    // Before anything else, the end-to-end layer's handshake; the token comes inside it.
    const inner = e2e ? await this.acceptInner(carrier.bytes(), from) : undefined
    const controls = new ControlStreams(this.controlDeps(), { from, muxerName, transport: carrier.transport, e2e, publicHost, grant: upgradeGrant })
    this.connections.add(controls)
    void carrier.closed.then(() => this.connections.delete(controls))
    const link = carrier.open({
      side: 'server',
      muxer: muxerName,
      inner,
      keepaliveMs: this.opts.keepaliveMs,
      maxQueuedBytes: this.limits.maxQueuedBytes,
      mux: { maxRefusedStreams: this.limits.maxRefusedStreams },
      // The client opens control streams only (see ControlStreams); only the server opens relay streams.
      accept: (stream) => controls.accept(stream),
      onDead: () => this.log.warn(`tunnel client ${from} stopped answering pings or reading; dropping it`),
      onProtocolError: (err) => this.log.warn(`tunnel client ${from} broke the ${muxerName} protocol (${err.code}): ${err.message}; connection closed`),
      onStreamOverflow: (stream, bytes) => this.log.warn(`tunnel client ${from}: stream ${stream.id} fell ${bytes} bytes behind its frontend reader; reset (mplex has no flow control; yamux does)`)
    })
    await controls.start(link, await this.firstStream(controls.primary))
  }

  /** What every connection's control streams use of the server; read at each registration, so a reload applies. */
  private controlDeps (): ControlDeps {
    return {
      auth: this.auth,
      limits: this.limits,
      allowedPorts: () => this.allowedPorts,
      pool: this.pool,
      reserved: () => this.reservedPorts(),
      registry: this.registry,
      handshakeTimeoutMs: this.opts.handshakeTimeoutMs,
      log: this.log,
      authenticate: (from, token) => this.gate.authenticate(from, token),
      ...(this.clusterNode !== undefined ? { cluster: this.clusterNode } : {}),
      onOpened: (service, session, registrationMs) => this.emit('sessionOpened', { service, session, registrationMs }),
      onClosed: (service, session) => this.emit('sessionClosed', { service, session }),
      onRefused: (remoteAddress, reason) => this.emit('registrationRefused', { remoteAddress, reason })
    }
  }

  /** Completes the end-to-end layer's TLS inside the WebSocket, within the handshake time. */
  private async acceptInner (bytes: Duplex, from: string): Promise<TLSSocket> {
    const inner = new TLSSocket(bytes, { isServer: true, secureContext: this.innerContext, ALPNProtocols: [E2E_ALPN] })
    let timer: NodeJS.Timeout | undefined
    try {
      await new Promise<void>((resolve, reject) => {
        timer = setTimeout(() => reject(new Error(`no end-to-end TLS handshake within ${this.opts.handshakeTimeoutMs} ms`)), this.opts.handshakeTimeoutMs)
        inner.once('secure', resolve)
        inner.once('error', reject)
        inner.once('close', () => reject(new Error('closed during the end-to-end TLS handshake')))
      })
      if (inner.alpnProtocol !== E2E_ALPN) throw new Error('the end-to-end TLS handshake did not name the reverselb-e2e protocol')
      return inner
    } catch (err) {
      inner.destroy()
      throw new Error(`end-to-end layer with ${from} failed: ${(err as Error).message}`)
    } finally {
      clearTimeout(timer)
    }
  }

  /** Ports the server listens on itself: never handed out as frontends. */
  private reservedPorts (): Set<number> {
    const ports = new Set<number>()
    if (this.https !== undefined) ports.add(this.port)
    if (this.opts.httpPort !== undefined && this.opts.httpPort !== 0) ports.add(this.opts.httpPort)
    const plain = this.httpTunnelPort
    if (plain !== undefined) ports.add(plain)
    if (this.opts.natsPort !== undefined && this.opts.natsPort !== 0) ports.add(this.opts.natsPort)
    return ports
  }

  private async firstStream (opened: Promise<MuxStream>): Promise<MuxStream> {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`no registration within ${this.opts.handshakeTimeoutMs} ms`)), this.opts.handshakeTimeoutMs)
    })
    try {
      return await Promise.race([opened, timeout])
    } finally {
      clearTimeout(timer)
    }
  }

  /**
   * Stops accepting tunnels and frontend connections; with `drainMs`, lets open frontend
   * connections finish for up to that long; then closes every session and what is left.
   */
  async close ({ drainMs = 0 }: { drainMs?: number } = {}): Promise<void> {
    const https = this.https
    this.https = undefined
    const plainHttp = this.plainHttp
    this.plainHttp = undefined
    const httpsClosed = Promise.all([https, plainHttp].map(async s => await new Promise<void>(resolve => { if (s === undefined) resolve(); else s.close(() => resolve()) })))
    const services = [...this.registry.services.values()]
    const stopped = Promise.all(services.map(async s => await s.frontend.stopAccepting()))
    if (drainMs > 0) {
      const open = (): number => services.reduce((n, s) => n + s.frontend.connections, 0)
      if (open() > 0) this.log.info(`draining ${open()} open connections for up to ${drainMs} ms`)
      const deadline = Date.now() + drainMs
      while (open() > 0 && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 100))
      if (open() > 0) this.log.warn(`drain period over; closing ${open()} connections still open`)
    }
    for (const c of this.carriers) c.close(1001)
    await Promise.all([...this.carriers].map(async c => await new Promise<void>(resolve => {
      const t = setTimeout(() => { c.terminate(); resolve() }, 2000)
      void c.closed.then(() => { clearTimeout(t); resolve() })
    })))
    // The other nodes' links to us hold the API port open until they are closed too.
    const cluster = this.clusterNode
    this.clusterNode = undefined
    await cluster?.close()
    this.httpTunnel.close()
    https?.closeAllConnections()
    plainHttp?.closeAllConnections()
    for (const s of [...services, ...this.registry.services.values()]) s.frontend.destroyConnections()
    await Promise.all([httpsClosed, stopped])
    this.registry.close()
    const endpoints = this.endpoints
    this.endpoints = undefined
    await endpoints?.close()
  }
}

/** What a tunnel session runs on: a WebSocket, or an HTTP-transport session (server/http-tunnel.ts). */
interface Carrier {
  transport: TransportName
  /** The byte stream the end-to-end layer's TLS runs on. */
  bytes: () => Duplex
  /** The link (muxer) on it; over opts.inner when the end-to-end layer runs. */
  open: (opts: LinkOptions) => Link
  readonly closed: Promise<void>
  /** Closes in an orderly way; a carrier that does not finish is cut after 2 s. */
  close: (code: number) => void
  terminate: () => void
}

function webSocketCarrier (ws: WebSocketConnection): Carrier {
  return {
    transport: 'websocket',
    bytes: () => new MessageDuplex(ws),
    open: (opts) => openLink(ws, opts),
    closed: new Promise<void>(resolve => { if (ws.readyState === ws.CLOSED) resolve(); else ws.once('close', () => resolve()) }),
    close: (code) => { ws.close(code) },
    terminate: () => ws.terminate()
  }
}

function httpCarrier (session: HttpTunnelSession): Carrier {
  return {
    transport: 'http',
    bytes: () => session,
    open: ({ keepaliveMs: _k, onDead: _d, ...opts }) => openStreamLink(session, opts),
    closed: new Promise<void>(resolve => { if (session.destroyed) resolve(); else session.once('close', () => resolve()) }),
    close: () => {
      if (session.destroyed) return
      session.end()
      setTimeout(() => session.destroy(), 2000).unref()
    },
    terminate: () => session.destroy()
  }
}
