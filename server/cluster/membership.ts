import { EventEmitter } from 'node:events'
import { keyPart, openBucket, whileJetStreamStarts } from './kv-bucket.js'
import type { Logger } from '../../protocol/index.js'
import type { KV } from '@nats-io/kv'
import type { NatsConnection } from '@nats-io/transport-node'

/** What a node announces: how clients and other nodes reach its API port, and its certificate. */
export interface NodeRecord {
  name: string
  /** host:port of its API (WSS) port. */
  api: string
  /** PEM of its certificate and its SHA-256 fingerprint: peers pin it when they dial this node. */
  cert: string
  fingerprint: string
  startedAt: string
}

export interface MembershipEvents {
  up: [NodeRecord]
  down: [string]
  /** A heartbeat went through: NATS and JetStream answer. */
  beat: []
}

/**
 * The cluster's nodes, in a KV bucket whose entries expire after `ttlMs`: each node rewrites its
 * own every third of it, and a node whose entry is gone (expired, or deleted on a clean stop) is
 * down. While NATS cannot be reached nobody is declared down: what is known stays.
 */
export class Membership extends EventEmitter<MembershipEvents> {
  readonly nodes = new Map<string, NodeRecord>()
  private timer?: NodeJS.Timeout
  private stopped = false
  /**
   * Since when heartbeats go through. After NATS was unreachable, every entry has expired: a node
   * is declared down only once the others had a whole TTL to write theirs again.
   */
  private healthySince: number | undefined = Date.now()

  private constructor (private readonly kv: KV, private readonly self: NodeRecord, private readonly ttlMs: number, private readonly log: Logger) {
    super()
  }

  static async join (nc: NatsConnection, cluster: string, self: NodeRecord, ttlMs: number, log: Logger): Promise<Membership> {
    const kv = await openBucket(nc, `reverselb-${cluster}-nodes`, { ttl: ttlMs }, log)
    const m = new Membership(kv, self, ttlMs, log)
    await whileJetStreamStarts(async () => await m.beat(), log)
    await m.sweep()
    m.timer = setInterval(() => { void m.tick() }, Math.max(200, Math.floor(ttlMs / 3)))
    m.timer.unref()
    return m
  }

  /** Every node's record but this one's. */
  others (): NodeRecord[] {
    return [...this.nodes.values()].filter(n => n.name !== this.self.name)
  }

  private async tick (): Promise<void> {
    try {
      await this.beat()
    } catch (err) {
      this.healthySince = undefined
      this.log.debug(`cluster membership: heartbeat failed: ${(err as Error).message}`)
      return
    }
    this.healthySince ??= Date.now()
    this.emit('beat')
    try {
      await this.sweep(Date.now() - this.healthySince >= this.ttlMs)
    } catch (err) {
      this.log.debug(`cluster membership: reading the nodes failed: ${(err as Error).message}`)
    }
  }


  private async beat (): Promise<void> {
    await this.kv.put(keyPart(this.self.name), JSON.stringify(this.self))
  }

  /** Reads every live entry: new ones are up, missing ones down (when `declareDown`). */
  private async sweep (declareDown = true): Promise<void> {
    const seen = new Map<string, NodeRecord>()
    for await (const key of await this.kv.keys()) {
      const entry = await this.kv.get(key)
      if (entry === null || entry.operation !== 'PUT') continue
      try {
        const record = entry.json<NodeRecord>()
        seen.set(record.name, record)
      } catch { this.log.warn(`cluster membership: unreadable entry ${key} ignored`) }
    }
    if (this.stopped) return
    for (const [name, record] of seen) {
      const known = this.nodes.get(name)
      this.nodes.set(name, record)
      if (known === undefined || known.startedAt !== record.startedAt) {
        if (known !== undefined) this.emit('down', name)
        if (name !== this.self.name) this.log.info(`cluster: node ${name} (${record.api}) is up`)
        this.emit('up', record)
      }
    }
    for (const name of [...this.nodes.keys()]) {
      if (!declareDown || seen.has(name) || name === this.self.name) continue
      this.nodes.delete(name)
      this.log.warn(`cluster: node ${name} is down (its heartbeat stopped)`)
      this.emit('down', name)
    }
  }

  /** Leaves: the entry is deleted so the others see it at once. */
  async leave (): Promise<void> {
    this.stopped = true
    clearInterval(this.timer)
    await this.kv.delete(keyPart(this.self.name)).catch(() => {})
  }
}
