import { ReverselbError } from '../protocol/index.js'
import { createServer as createHttpServer } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import { bearerToken } from './auth.js'
import { guardConnections, requestTimeouts } from './conn-guard.js'
import { DASHBOARD_CSP, DASHBOARD_HTML } from './dashboard-page.js'
import { serviceJson, servicesJson } from './snapshot.js'
import { RemoteSession } from './cluster/remote-session.js'
import type { Logger } from '../protocol/index.js'
import type { AuthFailureLimiter } from './auth-limiter.js'
import type { TokenAuth } from './auth.js'
import type { ServerMetrics } from './metrics.js'
import type { ClusterJson } from './cluster/cluster-json.js'
import type { EventJson, SnapshotContext } from './snapshot.js'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface HttpApiOptions {
  port: number
  host?: string
  /** Serve HTTPS with this certificate instead of plain HTTP. */
  tls?: { cert: string, key: string }
  auth: TokenAuth
  /** Failed authorizations per address (its own table: the tunnel port keeps another). */
  limiter: AuthFailureLimiter
  snapshot: SnapshotContext
  metrics: ServerMetrics
  log: Logger
  /** Called for every request refused with 401. */
  onAuthFailure: (remoteAddress: string) => void
  /** How often /events sends a snapshot. Default 1 s. */
  snapshotIntervalMs?: number
  /** Time a client has to send a whole request; incomplete ones are closed. Default 10 s. */
  requestTimeoutMs?: number
  /** Connections one address may hold open. Default 128. */
  maxConnectionsPerAddress?: number
  /** The cluster's nodes, with --cluster. */
  cluster?: () => ClusterJson
}

type Params = Record<string, string>

function clusterRoute (describe: () => ClusterJson): ApiRoute {
  return { method: 'GET', path: '/cluster', auth: true, description: 'the cluster: its nodes, and the sessions each holds', handle: (_q, res) => json(res, 200, describe()) }
}

interface ApiRoute {
  method: 'GET' | 'DELETE'
  /** Literal segments and `:name` parameters. */
  path: string
  auth: boolean
  description: string
  handle: (req: IncomingMessage, res: ServerResponse, params: Params) => void | Promise<void>
}

/** Lifecycle events the dashboard stream forwards (per-connection events only show in the counters). */
export const STREAMED_EVENTS: ReadonlySet<string> = new Set(['service.up', 'service.down', 'session.join', 'session.leave', 'auth.failure', 'registration.refused'])
const MAX_STREAM_CLIENTS = 64
/** Lifecycle events kept to replay to a dashboard that connects later. */
const RECENT_EVENTS = 30
/** A stream client that lets this much pile up is too slow and is dropped. */
const MAX_STREAM_BACKLOG = 1 << 20

/**
 * The REST API, dashboard, live event stream and Prometheus metrics on --httpport. Every route
 * but the dashboard shell and /healthz needs `Authorization: Bearer <token>`.
 */
export class HttpApi {
  private readonly opts: HttpApiOptions
  private readonly server: Server
  private readonly routes: ApiRoute[]
  private readonly streams = new Set<ServerResponse>()
  private readonly recent: EventJson[] = []
  private streamTimer?: NodeJS.Timeout
  private pendingSnapshot?: NodeJS.Timeout

  constructor (opts: HttpApiOptions) {
    this.opts = opts
    this.routes = [
      { method: 'GET', path: '/', auth: false, description: 'dashboard page (asks for the token itself)', handle: (_q, res) => this.page(res) },
      { method: 'GET', path: '/healthz', auth: false, description: 'liveness: {"status":"ok"}', handle: (_q, res) => json(res, 200, { status: 'ok' }) },
      { method: 'GET', path: '/help', auth: true, description: 'this list of routes', handle: (_q, res) => json(res, 200, { routes: this.help() }) },
      { method: 'GET', path: '/services', auth: true, description: 'every service with its sessions and counters', handle: (_q, res) => json(res, 200, servicesJson(opts.snapshot)) },
      { method: 'GET', path: '/services/:name', auth: true, description: 'one service', handle: (_q, res, p) => this.service(res, p) },
      { method: 'DELETE', path: '/services/:name/sessions/:id', auth: true, description: 'disconnect one tunnel client session', handle: (_q, res, p) => this.disconnect(res, p) },
      ...(opts.cluster !== undefined ? [clusterRoute(opts.cluster)] : []),
      { method: 'GET', path: '/events', auth: true, description: 'Server-Sent Events: recent and new lifecycle events, a snapshot every second', handle: (req, res) => this.stream(req, res) },
      { method: 'GET', path: '/metrics', auth: true, description: 'Prometheus metrics (text exposition format)', handle: async (_q, res) => await this.metrics(res) }
    ]
    const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
      this.onRequest(req, res).catch((err: Error) => {
        opts.log.error(`HTTP API ${req.method ?? '?'} ${pathOf(req)} failed: ${err.message}`)
        if (!res.headersSent) json(res, 500, { error: 'internal error' }); else res.destroy()
      })
    }
    const limits = requestTimeouts(opts.requestTimeoutMs ?? 10_000)
    this.server = opts.tls !== undefined
      ? createHttpsServer({ ...limits, handshakeTimeout: limits.headersTimeout, cert: opts.tls.cert, key: opts.tls.key }, onRequest)
      : createHttpServer(limits, onRequest)
    this.server.on('clientError', (_err, socket) => { socket.destroy() })
    guardConnections(this.server, { perAddress: opts.maxConnectionsPerAddress ?? 128, what: 'HTTP API port', log: opts.log })
  }

  get port (): number {
    return (this.server.address() as AddressInfo).port
  }

  async listen (): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => reject(new ReverselbError('ERR_REVERSELB_LISTEN', `cannot listen on HTTP port ${this.opts.port}: ${err.code ?? err.message}`))
      this.server.once('error', onError)
      this.server.listen({ port: this.opts.port, host: this.opts.host }, () => { this.server.off('error', onError); resolve() })
    })
    const scheme = this.opts.tls !== undefined ? 'https' : 'http'
    this.opts.log.info(`HTTP API and dashboard listening on ${scheme}://${this.opts.host ?? '[::]'}:${this.port}/`)
  }

  /** A lifecycle event: forwarded to dashboard streams, which also get a fresh snapshot soon. */
  event (e: EventJson): void {
    if (!STREAMED_EVENTS.has(e.event)) return
    this.recent.push(e)
    if (this.recent.length > RECENT_EVENTS) this.recent.shift()
    if (this.streams.size === 0) return
    this.broadcast(e.event, e)
    this.pendingSnapshot ??= setTimeout(() => { this.pendingSnapshot = undefined; this.broadcastSnapshot() }, 50)
  }

  async close (): Promise<void> {
    clearInterval(this.streamTimer)
    clearTimeout(this.pendingSnapshot)
    for (const res of this.streams) res.end()
    this.streams.clear()
    const closed = new Promise<void>(resolve => this.server.close(() => resolve()))
    this.server.closeAllConnections()
    if (this.server.listening) await closed
  }

  private async onRequest (req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = pathOf(req)
    const method = req.method === 'HEAD' ? 'GET' : req.method
    const candidates = this.routes.filter(r => match(r.path, path) !== undefined)
    if (candidates.length === 0) { json(res, 404, { error: `no route for ${path}; GET /help lists them` }); return }
    const route = candidates.find(r => r.method === method)
    if (route === undefined) {
      res.setHeader('allow', [...new Set(candidates.map(r => r.method === 'GET' ? 'GET, HEAD' : r.method))].join(', '))
      json(res, 405, { error: `${req.method ?? '?'} is not allowed on ${path}` })
      return
    }
    const params = match(route.path, path) ?? {}
    if (route.auth && !this.authorized(req, res)) return
    await route.handle(req, res, params)
  }

  /**
   * Only tokens that may register every service open the API: it shows and disconnects every
   * service's sessions. Addresses that fail too often are refused for a while (429).
   */
  private authorized (req: IncomingMessage, res: ServerResponse): boolean {
    const from = req.socket.remoteAddress ?? '?'
    const blockedMs = this.opts.limiter.blockedFor(from)
    if (blockedMs > 0) {
      res.setHeader('retry-after', String(Math.ceil(blockedMs / 1000)))
      json(res, 429, { error: `too many failed authorizations from this address; retry in ${Math.ceil(blockedMs / 1000)} s` })
      return false
    }
    const grant = this.opts.auth.identify(bearerToken(req))
    if (grant === undefined) {
      if (this.opts.limiter.fail(from)) this.opts.log.warn(`HTTP API: too many failed authorizations from ${from}; refusing it for a while`)
      this.opts.onAuthFailure(from)
      res.setHeader('www-authenticate', 'Bearer realm="reverselb"')
      json(res, 401, { error: 'authorization required: send "Authorization: Bearer <token>"' })
      return false
    }
    if (grant.services !== undefined || grant.ports !== undefined) {
      json(res, 403, { error: 'this token may only register some services or ports; the API needs a token without a service list or ports=' })
      return false
    }
    return true
  }

  private help (): Array<{ method: string, path: string, auth: boolean, description: string }> {
    return this.routes.map(r => ({ method: r.method, path: r.path, auth: r.auth, description: r.description }))
  }

  private page (res: ServerResponse): void {
    res.writeHead(200, {
      'content-type': 'text/html; charset=utf-8',
      'content-security-policy': DASHBOARD_CSP,
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
      'x-frame-options': 'DENY'
    }).end(DASHBOARD_HTML)
  }

  private service (res: ServerResponse, p: Params): void {
    const service = this.opts.snapshot.registry.services.get(p.name)
    if (service === undefined) { json(res, 404, { error: `no service named "${p.name}"` }); return }
    json(res, 200, serviceJson(this.opts.snapshot, service))
  }

  private disconnect (res: ServerResponse, p: Params): void {
    const service = this.opts.snapshot.registry.services.get(p.name)
    if (service === undefined) { json(res, 404, { error: `no service named "${p.name}"` }); return }
    const session = service.sessions.find(s => s.id === p.id)
    if (session === undefined) { json(res, 404, { error: `service "${p.name}" has no session ${p.id}` }); return }
    if (session instanceof RemoteSession) { json(res, 409, { error: `session ${session.id} is connected to node ${String(session.node)}: ask that node's API` }); return }
    this.opts.log.info(`HTTP API: disconnecting session ${session.id} of service ${service.name} (${session.remoteAddress})`)
    session.close()
    json(res, 202, { service: service.name, session: session.id, status: 'closing' })
  }

  private async metrics (res: ServerResponse): Promise<void> {
    const text = await this.opts.metrics.text()
    res.writeHead(200, { 'content-type': this.opts.metrics.contentType, 'cache-control': 'no-store' }).end(text)
  }

  private stream (req: IncomingMessage, res: ServerResponse): void {
    if (this.streams.size >= MAX_STREAM_CLIENTS) { json(res, 503, { error: 'too many event streams open' }); return }
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      'x-accel-buffering': 'no'
    })
    if (req.method === 'HEAD') { res.end(); return }
    res.socket?.setNoDelay(true)
    this.streams.add(res)
    res.once('close', () => {
      this.streams.delete(res)
      if (this.streams.size === 0) { clearInterval(this.streamTimer); this.streamTimer = undefined }
    })
    res.write('retry: 3000\n\n')
    for (const e of this.recent) this.send(res, e.event, e)
    this.send(res, 'snapshot', servicesJson(this.opts.snapshot))
    this.streamTimer ??= setInterval(() => this.broadcastSnapshot(), this.opts.snapshotIntervalMs ?? 1000)
  }

  private broadcastSnapshot (): void {
    if (this.streams.size > 0) this.broadcast('snapshot', servicesJson(this.opts.snapshot))
  }

  private broadcast (event: string, data: unknown): void {
    for (const res of this.streams) this.send(res, event, data)
  }

  private send (res: ServerResponse, event: string, data: unknown): void {
    if (res.writableLength > MAX_STREAM_BACKLOG) { this.opts.log.warn('dropping a dashboard event stream that does not keep up'); res.destroy(); return }
    res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`)
  }
}

function json (res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' })
    .end(JSON.stringify(body, null, 2) + '\n')
}

function pathOf (req: IncomingMessage): string {
  const url = req.url ?? '/'
  const q = url.indexOf('?')
  return q < 0 ? url : url.slice(0, q)
}

/** Matches `/a/:x/b` against a path; parameters are percent-decoded (so names may hold '/'). */
function match (pattern: string, path: string): Params | undefined {
  const want = pattern.split('/')
  const got = path.split('/')
  if (want.length !== got.length) return undefined
  const params: Params = {}
  for (let i = 0; i < want.length; i++) {
    if (want[i].startsWith(':')) {
      if (got[i] === '') return undefined
      try { params[want[i].slice(1)] = decodeURIComponent(got[i]) } catch { return undefined }
    } else if (want[i] !== got[i]) {
      return undefined
    }
  }
  return params
}
