import { InvalidOptionError } from '../protocol/index.js'
import { readFile } from 'node:fs/promises'
import { AuthFailureLimiter } from './auth-limiter.js'
import { HttpApi, STREAMED_EVENTS } from './http-api.js'
import { DEFAULT_LIMITS } from './limits.js'
import { ServerMetrics } from './metrics.js'
import { NatsPublisher } from './nats-publisher.js'
import { NatsServerProcess } from './nats-server-process.js'
import { EVENT_NAMES, eventJson, httpAuthFailureJson } from './snapshot.js'
import { TrafficTracker } from './traffic.js'
import type { Logger } from '../protocol/index.js'
import type { TokenAuth } from './auth.js'
import type { ServerCertificate } from './certificate.js'
import type { ServerEvents } from './events.js'
import type { Limits } from './limits.js'
import type { ServiceRegistry } from './registry.js'
import type { ClusterNode } from './cluster/cluster-node.js'
import { clusterJson } from './cluster/cluster-json.js'
import type { Service } from './service.js'
import type { EventJson } from './snapshot.js'
import type { EventEmitter } from 'node:events'
import type { Socket } from 'node:net'

/** The side endpoints' part of TunnelServerOptions. */
export interface OperatorEndpointOptions {
  /** REST API, dashboard and /metrics port; 0 or undefined: off. */
  httpPort?: number
  /** Serve the HTTP port as HTTPS with the server's certificate. */
  httpsTls?: boolean
  /** Run and supervise a nats-server (TLS, token auth) on this port and publish events to it; 0 or undefined: off. */
  natsPort?: number
  /** Publish events to this existing NATS server instead (nats://[user:pass@|token@]host:port, tls://...). */
  natsUrl?: string
  /** PEM file of the CA that signed the --natsurl server's certificate (default: system roots). */
  natsCa?: string
}

export interface OperatorEndpointContext extends OperatorEndpointOptions {
  host?: string
  frontendHost?: string
  /** The token NATS authenticates with (one: nats-server takes a single token). */
  token: string
  auth: TokenAuth
  /** The operator's limits; the auth failure rate limit and the connections per address apply to the HTTP API too. */
  limits?: Partial<Limits>
  /** The tunnel port's time for TLS and the request; the HTTP API allows as long for a request. */
  handshakeTimeoutMs?: number
  certificate: ServerCertificate
  registry: ServiceRegistry
  /** This server's cluster node: events go to the cluster's NATS, and the API shows the cluster. */
  cluster?: ClusterNode
  log: Logger
}

/** The REST API/dashboard/metrics and NATS endpoints of one TunnelServer. */
export class OperatorEndpoints {
  private readonly traffic = new TrafficTracker()
  private readonly unsubscribe: Array<() => void> = []
  private metrics?: ServerMetrics
  private http?: HttpApi
  private natsServer?: NatsServerProcess
  private nats?: NatsPublisher

  private constructor (private readonly events: EventEmitter<ServerEvents>, private readonly ctx: OperatorEndpointContext) {}

  /** Starts whatever the options ask for; undefined when they ask for nothing. */
  static async start (events: EventEmitter<ServerEvents>, ctx: OperatorEndpointContext): Promise<OperatorEndpoints | undefined> {
    const httpPort = ctx.httpPort ?? 0
    const natsPort = ctx.natsPort ?? 0
    const natsUrl = ctx.natsUrl ?? ''
    if (httpPort === 0 && natsPort === 0 && natsUrl === '' && ctx.cluster === undefined) return undefined
    if (natsPort !== 0 && natsUrl !== '') throw new InvalidOptionError('natsPort and natsUrl exclude each other: run a NATS server or publish to one')
    const endpoints = new OperatorEndpoints(events, ctx)
    try {
      await endpoints.startAll(httpPort, natsPort, natsUrl)
    } catch (err) {
      await endpoints.close()
      throw err
    }
    return endpoints
  }

  /** A frontend socket a service accepted (before dispatch), for live byte counts. */
  frontendConnection (service: Service, socket: Socket): void {
    if (this.http !== undefined) this.traffic.frontendConnection(service, socket)
  }

  private async startAll (httpPort: number, natsPort: number, natsUrl: string): Promise<void> {
    const { ctx } = this
    const firstToken = ctx.token
    const limits = { ...DEFAULT_LIMITS, ...ctx.limits }
    if (httpPort !== 0) {
      this.listen('connectionOpened', this.traffic.connectionOpened)
      this.listen('connectionClosed', this.traffic.connectionClosed)
      this.metrics = new ServerMetrics(this.events, ctx.registry, ctx.cluster !== undefined)
      const cluster = ctx.cluster
      this.http = new HttpApi({
        port: httpPort,
        host: ctx.host,
        tls: ctx.httpsTls === true ? { cert: ctx.certificate.cert, key: ctx.certificate.key } : undefined,
        auth: ctx.auth,
        limiter: new AuthFailureLimiter(limits.authFailuresPerWindow, limits.authFailureWindowMs),
        snapshot: { registry: ctx.registry, traffic: this.traffic, frontendAddress: ctx.frontendHost ?? '*' },
        metrics: this.metrics,
        log: ctx.log,
        requestTimeoutMs: ctx.handshakeTimeoutMs,
        maxConnectionsPerAddress: limits.maxConnectionsPerAddress,
        ...(cluster !== undefined ? { cluster: () => clusterJson(cluster, ctx.registry) } : {}),
        onAuthFailure: (remoteAddress) => {
          ctx.log.warn(`HTTP API: authorization failed for ${remoteAddress}`)
          this.metrics?.httpAuthFailure()
          this.deliver(httpAuthFailureJson(remoteAddress))
        }
      })
      await this.http.listen()
    }
    if (natsPort !== 0) {
      this.natsServer = new NatsServerProcess({
        port: natsPort,
        host: ctx.host,
        cert: ctx.certificate.cert,
        key: ctx.certificate.key,
        token: firstToken,
        log: ctx.log
      })
      await this.natsServer.start()
      this.nats = await NatsPublisher.connect({
        url: `tls://${localAddress(ctx.host)}:${natsPort}`,
        token: firstToken,
        ca: ctx.certificate.cert,
        fingerprint: ctx.certificate.fingerprint,
        log: ctx.log
      })
    } else if (ctx.cluster !== undefined) {
      this.nats = NatsPublisher.overCluster(ctx.cluster.natsConnection, ctx.cluster.name, ctx.log)
    } else if (natsUrl !== '') {
      const ca = ctx.natsCa !== undefined ? await readFile(ctx.natsCa, 'utf8') : undefined
      this.nats = await NatsPublisher.connect({ url: natsUrl, ca, log: ctx.log })
    }
    // Without NATS only the dashboard stream wants events, and not the per-connection ones.
    for (const name of Object.keys(EVENT_NAMES) as Array<keyof ServerEvents>) {
      if (this.nats === undefined && !STREAMED_EVENTS.has(EVENT_NAMES[name])) continue
      this.listen(name, (...args) => this.deliver(eventJson(name, ...args)))
    }
  }

  private deliver (e: EventJson): void {
    this.http?.event(e)
    this.nats?.publish(e)
  }

  private listen<K extends keyof ServerEvents> (name: K, listener: (...args: ServerEvents[K]) => void): void {
    const l = listener as never
    this.events.on(name, l)
    this.unsubscribe.push(() => this.events.off(name, l))
  }

  /** Stops the HTTP API, flushes and closes NATS, then stops nats-server. */
  async close (): Promise<void> {
    for (const off of this.unsubscribe) off()
    this.unsubscribe.length = 0
    await this.http?.close()
    this.metrics?.close()
    await this.nats?.close()
    await this.natsServer?.stop()
  }
}

/** Where this host reaches a port bound to `host`. */
function localAddress (host: string | undefined): string {
  if (host === undefined || host === '' || host === '0.0.0.0' || host === '::') return '127.0.0.1'
  return host.includes(':') ? `[${host}]` : host
}
