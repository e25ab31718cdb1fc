import type { ServerSession } from './session.js'
import type { Service } from './service.js'

/**
 * What a TunnelServer emits, for logs, the REST API, metrics and NATS. Listeners must not throw.
 * `bytesIn` counts frontend -> backend, `bytesOut` backend -> frontend.
 */
export interface ServerEvents {
  serviceUp: [{ service: Service }]
  serviceDown: [{ service: Service }]
  sessionOpened: [{ service: Service, session: ServerSession, registrationMs: number }]
  sessionClosed: [{ service: Service, session: ServerSession }]
  authFailure: [{ remoteAddress: string }]
  registrationRefused: [{ remoteAddress: string, reason: string }]
  connectionOpened: [{ service: Service, session: ServerSession, sourceAddress: string }]
  connectionClosed: [{ service: Service, session: ServerSession, sourceAddress: string, bytesIn: number, bytesOut: number, error?: string }]
  /** A session could not take a connection (its backend refused); the next one is tried. */
  dialFailure: [{ service: Service, session: ServerSession, sourceAddress: string, error: string }]
  /** No session could take a frontend connection; it was closed. */
  connectionRejected: [{ service: Service, sourceAddress: string }]
}
