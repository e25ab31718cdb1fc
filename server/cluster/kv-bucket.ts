import { jetstream } from '@nats-io/jetstream'
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
export async function whileJetStreamStarts<T> (fn: () => Promise<T>, log: Logger, waitMs = JETSTREAM_WAIT_MS): Promise<T> {
  const deadline = Date.now() + waitMs
  for (;;) {
    try {
      return await fn()
    } catch (err) {
      if (!jetStreamUnready(err) || Date.now() > deadline) throw err
      log.info(`NATS JetStream not ready (${(err as Error).message}); retrying`)
      await new Promise(resolve => setTimeout(resolve, 100))
    }
  }
}

const JETSTREAM_WAIT_MS = 30_000
export const JETSTREAM_TIMEOUT_MS = 1500

/** What a JetStream without a leader (starting, or electing one after a server was lost) answers. */
export const jetStreamUnready = (err: unknown): boolean => /not enabled|no responders|timeout|leader|503|no suitable peers/i.test((err as Error).message)

async function createBucket (nc: NatsConnection, name: string, opts: Partial<KvOptions>, log: Logger): Promise<KV> {
  // Answers come in milliseconds; a request lost with a NATS server is retried after 1.5 s, not 5.
  const kvm = new Kvm(jetstream(nc, { timeout: JETSTREAM_TIMEOUT_MS }))
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
