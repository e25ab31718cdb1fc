import { ReverselbError, splitServiceName, validateTunnelData } from '../protocol/index.js'
import { Targets } from './targets.js'
import type { ProxyProtocolVersion } from './proxy-header.js'
import type { TunnelData } from '../protocol/index.js'

export type ServiceErrorCode = 'ERR_REVERSELB_SERVICE_EXISTS' | 'ERR_REVERSELB_SERVICE_UNKNOWN' | 'ERR_REVERSELB_SERVICE_INVALID'

/** A service the client cannot add, find or change as asked. */
export class ServiceError extends ReverselbError {
  override name = 'ServiceError'
  constructor (message: string, code: ServiceErrorCode) { super(code, message) }
}

/** Per-service settings that are the client's alone (never sent to the server). */
export interface ServiceOptions {
  /** PROXY protocol header to this service's backend; default: the client's `proxyProtocol`. */
  proxyProtocol?: ProxyProtocolVersion
}

/** One service a client carries: what it registers, and where its connections go. */
export interface ServiceEntry {
  /** `service` or `service:instance`: unique in a client. */
  readonly name: string
  readonly data: TunnelData
  readonly targets: Targets
  readonly options: ServiceOptions
}

/** The name a registration is known by: `service`, or `service:instance` on a shared port. */
export function serviceKey (td: Pick<TunnelData, 'serviceName' | 'instanceName'>): string {
  const { service, instance } = splitServiceName(td.serviceName, td.instanceName)
  return instance === '' ? service : `${service}:${instance}`
}

/** A checked copy of a registration (the token is the client's, never a service's). */
export function serviceEntry (td: TunnelData, options: ServiceOptions = {}): ServiceEntry {
  const { token: _token, ...rest } = td
  let data: TunnelData
  try {
    data = validateTunnelData({ ...rest, frontendData: { ...td.frontendData } })
  } catch (err) {
    throw new ServiceError(`service "${String(td.serviceName)}": ${(err as Error).message}`, 'ERR_REVERSELB_SERVICE_INVALID')
  }
  if (data.targetAddresses.length === 0) throw new ServiceError(`service "${data.serviceName}": no backend address`, 'ERR_REVERSELB_SERVICE_INVALID')
  return { name: serviceKey(data), data, targets: new Targets(data.targetAddresses, data.targetPort), options: { ...options } }
}

/** The services of one client, in the order they were added. */
export class ServiceSet {
  private readonly entries = new Map<string, ServiceEntry>()

  add (entry: ServiceEntry): void {
    if (this.entries.has(entry.name)) throw new ServiceError(`service "${entry.name}" is already carried by this client`, 'ERR_REVERSELB_SERVICE_EXISTS')
    this.entries.set(entry.name, entry)
  }

  remove (name: string): ServiceEntry {
    const entry = this.get(name)
    this.entries.delete(name)
    return entry
  }

  get (name: string): ServiceEntry {
    const entry = this.entries.get(name)
    if (entry === undefined) throw new ServiceError(`no service "${name}" in this client`, 'ERR_REVERSELB_SERVICE_UNKNOWN')
    return entry
  }

  has (name: string): boolean {
    return this.entries.has(name)
  }

  /** The entry a relayed connection is for: by instance when the server names it, else the service's first. */
  lookup (service: string, instance: string | undefined): ServiceEntry | undefined {
    if (instance !== undefined) return this.entries.get(`${service}:${instance}`)
    return this.entries.get(service) ?? this.list().find(e => splitServiceName(e.data.serviceName, e.data.instanceName).service === service)
  }

  list (): ServiceEntry[] {
    return [...this.entries.values()]
  }

  get size (): number {
    return this.entries.size
  }
}
