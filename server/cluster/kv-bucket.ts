import { Kvm } from '@nats-io/kv'
import type { Logger } from '../../protocol/index.js'
import type { KV, KvOptions } from '@nats-io/kv'
import type { NatsConnection } from '@nats-io/transport-node'

/**
 * Opens (creating it the first time) a cluster's KV bucket, replicated on three NATS servers so
 * the loss of one changes nothing; a single NATS server (no JetStream cluster) gets one replica.
 */
export async function openBucket (nc: NatsConnection, name: string, opts: Partial<KvOptions>, log: Logger): Promise<KV> {
  const kvm = new Kvm(nc)
  try {
    return await kvm.create(name, { history: 1, replicas: 3, ...opts })
  } catch (err) {
    const message = (err as Error).message
    if (!/replica|insufficient resources|cluster/i.test(message)) throw err
    log.warn(`NATS KV bucket ${name}: three replicas refused (${message}); using one (a NATS server lost loses the cluster state)`)
    return await kvm.create(name, { history: 1, replicas: 1, ...opts })
  }
}

/** A key from any text: KV keys allow only [-/_=.a-zA-Z0-9]. */
export const keyPart = (text: string): string => Buffer.from(text).toString('base64url')
export const fromKeyPart = (part: string): string => Buffer.from(part, 'base64url').toString()
