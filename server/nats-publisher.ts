import { closeNats, connectNats } from './nats-connection.js'
import type { Logger } from '../protocol/index.js'
import type { NatsConnectionOptions } from './nats-connection.js'
import type { EventJson } from './snapshot.js'
import type { NatsConnection } from '@nats-io/transport-node'

export const SUBJECT_PREFIX = 'reverselb.'

export type NatsPublisherOptions = Omit<NatsConnectionOptions, 'name'>

/** Publishes lifecycle events as JSON on `reverselb.<event>`; reconnects forever once connected. */
export class NatsPublisher {
  private failedOnce = false

  private constructor (private readonly nc: NatsConnection, private readonly log: Logger, private readonly where: string, private readonly owned: boolean, private readonly node?: string) {}

  /** Connects (rejecting when the first attempt fails, so a wrong URL or token shows at start). */
  static async connect (opts: NatsPublisherOptions): Promise<NatsPublisher> {
    const { nc, where } = await connectNats({ ...opts, name: 'reverselb-server' })
    opts.log.info(`publishing events to NATS at ${where} on ${SUBJECT_PREFIX}>`)
    return new NatsPublisher(nc, opts.log, where, true)
  }

  /** Publishes on a cluster node's connection (left open on close), every event naming the node. */
  static overCluster (nc: NatsConnection, node: string, log: Logger): NatsPublisher {
    log.info(`publishing events to the cluster's NATS on ${SUBJECT_PREFIX}> as node ${node}`)
    return new NatsPublisher(nc, log, 'the cluster\'s NATS', false, node)
  }

  publish (event: EventJson): void {
    try {
      this.nc.publish(SUBJECT_PREFIX + event.event, JSON.stringify(this.node === undefined ? event : { ...event, node: this.node }))
      this.failedOnce = false
    } catch (err) {
      if (!this.failedOnce) this.log.warn(`cannot publish to NATS at ${this.where}: ${(err as Error).message}`)
      this.failedOnce = true
    }
  }

  /** Sends what is buffered (up to 2 s) and disconnects, unless the connection is someone else's. */
  async close (): Promise<void> {
    if (this.owned) await closeNats(this.nc)
  }
}
