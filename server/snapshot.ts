import type { ServerEvents } from './events.js'
import type { ServiceRegistry } from './registry.js'
import type { Service } from './service.js'
import type { ServerSession, TransportName } from './session.js'
import type { TrafficTracker } from './traffic.js'

/*
 * The JSON the REST API, the dashboard (SSE) and NATS publish. Everything that leaves the server
 * is built here and only from chosen fields: the registration a client sent is never copied
 * whole, so no token can slip out. Shapes are documented in docs/server-endpoints.md.
 */

export interface SessionJson {
  id: string
  instance: string
  clientAddress: string
  muxer: string
  connectedSince: string
  closing: boolean
  activeConnections: number
  totalConnections: number
  /** Frontend -> backend. */
  bytesIn: number
  /** Backend -> frontend. */
  bytesOut: number
  target: { port: number, addresses: string[] }
  /** The client connection this session's registration came on: what carries it, and every service it carries. */
  connection: { id: string, transport: TransportName, e2e: boolean, services: string[] }
  /** The cluster node its client is connected to (with --cluster). */
  node?: string
}

export interface ServiceJson {
  name: string
  frontend: { address: string, port: number }
  instances: Array<{ name: string, sessions: number }>
  activeConnections: number
  totalConnections: number
  bytesIn: number
  bytesOut: number
  sessions: SessionJson[]
}

export interface ServicesJson {
  time: string
  services: ServiceJson[]
}

export interface SnapshotContext {
  registry: ServiceRegistry
  traffic: TrafficTracker
  /** Where frontends listen: the --frontendhost, '*' for all interfaces. */
  frontendAddress: string
}

export function sessionJson (ctx: SnapshotContext, service: Service, session: ServerSession): SessionJson {
  const bytes = ctx.traffic.sessionBytes(service, session)
  return {
    id: session.id,
    instance: session.instance,
    clientAddress: session.remoteAddress,
    muxer: session.muxerName,
    connectedSince: session.connectedAt.toISOString(),
    closing: session.closing,
    activeConnections: session.activeConnections,
    totalConnections: session.totalConnections,
    bytesIn: bytes.bytesIn,
    bytesOut: bytes.bytesOut,
    target: { port: session.registration.targetPort, addresses: [...session.registration.targetAddresses] },
    connection: { id: session.connection.id, transport: session.connection.transport, e2e: session.connection.e2e, services: session.connection.services() },
    ...(session.node !== undefined ? { node: session.node } : {})
  }
}

export function serviceJson (ctx: SnapshotContext, service: Service): ServiceJson {
  const sessions = service.sessions
  const bytes = ctx.traffic.serviceBytes(service)
  return {
    name: service.name,
    frontend: { address: ctx.frontendAddress, port: service.port },
    instances: [...service.instances].map(([name, list]) => ({ name, sessions: list.length })),
    activeConnections: sessions.reduce((n, s) => n + s.activeConnections, 0),
    totalConnections: ctx.traffic.totalConnections(service),
    bytesIn: bytes.bytesIn,
    bytesOut: bytes.bytesOut,
    sessions: sessions.map(s => sessionJson(ctx, service, s))
  }
}

export function servicesJson (ctx: SnapshotContext): ServicesJson {
  const services = [...ctx.registry.services.values()].sort((a, b) => a.name.localeCompare(b.name))
  return { time: new Date().toISOString(), services: services.map(s => serviceJson(ctx, s)) }
}

// ---- lifecycle events (NATS subjects reverselb.<name>, SSE event names) ----

export const EVENT_NAMES = {
  serviceUp: 'service.up',
  serviceDown: 'service.down',
  sessionOpened: 'session.join',
  sessionClosed: 'session.leave',
  connectionOpened: 'connection.open',
  connectionClosed: 'connection.close',
  connectionRejected: 'connection.rejected',
  dialFailure: 'dial.failure',
  authFailure: 'auth.failure',
  registrationRefused: 'registration.refused'
} as const satisfies Record<keyof ServerEvents, string>

export type EventName = typeof EVENT_NAMES[keyof typeof EVENT_NAMES]

export interface EventJson {
  event: EventName
  time: string
  [field: string]: unknown
}

const svc = (s: Service): { name: string, port: number } => ({ name: s.name, port: s.port })
const ses = (s: ServerSession): { id: string, instance: string, clientAddress: string, muxer: string } =>
  ({ id: s.id, instance: s.instance, clientAddress: s.remoteAddress, muxer: s.muxerName })

/** The JSON for one ServerEvents event (its `event` field is the subject suffix). */
export function eventJson<K extends keyof ServerEvents> (name: K, ...args: ServerEvents[K]): EventJson {
  const base = { event: EVENT_NAMES[name], time: new Date().toISOString() }
  const a = args[0] as ServerEvents[keyof ServerEvents][0]
  switch (name) {
    case 'serviceUp':
    case 'serviceDown': {
      const e = a as ServerEvents['serviceUp'][0]
      return { ...base, service: svc(e.service) }
    }
    case 'sessionOpened': {
      const e = a as ServerEvents['sessionOpened'][0]
      return { ...base, service: svc(e.service), session: ses(e.session), registrationMs: e.registrationMs }
    }
    case 'sessionClosed': {
      const e = a as ServerEvents['sessionClosed'][0]
      return {
        ...base,
        service: svc(e.service),
        session: {
          ...ses(e.session),
          connectedSince: e.session.connectedAt.toISOString(),
          totalConnections: e.session.totalConnections,
          bytesIn: e.session.bytesIn,
          bytesOut: e.session.bytesOut
        }
      }
    }
    case 'connectionOpened': {
      const e = a as ServerEvents['connectionOpened'][0]
      return { ...base, service: svc(e.service), session: { id: e.session.id }, sourceAddress: e.sourceAddress }
    }
    case 'connectionClosed': {
      const e = a as ServerEvents['connectionClosed'][0]
      return {
        ...base,
        service: svc(e.service),
        session: { id: e.session.id },
        sourceAddress: e.sourceAddress,
        bytesIn: e.bytesIn,
        bytesOut: e.bytesOut,
        ...(e.error !== undefined ? { error: e.error } : {})
      }
    }
    case 'connectionRejected': {
      const e = a as ServerEvents['connectionRejected'][0]
      return { ...base, service: svc(e.service), sourceAddress: e.sourceAddress }
    }
    case 'dialFailure': {
      const e = a as ServerEvents['dialFailure'][0]
      return { ...base, service: svc(e.service), session: { id: e.session.id }, sourceAddress: e.sourceAddress, error: e.error }
    }
    case 'authFailure': {
      const e = a as ServerEvents['authFailure'][0]
      return { ...base, endpoint: 'tunnel', remoteAddress: e.remoteAddress }
    }
    case 'registrationRefused': {
      const e = a as ServerEvents['registrationRefused'][0]
      return { ...base, remoteAddress: e.remoteAddress, reason: e.reason }
    }
  }
  throw new Error(`unknown server event ${String(name)}`)
}

/** An auth failure on the HTTP API (not a ServerEvents event: the API reports it itself). */
export function httpAuthFailureJson (remoteAddress: string): EventJson {
  return { event: 'auth.failure', time: new Date().toISOString(), endpoint: 'http', remoteAddress }
}
