import { hostname } from 'node:os'
import { ReverselbError, formatEndpoint, parseEndpoint } from '../../protocol/index.js'
import { closeNats, connectNats } from '../nats-connection.js'
import { Membership } from './membership.js'
import { PeerLinks } from './peer-links.js'
import { RemoteSession } from './remote-session.js'
import { SharedServices } from './shared-services.js'
import { whileJetStreamStarts } from './kv-bucket.js'
import { serveForwarded } from './forwarded.js'
import type { Logger } from '../../protocol/index.js'
import type { ServerCertificate } from '../certificate.js'
import type { ServerEvents } from '../events.js'
import type { PortPool } from '../port-pool.js'
import type { ServiceRegistry } from '../registry.js'
import type { ServerSession } from '../session.js'
import type { LocalSession } from './forwarded.js'
import type { NodeRecord } from './membership.js'
import type { SessionRecord } from './shared-services.js'
import type { NatsConnection } from '@nats-io/transport-node'
import type { IncomingMessage } from 'node:http'
import type { EventEmitter } from 'node:events'
import type { Duplex } from 'node:stream'

/** The cluster part of TunnelServerOptions. */
export interface ClusterOptions {
  /** The cluster's name: nodes with the same name and NATS share services. */
  name: string
  /** NATS servers (with JetStream) of the cluster. */
  natsUrl: string | string[]
  /** PEM of the CA of the NATS servers' certificates, when they use TLS. */
  natsCa?: string
  /** host:port of this node's API port as clients and other nodes reach it. Default: this host's name and the API port. */
  advertise?: string
  /** Shared by the nodes: authenticates their node-to-node links. */
  secret: string
  /** This node's name; default the advertised endpoint. */
  nodeName?: string
  /** How long a node that stopped its heartbeat still counts as up. Default 3 s. */
  heartbeatTtlMs?: number
}

export interface ClusterContext {
  apiPort: number
  certificate: ServerCertificate
  registry: ServiceRegistry
  pool: PortPool
  events: EventEmitter<ServerEvents>
  keepaliveMs: number
  maxQueuedBytes: number
  dialTimeoutMs: number
  portGraceMs: number
  log: Logger
}

/**
 * One node of a cluster: announces itself, keeps a link to every other node, mirrors the other
 * nodes' sessions into this node's registry as RemoteSessions (so every node opens every
 * service's port and balances over every session), writes its own sessions to the shared
 * registry, and serves the connections other nodes forward to its sessions.
 */
export class ClusterNode {
  readonly name: string
  readonly advertise: string
  private readonly local = new Map<string, LocalSession>()
  /** Other nodes' sessions registered here, by node then id. */
  private readonly remote = new Map<string, Map<string, RemoteSession>>()
  private readonly unsubscribe: Array<() => void> = []
  private closed = false

  private constructor (
    private readonly opts: ClusterOptions,
    private readonly ctx: ClusterContext,
    private readonly nc: NatsConnection,
    readonly shared: SharedServices,
    readonly membership: Membership,
    private readonly links: PeerLinks,
    advertise: string
  ) {
    this.advertise = advertise
    this.name = opts.nodeName ?? advertise
  }

  static async start (opts: ClusterOptions, ctx: ClusterContext): Promise<ClusterNode> {
    const advertise = formatEndpoint(opts.advertise !== undefined ? parseEndpoint(opts.advertise, ctx.apiPort) : { host: hostname(), port: ctx.apiPort })
    const name = opts.nodeName ?? advertise
    const { nc, where } = await connectNats({ url: opts.natsUrl, ca: opts.natsCa, name: `reverselb-${name}`, log: ctx.log })
    try {
      const shared = await SharedServices.open(nc, opts.name, ctx.log)
      const self: NodeRecord = { name, api: advertise, cert: ctx.certificate.cert, fingerprint: ctx.certificate.fingerprint, startedAt: new Date().toISOString() }
      const links = new PeerLinks({
        self: name,
        secret: opts.secret,
        keepaliveMs: ctx.keepaliveMs,
        maxQueuedBytes: ctx.maxQueuedBytes,
        dialTimeoutMs: ctx.dialTimeoutMs,
        log: ctx.log,
        onForwarded: (stream, from) => {
          serveForwarded(stream, from, { lookup: id => node.local.get(id), ackTimeoutMs: ctx.dialTimeoutMs, node: name, log: ctx.log, events: ctx.events })
            .catch((err: Error) => { ctx.log.error(`cluster: forwarded connection from ${from} failed: ${err.message}`); stream.reset(err) })
        }
      })
      // Membership last: the others dial us once we are announced, and we are ready for them.
      const membership = await Membership.join(nc, opts.name, self, opts.heartbeatTtlMs ?? 3000, ctx.log)
      const node: ClusterNode = new ClusterNode(opts, ctx, nc, shared, membership, links, advertise)
      node.wire()
      ctx.log.info(`cluster ${opts.name}: node ${name} (${advertise}) joined through NATS at ${where}; ${membership.others().length} other node(s)`)
      return node
    } catch (err) {
      await closeNats(nc)
      throw new ReverselbError('ERR_REVERSELB_LISTEN', `cannot join cluster ${opts.name}: ${(err as Error).message}`)
    }
  }

  private wire (): void {
    const { shared, membership, links, ctx } = this
    // A status 'disconnect' may come without its 'reconnect' (a server of the list failing at
    // start): a heartbeat that went through says NATS answers.
    membership.on('beat', () => {
      shared.setAvailable(true)
      shared.checkWatch().catch((err: Error) => ctx.log.debug(`cluster registry watch check: ${err.message}`))
    })
    membership.on('up', (record) => { if (record.name !== this.name) links.connect(record) })
    membership.on('down', (name) => {
      // Its link answering is proof of life: a node cut from NATS for a while (its server lost,
      // a new JetStream leader) keeps serving. It is forgotten once the link goes too.
      if (links.mux(name) !== undefined) {
        ctx.log.warn(`cluster: node ${name} missed its heartbeats but its link answers; keeping it`)
        return
      }
      this.forget(name)
    })
    for (const record of membership.others()) links.connect(record)
    links.on('up', (node) => { for (const record of shared.sessionsOf(node)) this.addRemote(record) })
    links.on('down', (node) => {
      this.dropRemote(node)
      if (!membership.nodes.has(node)) this.forget(node)
    })
    shared.on('sessionUp', (record) => this.addRemote(record))
    shared.on('sessionDown', (record) => this.removeRemote(record.node, record.id))

    const onOpened = ({ service, session }: ServerEvents['sessionOpened'][0]): void => {
      this.local.set(session.id, { session, service })
      shared.putSession(this.record(session, service.name)).catch((err: Error) => ctx.log.warn(`cluster: session ${session.id} not yet in the shared registry (${err.message}); written when NATS is back`))
    }
    const onClosed = ({ service, session }: ServerEvents['sessionClosed'][0]): void => {
      this.local.delete(session.id)
      shared.deleteSession(this.name, session.id).catch(() => {})
      this.releaseLater(service.name)
    }
    ctx.events.on('sessionOpened', onOpened)
    ctx.events.on('sessionClosed', onClosed)
    this.unsubscribe.push(() => ctx.events.off('sessionOpened', onOpened), () => ctx.events.off('sessionClosed', onClosed))
    void this.followNats()
  }

  /** NATS lost: only new services are refused. Back: our sessions are written again (catch-up). */
  private async followNats (): Promise<void> {
    for await (const s of this.nc.status()) {
      if (s.type === 'disconnect') {
        this.shared.setAvailable(false)
        this.ctx.log.warn(`cluster ${this.opts.name}: NATS unreachable; relaying goes on for the services and sessions known, new services are refused until it is back`)
      }
      if (s.type === 'reconnect') {
        this.shared.setAvailable(true)
        this.catchUp().catch((err: Error) => this.ctx.log.warn(`cluster ${this.opts.name}: catching up with NATS failed: ${err.message}`))
      }
    }
  }

  /** After NATS came back: this node's sessions written again, the others' read again. */
  private async catchUp (): Promise<void> {
    this.ctx.log.info(`cluster ${this.opts.name}: NATS is back; writing this node's ${this.local.size} session(s) to the shared registry again`)
    await whileJetStreamStarts(async () => {
      const services = new Map([...this.local.values()].map(({ service }) => [service.name, service.port]))
      for (const [name, port] of services) await this.shared.reassert(name, port)
      for (const { session, service } of this.local.values()) await this.shared.putSession(this.record(session, service.name))
      await this.shared.watch()
    }, this.ctx.log)
    for (const node of this.membership.others()) for (const record of this.shared.sessionsOf(node.name)) this.addRemote(record)
  }

  private record (session: ServerSession, service: string): SessionRecord {
    const { registration } = session
    return {
      node: this.name,
      id: session.id,
      service,
      instance: session.instance,
      clientAddress: session.remoteAddress,
      muxer: session.muxerName,
      connectedAt: session.connectedAt.toISOString(),
      targetPort: registration.targetPort,
      targetAddresses: registration.targetAddresses,
      connection: { id: session.connection.id, transport: session.connection.transport, e2e: session.connection.e2e }
    }
  }

  private addRemote (record: SessionRecord): void {
    if (record.node === this.name) return
    const link = this.links.mux(record.node)
    const port = this.shared.ports.get(record.service)
    if (link === undefined || port === undefined) return
    const sessions = this.remote.get(record.node) ?? new Map<string, RemoteSession>()
    if (sessions.has(record.id)) return
    this.remote.set(record.node, sessions)
    const remote = new RemoteSession(record, link)
    sessions.set(record.id, remote)
    this.ctx.registry.register(remote, port)
      .catch((err: Error) => {
        sessions.delete(record.id)
        this.ctx.log.warn(`cluster: cannot serve service ${record.service} of node ${record.node} here: ${err.message}; trying again in 1 s`)
        // Still in the registry a second later: tried again (the registry may have been slow).
        setTimeout(() => {
          const current = [...this.shared.sessions.values()].find(s => s.node === record.node && s.id === record.id)
          if (!this.closed && current !== undefined) this.addRemote(current)
        }, 1000).unref()
      })
  }

  private removeRemote (node: string, id: string): void {
    const remote = this.remote.get(node)?.get(id)
    if (remote === undefined) return
    this.remote.get(node)?.delete(id)
    remote.closing = true
    this.ctx.registry.unregister(remote)
      .catch((err: Error) => this.ctx.log.error(`cluster: ${err.message}`))
  }

  /** A node that is gone: no more links to it, its sessions out of the balancer and the registry. */
  private forget (node: string): void {
    this.links.disconnect(node)
    this.dropRemote(node)
    this.shared.purgeNode(node)
      .then(services => { for (const s of services) this.releaseLater(s) })
      .catch(() => {})
  }

  private dropRemote (node: string): void {
    for (const id of [...this.remote.get(node)?.keys() ?? []]) this.removeRemote(node, id)
  }

  /**
   * After the grace period, a service no node has a session of gives its port back to the
   * cluster (asked by the node its last session left, or by those that saw that node die).
   */
  private releaseLater (service: string): void {
    const timer = setTimeout(() => {
      if (this.closed || this.ctx.registry.services.has(service)) return
      this.shared.releaseIfUnused(service).catch(() => {})
    }, this.ctx.portGraceMs)
    timer.unref()
  }

  get clusterName (): string {
    return this.opts.name
  }

  /** Whether the link to node `name` is open. */
  linked (name: string): boolean {
    return this.links.mux(name) !== undefined
  }

  /** The cluster's API endpoints, this node's first. */
  endpoints (): string[] {
    return [this.advertise, ...this.membership.others().map(n => n.api)]
  }

  acceptPeer (req: IncomingMessage, socket: Duplex, head: Buffer): void {
    this.links.accept(req, socket, head)
  }

  /** The connection other parts (the event publisher) may share. */
  get natsConnection (): NatsConnection {
    return this.nc
  }

  /** Leaves: our sessions and membership entry are removed so the others stop at once. */
  async close (): Promise<void> {
    this.closed = true
    for (const u of this.unsubscribe) u()
    this.links.close()
    await Promise.all([...this.local.keys()].map(async id => await this.shared.deleteSession(this.name, id).catch(() => {})))
    await this.membership.leave()
    await closeNats(this.nc)
  }
}
