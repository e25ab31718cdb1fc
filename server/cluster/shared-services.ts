import { EventEmitter } from 'node:events'
import { RegistrationError } from '../registry.js'
import { JETSTREAM_TIMEOUT_MS, fromKeyPart, jetStreamUnready, keyPart, openBucket, whileJetStreamStarts } from './kv-bucket.js'
import type { Logger } from '../../protocol/index.js'
import type { PortPool } from '../port-pool.js'
import type { TransportName } from '../session.js'
import { jetstreamManager } from '@nats-io/jetstream'
import type { JetStreamManager } from '@nats-io/jetstream'
import type { KV } from '@nats-io/kv'
import type { NatsConnection } from '@nats-io/transport-node'

/** A session as the cluster knows it: enough for another node to forward to it and show it. No secret. */
export interface SessionRecord {
  node: string
  id: string
  service: string
  instance: string
  clientAddress: string
  muxer: string
  connectedAt: string
  targetPort: number
  targetAddresses: string[]
  /** The client connection it came on (see SessionConnection). */
  connection: { id: string, transport: TransportName, e2e: boolean }
}

export interface SharedServicesEvents {
  sessionUp: [SessionRecord]
  sessionDown: [SessionRecord]
  available: []
}

/** The registry is unreachable (NATS down): what needs it is refused, with this message. */
export class RegistryUnavailableError extends RegistrationError {
  override name = 'RegistryUnavailableError'
}

/** How long a new service waits for NATS to be back before it is refused (a server lost: the connection moves). */
const RECONNECT_WAIT_MS = 3000

/** How long a registration waits for the registry's stream to have a leader again. */
const CLAIM_WAIT_MS = 10_000

const SVC = 'svc.'
const PORT = 'port.'
const SES = 'ses.'

/**
 * The cluster's service registry in one KV bucket: `svc.<name>` holds a service's frontend port,
 * `port.<n>` the service that owns port n, `ses.<node>.<id>` each session. Ports are claimed with
 * create() (compare-and-set on "no such key"), so two nodes racing for one port cannot both win,
 * and a service's port, once written, is the one every node uses. A watch keeps a local copy,
 * so a service known before NATS went away keeps its port while it is gone.
 */
export class SharedServices extends EventEmitter<SharedServicesEvents> {
  /** Service name -> port, and sessions by key, as last seen. */
  readonly ports = new Map<string, number>()
  readonly sessions = new Map<string, SessionRecord>()
  private reachable = true
  private iter?: { stop: () => void }
  /** The last revision the watch delivered, and since when the bucket has been ahead of it. */
  private seenRevision = 0
  private behindSince?: number

  private constructor (private readonly kv: KV, private readonly jsm: JetStreamManager, private readonly bucket: string, private readonly log: Logger) {
    super()
  }

  static async open (nc: NatsConnection, cluster: string, log: Logger): Promise<SharedServices> {
    const bucket = `reverselb-${cluster}-registry`
    const kv = await openBucket(nc, bucket, {}, log)
    const s = new SharedServices(kv, await jetstreamManager(nc, { timeout: JETSTREAM_TIMEOUT_MS }), bucket, log)
    await whileJetStreamStarts(async () => await s.watch(), log)
    return s
  }

  /** Whether NATS answers; set from the connection's status. */
  setAvailable (available: boolean): void {
    this.reachable = available
    if (available) this.emit('available')
  }

  /** Whether NATS answers, or does again within `ms` (the connection moving to another server). */
  private async reachableWithin (ms: number): Promise<boolean> {
    if (this.reachable) return true
    return await new Promise<boolean>(resolve => {
      const done = (): void => { clearTimeout(timer); this.off('available', done); resolve(this.reachable) }
      const timer = setTimeout(done, ms)
      this.on('available', done)
    })
  }

  get available (): boolean {
    return this.reachable
  }

  /**
   * Follows the bucket: its current values, then every change. Run again after NATS came back
   * (a watch does not outlive the loss of every server): keys gone meanwhile are dropped then.
   */
  async watch (): Promise<void> {
    this.iter?.stop()
    // Whatever is written after this is delivered by the watch started next.
    const before = (await this.kv.status()).streamInfo.state.last_seq
    const iter = await this.kv.watch()
    this.iter = iter
    const seen = new Set<string>()
    let initial = true
    let initialDone = (): void => {}
    const done = new Promise<void>(resolve => { initialDone = resolve })
    const endInitial = (): void => {
      if (!initial) return
      initial = false
      for (const key of [...this.sessions.keys()]) if (!seen.has(key)) this.apply(key, undefined)
      for (const name of [...this.ports.keys()]) if (!seen.has(SVC + keyPart(name))) this.ports.delete(name)
      initialDone()
    }
    void (async () => {
      for await (const e of iter) {
        this.seenRevision = Math.max(this.seenRevision, e.revision)
        if (initial) seen.add(e.key)
        this.apply(e.key, e.operation === 'PUT' ? e.value : undefined)
        if (e.delta === 0) endInitial()
      }
    })().catch((err: Error) => this.log.warn(`cluster registry watch ended: ${err.message}`))
    // An empty bucket has no last entry to mark the end of the initial values.
    const status = await this.kv.status()
    if (status.values === 0) endInitial()
    await done
    this.seenRevision = Math.max(this.seenRevision, before)
    this.behindSince = undefined
  }

  /**
   * Restarts a watch that fell behind the bucket for more than two seconds: one whose consumer
   * was on a NATS server that died may stall rather than end. Called once a second.
   */
  async checkWatch (now = Date.now()): Promise<void> {
    const last = (await this.kv.status()).streamInfo.state.last_seq
    if (last <= this.seenRevision) { this.behindSince = undefined; return }
    this.behindSince ??= now
    if (now - this.behindSince < 2000) return
    this.log.warn(`cluster registry watch stalled at revision ${this.seenRevision} of ${last}; restarting it`)
    await this.watch()
  }


  private apply (key: string, value: Uint8Array | undefined): void {
    if (key.startsWith(SVC)) {
      const name = fromKeyPart(key.slice(SVC.length))
      if (value === undefined) this.ports.delete(name)
      else this.ports.set(name, (JSON.parse(Buffer.from(value).toString()) as { port: number }).port)
    } else if (key.startsWith(SES)) {
      const known = this.sessions.get(key)
      if (value === undefined) {
        if (known !== undefined) { this.sessions.delete(key); this.emit('sessionDown', known) }
        return
      }
      const record = JSON.parse(Buffer.from(value).toString()) as SessionRecord
      this.sessions.set(key, record)
      if (known === undefined) this.emit('sessionUp', record)
    }
  }

  /**
   * The port of service `name`: the one it has in the cluster, else `requested` when no other
   * service owns it, else (0) the first free one of the dynamic pool.
   */
  async claimPort (name: string, requested: number, pool: PortPool): Promise<number> {
    const known = this.ports.get(name)
    if (known !== undefined) {
      if (requested !== 0 && requested !== known) throw new RegistrationError(`service "${name}" already listens on port ${known} in the cluster; register it with port ${known} or 0`)
      if (!this.available) return known
      // Freed meanwhile by the node its last session left (erasures send no watch event)?
      // Claimed again, or confirmed as still this service's.
      try {
        return await this.claimGiven(name, known)
      } catch (err) {
        // NATS slow or electing a leader: the port known is the service's still.
        if (err instanceof RegistryUnavailableError || jetStreamUnready(err)) return known
        this.ports.delete(name)
      }
    }
    if (!await this.reachableWithin(RECONNECT_WAIT_MS)) {
      throw new RegistryUnavailableError(`the cluster registry (NATS) cannot be reached: new services are refused until it is back (known services still register)`)
    }
    // A NATS server lost may have led the registry's stream: a new leader is elected in seconds.
    return await whileJetStreamStarts(async () => await this.claimNew(name, requested, pool), this.log, CLAIM_WAIT_MS)
  }

  private async claimNew (name: string, requested: number, pool: PortPool): Promise<number> {
    const port = requested !== 0 ? await this.claimGiven(name, requested) : await this.claimFree(name, pool)
    try {
      await this.kv.create(SVC + keyPart(name), JSON.stringify({ port }))
      this.ports.set(name, port)
      return port
    } catch (err) {
      // Another node registered the service first: its port is the service's, ours goes back.
      await this.erase(PORT + String(port)).catch(() => {})
      const entry = await this.kv.get(SVC + keyPart(name))
      if (entry === null || entry.operation !== 'PUT') throw new RegistrationError(`cannot register service "${name}" in the cluster: ${(err as Error).message}`)
      const theirs = entry.json<{ port: number }>().port
      this.ports.set(name, theirs)
      if (requested !== 0 && requested !== theirs) throw new RegistrationError(`service "${name}" already listens on port ${theirs} in the cluster`)
      return theirs
    }
  }

  private async claimGiven (name: string, port: number): Promise<number> {
    if (await this.tryClaim(name, port)) return port
    const owner = (await this.kv.get(PORT + String(port)))?.string()
    if (owner === name) return port
    throw new RegistrationError(`port ${port} is already used by service "${owner ?? '?'}" in the cluster`)
  }

  private async claimFree (name: string, pool: PortPool): Promise<number> {
    const taken = new Set(this.ports.values())
    for (let port = pool.first; port < pool.first + pool.count; port++) {
      if (taken.has(port)) continue
      if (await this.tryClaim(name, port)) return port
    }
    throw new RegistrationError(`no free port left in the cluster's dynamic pool ${pool.first}-${pool.first + pool.count - 1}`)
  }

  private async tryClaim (name: string, port: number): Promise<boolean> {
    try {
      await this.kv.create(PORT + String(port), name)
      return true
    } catch (err) {
      if (/wrong last sequence|key exists/i.test((err as Error).message)) return false
      if (jetStreamUnready(err)) throw err
      throw new RegistryUnavailableError(`the cluster registry (NATS) failed: ${(err as Error).message}`)
    }
  }

  /**
   * Writes a service this node serves back into the registry after NATS came back: what NATS
   * lost when all its servers died (their last writes) must not let another service take the port.
   */
  async reassert (name: string, port: number): Promise<void> {
    if (!await this.tryClaim(name, port)) {
      const owner = (await this.kv.get(PORT + String(port)))?.string()
      if (owner !== name) { this.log.warn(`cluster: port ${port} of service ${name} is held by service "${owner ?? '?'}" in the registry`); return }
    }
    try {
      await this.kv.create(SVC + keyPart(name), JSON.stringify({ port }))
    } catch (err) {
      if (!/wrong last sequence|key exists/i.test((err as Error).message)) throw err
    }
    this.ports.set(name, port)
  }

  /** Frees a service's port in the cluster once no node has a session of it. */
  async releaseIfUnused (name: string): Promise<void> {
    if ([...this.sessions.values()].some(s => s.service === name)) return
    const port = this.ports.get(name)
    if (port === undefined) return
    this.ports.delete(name)
    await this.erase(SVC + keyPart(name))
    await this.erase(PORT + String(port))
    this.log.info(`cluster: service ${name} has no session left; port ${port} freed`)
  }

  /**
   * Removes every message of a key, leaving no delete marker: a create() over a marker is an
   * update of the marker's revision, which concurrent writers could both pass on a NATS 2.9
   * cluster (seen here: one port given twice); a create() of a key without messages cannot.
   */
  private async erase (key: string): Promise<void> {
    await this.jsm.streams.purge(`KV_${this.bucket}`, { filter: `$KV.${this.bucket}.${key}` })
  }

  async putSession (record: SessionRecord): Promise<void> {
    await this.kv.put(sessionKey(record.node, record.id), JSON.stringify(record))
  }

  async deleteSession (node: string, id: string): Promise<void> {
    await this.kv.delete(sessionKey(node, id))
  }

  /** Removes every session of a node that is gone; resolves to the services they were of. */
  async purgeNode (node: string): Promise<Set<string>> {
    const services = new Set<string>()
    for (const [key, record] of [...this.sessions]) {
      if (record.node !== node) continue
      services.add(record.service)
      await this.kv.delete(key).catch(() => {})
    }
    return services
  }

  /** Sessions of `node` the registry lists (ours, after NATS came back: checked against what we have). */
  sessionsOf (node: string): SessionRecord[] {
    return [...this.sessions.values()].filter(s => s.node === node)
  }
}

const sessionKey = (node: string, id: string): string => `${SES}${keyPart(node)}.${id}`
