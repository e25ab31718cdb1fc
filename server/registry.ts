import { ReverselbError, splitServiceName } from '../protocol/index.js'
import { Frontend } from './frontend.js'
import { PortHolds } from './port-holds.js'
import { Service } from './service.js'
import type { LbPolicy } from './balancer.js'
import type { PortPool } from './port-pool.js'
import type { ServerSession } from './session.js'
import type { Socket } from 'node:net'

/** A registration the operator's rules or the current state do not allow; sent to the client verbatim. */
export class RegistrationError extends ReverselbError {
  override name = 'RegistrationError'
  constructor (message: string, options?: ErrorOptions) { super('ERR_REVERSELB_REGISTRATION', message, options) }
}

export interface RegistryOptions {
  pool: PortPool
  frontendHost?: string
  policy: LbPolicy
  /** How long a service's port stays reserved for it after its last session left; 0 = not at all. */
  portGraceMs: number
  onConnection: (service: Service, socket: Socket) => void
  onServiceUp: (service: Service) => void
  onServiceDown: (service: Service) => void
  /**
   * A cluster's port for a service new here (see SharedServices.claimPort); without it the
   * port comes from this server's own pool and services.
   */
  claimPort?: (name: string, requestedPort: number) => Promise<number>
}

/** Services by name, their frontend ports, and the sessions registered to them. */
export class ServiceRegistry {
  readonly services = new Map<string, Service>()
  /** Ports of services that left less than portGraceMs ago. */
  readonly holds = new PortHolds()
  private readonly opts: RegistryOptions
  private closed = false
  // Registrations run one at a time so two sessions of a new service cannot both open a listener.
  private queue: Promise<unknown> = Promise.resolve()

  constructor (opts: RegistryOptions) {
    this.opts = opts
  }

  /**
   * Registers in turn; `admit` runs first, in that turn, so limits that count what is registered
   * (services per address) hold against registrations sent all at once.
   */
  async register (session: ServerSession, requestedPort: number, admit: () => void = () => {}): Promise<Service> {
    const run = this.queue.then(async () => { admit(); return await this.doRegister(session, requestedPort) })
    this.queue = run.catch(() => {})
    return await run
  }

  private async doRegister (session: ServerSession, requestedPort: number): Promise<Service> {
    const { service: name } = splitServiceName(session.registration.serviceName)
    const existing = this.services.get(name)
    if (existing !== undefined) {
      if (requestedPort !== 0 && requestedPort !== existing.port) {
        throw new RegistrationError(`service "${name}" already listens on port ${existing.port}; register it with port ${existing.port} or 0`)
      }
      existing.add(session)
      return existing
    }
    // Its own port, kept since it left, unless it asks for another one now (then that one is freed).
    const held = this.holds.portOf(name)
    if (held !== undefined && requestedPort !== 0 && requestedPort !== held) this.holds.release(name)
    const port = this.holds.reclaim(name) ?? await this.allocate(name, requestedPort)
    let frontend: Frontend
    try {
      frontend = await Frontend.listen(port, this.opts.frontendHost, (socket) => this.opts.onConnection(service, socket))
    } catch (err) {
      this.opts.pool.release(port)
      throw new RegistrationError(`cannot listen on frontend port ${port}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
    }
    const service: Service = new Service(name, port, frontend, this.opts.policy)
    service.add(session)
    this.services.set(name, service)
    this.opts.onServiceUp(service)
    return service
  }

  private async allocate (name: string, requestedPort: number): Promise<number> {
    const { pool, claimPort } = this.opts
    if (claimPort !== undefined) {
      const port = await claimPort(name, requestedPort)
      // The cluster gave the port to this service: a hold of this server for another one is over.
      const holder = this.holds.holderOf(port)
      if (holder !== undefined) this.holds.release(holder.name)
      pool.claim(port)
      return port
    }
    if (requestedPort === 0) {
      const port = pool.take()
      if (port === undefined) throw new RegistrationError(`no free port left in the dynamic pool ${pool.first}-${pool.first + pool.count - 1}`)
      return port
    }
    for (const other of this.services.values()) {
      if (other.port === requestedPort) throw new RegistrationError(`port ${requestedPort} is already used by service "${other.name}"`)
    }
    const holder = this.holds.holderOf(requestedPort)
    if (holder !== undefined) {
      throw new RegistrationError(`port ${requestedPort} is reserved for service "${holder.name}" for another ${Math.ceil(holder.remainingMs / 1000)} s: its clients left recently and may come back`)
    }
    pool.claim(requestedPort)
    return requestedPort
  }

  /**
   * Removes a session; the last one of a service closes its listener, and its port stays reserved
   * for it for the grace period (taken from here on, so no other registration slips in between).
   */
  async unregister (session: ServerSession): Promise<void> {
    const { service: name } = splitServiceName(session.registration.serviceName)
    const service = this.services.get(name)
    if (service === undefined || !service.remove(session)) return
    this.services.delete(name)
    const { pool, portGraceMs } = this.opts
    this.holds.hold(name, service.port, this.closed ? 0 : portGraceMs, () => pool.release(service.port))
    await service.frontend.close()
    this.opts.onServiceDown(service)
  }

  /** Server shutdown: frees held ports and holds no more. */
  close (): void {
    this.closed = true
    this.holds.releaseAll()
  }
}
