import { splitServiceName } from '../protocol/index.js'
import { RegistrationError } from './registry.js'
import type { TunnelData } from '../protocol/index.js'
import type { TokenAuth, TokenGrant } from './auth.js'
import type { Limits } from './limits.js'
import type { PortPool } from './port-pool.js'
import type { PortRanges } from './port-ranges.js'
import type { ServiceRegistry } from './registry.js'

export interface AdmissionContext {
  auth: TokenAuth
  grant: TokenGrant
  from: string
  limits: Limits
  allowedPorts: PortRanges
  pool: PortPool
  /** Ports the server itself listens on (API, REST, NATS): never a frontend. */
  reserved: ReadonlySet<number>
  registry: ServiceRegistry
}

/** Refuses, with a reason for the client, any registration the operator's rules do not allow. */
export function admit (td: TunnelData, ctx: AdmissionContext): void {
  const { service } = splitServiceName(td.serviceName)
  if (!ctx.auth.allows(ctx.grant, service)) throw new RegistrationError(`this token may not register service "${service}"`)
  const port = td.frontendData.port
  const existing = ctx.registry.services.get(service)
  // A service's own port (live or held since it left) is the service's; any other is the token's to earn.
  if (port !== 0 && existing?.port !== port && ctx.registry.holds.portOf(service) !== port) {
    const refusal = ctx.auth.portRefusal(ctx.grant, port, ctx.pool)
    if (refusal !== undefined) throw new RegistrationError(refusal)
    if (ctx.reserved.has(port)) throw new RegistrationError(`port ${port} is reserved for the server itself`)
    if (!ctx.pool.contains(port) && !ctx.allowedPorts.has(port)) {
      throw new RegistrationError(`port ${port} is not allowed; allowed: ${ctx.allowedPorts.toString()} and the dynamic pool ${ctx.pool.first}-${ctx.pool.first + ctx.pool.count - 1}`)
    }
  }
  if (existing === undefined) {
    const mine = new Set<string>()
    for (const s of ctx.registry.services.values()) {
      if (s.sessions.some(x => x.remoteAddress === ctx.from)) mine.add(s.name)
    }
    if (mine.size >= ctx.limits.maxServicesPerAddress) {
      throw new RegistrationError(`address ${ctx.from} already registered ${mine.size} services, the most allowed`)
    }
  }
}
