import { Balancer } from './balancer.js'
import type { LbPolicy } from './balancer.js'
import type { Frontend } from './frontend.js'
import type { ServerSession } from './session.js'

/** A named service: one frontend port shared by every session (and instance) registered to it. */
export class Service {
  readonly name: string
  readonly port: number
  readonly frontend: Frontend
  /** Sessions by instance name; '' is the default instance. */
  readonly instances = new Map<string, ServerSession[]>()
  private readonly balancers = new Map<string, Balancer>()
  private readonly policy: LbPolicy

  constructor (name: string, port: number, frontend: Frontend, policy: LbPolicy) {
    this.name = name
    this.port = port
    this.frontend = frontend
    this.policy = policy
  }

  add (session: ServerSession): void {
    const list = this.instances.get(session.instance) ?? []
    list.push(session)
    this.instances.set(session.instance, list)
  }

  /** Removes a session; true when the service has none left. */
  remove (session: ServerSession): boolean {
    const list = this.instances.get(session.instance)
    if (list !== undefined) {
      const i = list.indexOf(session)
      if (i >= 0) list.splice(i, 1)
      if (list.length === 0) { this.instances.delete(session.instance); this.balancers.delete(session.instance) }
    }
    return this.instances.size === 0
  }

  hasNamedInstances (): boolean {
    for (const name of this.instances.keys()) if (name !== '') return true
    return false
  }

  /** An instance by its exact name, or by the first label of a host name (`box1.example.com`). */
  resolveInstance (name: string): string | undefined {
    const lower = name.toLowerCase()
    for (const instance of this.instances.keys()) {
      if (instance !== '' && instance.toLowerCase() === lower) return instance
    }
    const label = lower.split('.')[0]
    for (const instance of this.instances.keys()) {
      if (instance !== '' && instance.toLowerCase() === label) return instance
    }
    return undefined
  }

  get sessions (): ServerSession[] {
    return [...this.instances.values()].flat()
  }

  activeConnections (): number {
    let n = 0
    for (const list of this.instances.values()) for (const s of list) n += s.activeConnections
    return n
  }

  /** Next session of `instance` not in `exclude` and below `maxActive` connections, by the service's policy. */
  pick (instance: string, exclude: ReadonlySet<ServerSession>, maxActive = Infinity): ServerSession | undefined {
    const list = this.instances.get(instance)
    if (list === undefined) return undefined
    let balancer = this.balancers.get(instance)
    if (balancer === undefined) { balancer = new Balancer(this.policy); this.balancers.set(instance, balancer) }
    return balancer.pick(list, exclude, maxActive)
  }
}
