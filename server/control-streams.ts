import { randomUUID } from 'node:crypto'
import { FEATURE_SERVICES, ProtocolError, StreamResetError, readFrame, splitServiceName, validateTunnelData, writeFrame } from '../protocol/index.js'
import { admit } from './admission.js'
import { RegistrationError } from './registry.js'
import { ServerSession } from './session.js'
import type { Link, Logger, MuxStream, MuxerName, TunnelDataResponse } from '../protocol/index.js'
import type { TokenAuth, TokenGrant } from './auth.js'
import type { Limits } from './limits.js'
import type { PortPool } from './port-pool.js'
import type { PortRanges } from './port-ranges.js'
import type { ServiceRegistry } from './registry.js'
import type { Service } from './service.js'
import type { TransportName } from './session.js'

/** What the server lends each connection's control streams. */
export interface ControlDeps {
  auth: TokenAuth
  limits: Limits
  allowedPorts: () => PortRanges
  pool: PortPool
  reserved: () => ReadonlySet<number>
  registry: ServiceRegistry
  handshakeTimeoutMs: number
  log: Logger
  /** Checks a token sent inside the end-to-end layer (counts failures as at the upgrade). */
  authenticate: (from: string, token: unknown) => TokenGrant
  /** With --cluster: sessions are the node's, and answers list the cluster's endpoints. */
  cluster?: { name: string, endpoints: () => string[] }
  onOpened: (service: Service, session: ServerSession, registrationMs: number) => void
  onClosed: (service: Service, session: ServerSession) => void
  onRefused: (from: string, reason: string) => void
}

export interface ConnectionInfo {
  from: string
  muxerName: MuxerName
  transport: TransportName
  e2e: boolean
  publicHost: string
  /** The token's grant when it came at the upgrade; undefined when it comes inside the end-to-end layer. */
  grant?: TokenGrant
}

/**
 * The control streams of one client connection (one WebSocket or HTTP-transport session): the
 * first registers a service as in the seed's protocol; once the answer advertised `services`, the
 * client may open one more per further service, ending it to unregister that service. Each
 * registration is a ServerSession of its own, so every per-service and per-session limit applies
 * as if it came on its own connection; how many a connection may hold is maxServicesPerAddress.
 */
export class ControlStreams {
  /** The connection's id: what REST shows to group the services one client connection carries. */
  readonly id = randomUUID()
  private readonly deps: ControlDeps
  private readonly info: ConnectionInfo
  private link?: Link
  private readonly sessions = new Map<MuxStream, { service: Service, session: ServerSession }>()
  private pending = 0
  /** Further registrations refused so far. */
  private refusals = 0
  private primarySeen = false
  /** Set by the first registration; later ones use the same token. */
  private grant?: TokenGrant
  private primaryResolve!: (stream: MuxStream) => void
  /** The first control stream, when the client opens it. */
  readonly primary = new Promise<MuxStream>(resolve => { this.primaryResolve = resolve })

  constructor (deps: ControlDeps, info: ConnectionInfo) {
    this.deps = deps
    this.info = info
  }

  get transport (): TransportName {
    return this.info.transport
  }

  get e2e (): boolean {
    return this.info.e2e
  }

  /** The link's `accept`: true for a control stream the client may open now. */
  accept (stream: MuxStream): boolean {
    if (!this.primarySeen) {
      this.primarySeen = true
      this.primaryResolve(stream)
      return true
    }
    // Only after the first registration succeeded, and no more than one address may register (one
    // beyond, so the client hears why in a refusal rather than from a refused stream).
    if (this.grant === undefined || this.sessions.size + this.pending > this.deps.limits.maxServicesPerAddress) return false
    this.serve(stream, false).catch((err: Error) => this.deps.log.debug(`control stream ${stream.id} from ${this.info.from}: ${err.message}`))
    return true
  }

  /** Starts serving: the link is open and the first control stream arrived. */
  async start (link: Link, primary: MuxStream): Promise<void> {
    this.link = link
    void link.closed.then(() => { for (const s of [...this.sessions.keys()]) this.release(s) })
    await this.serve(primary, true)
  }

  /** The services registered on this connection now, as `service` or `service:instance`. */
  services (): string[] {
    return [...this.sessions.values()].map(({ session }) => label(session))
  }

  /** Closes the connection when its token may no longer register some of its services (after a reload). */
  revalidate (regrant: (grant: TokenGrant) => TokenGrant | undefined): void {
    if (this.grant === undefined || this.link === undefined) return
    const grant = regrant(this.grant)
    const refused = grant === undefined
      ? 'its token was removed'
      : [...this.sessions.values()].find(({ service }) => !this.deps.auth.allows(grant, service.name)) !== undefined ? 'its token may no longer register all of its services' : undefined
    if (refused === undefined) { this.grant = grant; return }
    this.deps.log.warn(`closing the connection from ${this.info.from} (services ${this.services().join(', ')}): ${refused}`)
    this.link.close(1008)
  }

  private async serve (control: MuxStream, primary: boolean): Promise<void> {
    const link = this.link
    if (link === undefined) throw new Error('control stream before the link started')
    const { deps, info } = this
    const started = Date.now()
    this.pending++
    let response: TunnelDataResponse
    try {
      const frame = await readFrame(control, { maxBytes: deps.limits.maxControlMessageBytes, timeoutMs: deps.handshakeTimeoutMs, what: 'registration' })
      if (frame.rest.byteLength > 0) throw new ProtocolError('data after the registration')
      const td = validateTunnelData(frame.message)
      // Authenticated before anything is registered, as at the upgrade.
      const held = this.grant ?? info.grant ?? deps.authenticate(info.from, (frame.message as { token?: unknown }).token)
      let grant = held
      const { service: serviceName, instance } = splitServiceName(td.serviceName, td.instanceName)
      const wanted = instance === '' ? serviceName : `${serviceName}:${instance}`
      const session = new ServerSession({
        remoteAddress: info.from, muxerName: info.muxerName, mux: link.mux, registration: td, instance,
        connection: this, node: deps.cluster?.name, close: () => link.close(1001)
      })
      // Checked in the registry's turn: registrations sent at once must not all pass before any counts.
      const service = await deps.registry.register(session, td.frontendData.port, () => {
        // A reload may have replaced the token list since the token was checked (a grant's index may
        // now be another token's): its current grant, if it still has one.
        const current = deps.auth.regrant(held)
        if (current === undefined) throw new RegistrationError('this token was removed (the server reloaded its tokens)')
        grant = current
        admit(td, {
          auth: deps.auth, grant, from: info.from, limits: deps.limits, allowedPorts: deps.allowedPorts(), pool: deps.pool,
          reserved: deps.reserved(), registry: deps.registry
        })
        if (this.services().includes(wanted)) throw new RegistrationError(`service "${wanted}" is already registered on this connection`)
      })
      this.grant ??= grant
      this.sessions.set(control, { service, session })
      // The connection may have gone while the registration waited its turn.
      void link.closed.then(() => this.release(control))
      response = {
        id: session.id, serviceName: td.serviceName, frontendPort: service.port, frontendAddress: info.publicHost, features: [FEATURE_SERVICES],
        ...(deps.cluster !== undefined ? { endpoints: deps.cluster.endpoints() } : {})
      }
      deps.log.info(`session ${session.id} from ${info.from} registered service ${td.serviceName} on port ${service.port} (${info.muxerName}${info.e2e ? ', end-to-end layer' : ''}${primary ? '' : `, connection ${this.id}`})`)
      deps.onOpened(service, session, Date.now() - started)
    } catch (err) {
      deps.log.warn(`registration from ${info.from} refused: ${(err as Error).message}`)
      deps.onRefused(info.from, (err as Error).message)
      writeFrame(control, { error: (err as Error).message })
      control.end()
      if (primary) closeAfterRefusal(link, control); else control.attach({ onData: () => control.reset(), onEnd: () => {}, onClose: () => {}, onDrain: () => {} })
      control.resume()
      // A client that keeps asking for what it may not have is cut off, as for refused streams.
      if (!primary && ++this.refusals >= deps.limits.maxRefusedStreams) {
        deps.log.warn(`tunnel client ${info.from}: ${this.refusals} registrations refused on one connection; closing it`)
        link.close(1008)
      }
      return
    } finally {
      this.pending--
    }
    writeFrame(control, response)
    // Nothing more may come on a control stream: anything that does ends the connection, so it can
    // never hold more than the registration. Its end unregisters the service.
    control.attach({
      onData: () => {
        deps.log.warn(`tunnel client ${info.from} sent data on its control stream after registering; closing the session`)
        link.close(1008)
      },
      onEnd: () => this.unregister(control),
      // A lost connection is link.closed's to clean up, after its relay streams were reset: going
      // first here would close the frontend's connections with a FIN (a silent truncation).
      onClose: (err) => { if (!(err instanceof StreamResetError && err.code === 'ERR_REVERSELB_TUNNEL_LOST')) this.unregister(control) },
      onDrain: () => {}
    })
    control.resume()
  }

  /** The client ended a control stream: that service goes; a connection left with none is closed. */
  private unregister (control: MuxStream): void {
    if (!this.sessions.has(control)) return
    this.release(control)
    control.end()
    if (this.sessions.size === 0 && this.pending === 0) this.link?.close(1000)
  }

  private release (control: MuxStream): void {
    const entry = this.sessions.get(control)
    if (entry === undefined) return
    this.sessions.delete(control)
    const { service, session } = entry
    session.closing = true
    this.deps.log.info(`session ${session.id} of service ${label(session)} from ${this.info.from} closed`)
    this.deps.registry.unregister(session).catch((err: Error) => this.deps.log.error(`unregister failed: ${err.message}`))
    this.deps.onClosed(service, session)
  }
}

const label = (session: ServerSession): string => {
  const { service } = splitServiceName(session.registration.serviceName)
  return session.instance === '' ? service : `${service}:${session.instance}`
}

/**
 * After a refused first registration nothing more is kept: what else comes (the rest of a refused
 * registration) closes the link at once instead of waiting in the stream (up to its window, 4 MiB
 * with mplex) for the timer; after this turn, when the transport has sent the answer (its close
 * frame would overtake it).
 */
function closeAfterRefusal (link: Link, control: MuxStream): void {
  let closing = false
  const closeSoon = (): void => { if (!closing) { closing = true; setImmediate(() => link.close(1008)) } }
  control.attach({ onData: closeSoon, onEnd: () => {}, onClose: () => {}, onDrain: () => {} })
  setTimeout(() => link.close(1008), 1000).unref()
}
