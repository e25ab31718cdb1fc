import { Kvm } from '@nats-io/kv'
import type { Logger } from '../../protocol/index.js'
import type { KV, KvOptions } from '@nats-io/kv'
import type { NatsConnection } from '@nats-io/transport-node'

/**
 * Opens (creating it the first time) a cluster's KV bucket, replicated on three NATS servers so
 * the loss of one changes nothing; a single NATS server (no JetStream cluster) gets one replica.
 */
export async function openBucket (nc: NatsConnection, name: string, opts: Partial<KvOptions>, log: Logger): Promise<KV> {
  return await whileJetStreamStarts(async () => await createBucket(nc, name, opts, log), log)
}

/**
 * Runs `fn` again while JetStream is not ready: NATS started together with us (compose, a
 * StatefulSet) answers before JetStream has a leader, and a bucket just created (by another
 * node) takes a moment to elect one of its own.
 */
export async function whileJetStreamStarts<T> (fn: () => Promise<T>, log: Logger): Promise<T> {
  const deadline = Date.now() + JETSTREAM_WAIT_MS
  for (;;) {
    try {
      return await fn()
    } catch (err) {
      if (!/not enabled|no responders|timeout|leader/i.test((err as Error).message) || Date.now() > deadline) throw err
      log.info(`NATS JetStream not ready yet (${(err as Error).message}); retrying`)
      await new Promise(resolve => setTimeout(resolve, 200))
    }
  }
}

const JETSTREAM_WAIT_MS = 30_000

async function createBucket (nc: NatsConnection, name: string, opts: Partial<KvOptions>, log: Logger): Promise<KV> {
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
