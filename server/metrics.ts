import { monitorEventLoopDelay } from 'node:perf_hooks'
import { Counter, Gauge, Histogram, Registry } from 'prom-client'
import type { ServerEvents } from './events.js'
import type { ServiceRegistry } from './registry.js'
import type { EventEmitter } from 'node:events'
import type { IntervalHistogram } from 'node:perf_hooks'

/**
 * Prometheus metrics of one TunnelServer, in a Registry of its own so that two servers in one
 * process do not clash. Gauges are read from the registry at scrape time; counters follow the
 * server's events. Names are documented in docs/server-endpoints.md.
 */
export class ServerMetrics {
  readonly registry = new Registry()
  private readonly events: EventEmitter<ServerEvents>
  private readonly loop: IntervalHistogram
  private readonly unsubscribe: Array<() => void> = []

  /** `cluster`: sessions are also counted by the node that holds them. */
  constructor (events: EventEmitter<ServerEvents>, services: ServiceRegistry, cluster = false) {
    this.events = events
    const registers = [this.registry]
    const perService = (): Map<string, { sessions: number, active: number }> => {
      const out = new Map<string, { sessions: number, active: number }>()
      for (const s of services.services.values()) {
        const list = s.sessions
        out.set(s.name, { sessions: list.length, active: list.reduce((n, x) => n + x.activeConnections, 0) })
      }
      return out
    }
    new Gauge({
      name: 'reverselb_services',
      help: 'Services with at least one session (each has a frontend port).',
      registers,
      collect () { this.set(services.services.size) }
    })
    new Gauge({
      name: 'reverselb_sessions',
      help: 'Connected tunnel client sessions, by service.',
      labelNames: ['service'],
      registers,
      collect () {
        this.reset()
        for (const [name, v] of perService()) this.set({ service: name }, v.sessions)
      }
    })
    if (cluster) {
      new Gauge({
        name: 'reverselb_cluster_sessions',
        help: 'Tunnel client sessions in the cluster, by the node they are connected to and service.',
        labelNames: ['node', 'service'],
        registers,
        collect () {
          this.reset()
          for (const s of services.services.values()) {
            for (const x of s.sessions) this.inc({ node: x.node ?? '', service: s.name })
          }
        }
      })
    }
    new Gauge({
      name: 'reverselb_client_connections',
      help: 'Tunnel client connections carrying at least one session, by transport (websocket, http) and end-to-end layer (true, false).',
      labelNames: ['transport', 'e2e'],
      registers,
      collect () {
        this.reset()
        const seen = new Set<string>()
        for (const s of services.services.values()) {
          for (const { connection } of s.sessions) {
            if (seen.has(connection.id)) continue
            seen.add(connection.id)
            this.inc({ transport: connection.transport, e2e: String(connection.e2e) })
          }
        }
      }
    })
    new Gauge({
      name: 'reverselb_frontend_connections_active',
      help: 'Frontend connections being relayed now, by service.',
      labelNames: ['service'],
      registers,
      collect () {
        this.reset()
        for (const [name, v] of perService()) this.set({ service: name }, v.active)
      }
    })
    const total = new Counter({
      name: 'reverselb_frontend_connections_total',
      help: 'Frontend connections handed to a session, by service.',
      labelNames: ['service'],
      registers
    })
    const rejected = new Counter({
      name: 'reverselb_frontend_connections_rejected_total',
      help: 'Frontend connections closed because no session could take them, by service.',
      labelNames: ['service'],
      registers
    })
    const bytes = new Counter({
      name: 'reverselb_frontend_bytes_total',
      help: 'Bytes relayed by closed frontend connections, by service and direction (in: frontend to backend, out: backend to frontend).',
      labelNames: ['service', 'direction'],
      registers
    })
    const dialFailures = new Counter({
      name: 'reverselb_dial_failures_total',
      help: 'Times a session could not reach its backend for a frontend connection, by service.',
      labelNames: ['service'],
      registers
    })
    const authFailures = new Counter({
      name: 'reverselb_auth_failures_total',
      help: 'Requests refused for a wrong or missing token, by endpoint (tunnel or http).',
      labelNames: ['endpoint'],
      registers
    })
    authFailures.inc({ endpoint: 'tunnel' }, 0)
    authFailures.inc({ endpoint: 'http' }, 0)
    this.httpAuthFailure = () => authFailures.inc({ endpoint: 'http' })
    const refused = new Counter({
      name: 'reverselb_registrations_refused_total',
      help: 'Registrations refused (invalid, port taken, pool empty).',
      registers
    })
    const sessionsOpened = new Counter({
      name: 'reverselb_sessions_opened_total',
      help: 'Sessions that registered successfully.',
      registers
    })
    const registration = new Histogram({
      name: 'reverselb_registration_duration_seconds',
      help: 'Time from reading a registration to the service being ready (frontend listening).',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers
    })

    this.loop = monitorEventLoopDelay({ resolution: 10 })
    this.loop.enable()
    const loop = this.loop
    // Like prom-client's default nodejs_eventloop_lag_* metrics, but owned (and stopped) by this server.
    new Gauge({
      name: 'reverselb_event_loop_lag_seconds',
      help: 'Event loop delay since the previous scrape, by quantile (0.5, 0.9, 0.99, 1 = max).',
      labelNames: ['quantile'],
      registers,
      collect () {
        const q = (p: number): number => (Number.isFinite(loop.percentile(p)) ? loop.percentile(p) : 0) / 1e9
        this.set({ quantile: '0.5' }, q(50))
        this.set({ quantile: '0.9' }, q(90))
        this.set({ quantile: '0.99' }, q(99))
        this.set({ quantile: '1' }, Number.isFinite(loop.max) ? loop.max / 1e9 : 0)
        loop.reset()
      }
    })

    this.on('sessionOpened', ({ registrationMs }) => { sessionsOpened.inc(); registration.observe(registrationMs / 1000) })
    this.on('connectionOpened', ({ service }) => total.inc({ service: service.name }))
    this.on('connectionClosed', ({ service, bytesIn, bytesOut }) => {
      bytes.inc({ service: service.name, direction: 'in' }, bytesIn)
      bytes.inc({ service: service.name, direction: 'out' }, bytesOut)
    })
    this.on('connectionRejected', ({ service }) => rejected.inc({ service: service.name }))
    this.on('dialFailure', ({ service }) => dialFailures.inc({ service: service.name }))
    this.on('authFailure', () => authFailures.inc({ endpoint: 'tunnel' }))
    this.on('registrationRefused', () => refused.inc())
  }

  /** Counts a request the HTTP API refused for its token. */
  readonly httpAuthFailure: () => void

  get contentType (): string {
    return this.registry.contentType
  }

  async text (): Promise<string> {
    return await this.registry.metrics()
  }

  close (): void {
    for (const off of this.unsubscribe) off()
    this.unsubscribe.length = 0
    this.loop.disable()
  }

  private on<K extends keyof ServerEvents> (name: K, listener: (...args: ServerEvents[K]) => void): void {
    const l = listener as never
    this.events.on(name, l)
    this.unsubscribe.push(() => this.events.off(name, l))
  }
}
