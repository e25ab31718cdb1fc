import { InvalidOptionError, ReverselbError } from '../protocol/index.js'
import { rootCertificates } from 'node:tls'
import { Events, connect } from 'nats'
import type { Logger } from '../protocol/index.js'
import type { EventJson } from './snapshot.js'
import type { ConnectionOptions, NatsConnection, TlsOptions } from 'nats'
import type { PeerCertificate } from 'node:tls'

export const SUBJECT_PREFIX = 'reverselb.'

export interface NatsPublisherOptions {
  /**
   * Server URL: `nats://host:port`, `tls://host:port` or `host:port`. Credentials may be part of
   * it (`nats://user:pass@host`, or `nats://token@host` for token auth); they are never logged.
   */
  url: string
  /** Token auth; wins over credentials in the URL. */
  token?: string
  /** PEM of the CA (or self-signed certificate) to trust instead of the system's roots. */
  ca?: string
  /** Trust exactly the certificate with this SHA-256 fingerprint (any host name). */
  fingerprint?: string
  log: Logger
  /** Time allowed for the first connection. Default 5 s. */
  connectTimeoutMs?: number
}

export interface ParsedNatsUrl {
  server: string
  tls: boolean
  user?: string
  pass?: string
  token?: string
  /** The URL without credentials, safe to log. */
  redacted: string
}

/** Splits credentials off a NATS URL. */
export function parseNatsUrl (url: string): ParsedNatsUrl {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(url) ? url : `nats://${url}`
  let u: URL
  try {
    u = new URL(withScheme)
  } catch {
    throw new InvalidOptionError('--natsurl must look like nats://host:4222 or tls://host:4222')
  }
  const scheme = u.protocol.replace(/:$/, '')
  if (!['nats', 'tls'].includes(scheme)) throw new InvalidOptionError(`--natsurl scheme must be nats:// or tls://, got ${scheme}://`)
  if (u.hostname === '') throw new InvalidOptionError('--natsurl needs a host')
  const user = u.username !== '' ? decodeURIComponent(u.username) : undefined
  const pass = u.password !== '' ? decodeURIComponent(u.password) : undefined
  const hostPort = `${u.hostname}:${u.port !== '' ? u.port : '4222'}`
  return {
    server: hostPort,
    tls: scheme === 'tls',
    ...(pass !== undefined ? { user, pass } : user !== undefined ? { token: user } : {}),
    redacted: `${scheme}://${hostPort}`
  }
}

/** Publishes lifecycle events as JSON on `reverselb.<event>`; reconnects forever once connected. */
export class NatsPublisher {
  private readonly nc: NatsConnection
  private readonly log: Logger
  private readonly where: string
  private failedOnce = false

  private constructor (nc: NatsConnection, log: Logger, where: string) {
    this.nc = nc
    this.log = log
    this.where = where
    void this.watch()
  }

  /** Connects (rejecting when the first attempt fails, so a wrong URL or token shows at start). */
  static async connect (opts: NatsPublisherOptions): Promise<NatsPublisher> {
    const parsed = parseNatsUrl(opts.url)
    const tls: TlsOptions & { checkServerIdentity?: (host: string, cert: PeerCertificate) => Error | undefined } = {}
    if (opts.ca !== undefined) tls.ca = opts.ca
    if (opts.fingerprint !== undefined) {
      const expected = opts.fingerprint
      // The certificate is its own CA when self-signed; public roots cover operator certificates.
      tls.ca = [...rootCertificates, opts.ca ?? ''].join('\n')
      tls.checkServerIdentity = (_host, cert) => cert.fingerprint256 === expected
        ? undefined
        : new Error(`NATS server certificate ${cert.fingerprint256} is not the expected ${expected}`)
    }
    const options: ConnectionOptions = {
      servers: parsed.server,
      name: 'reverselb-server',
      timeout: opts.connectTimeoutMs ?? 5000,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 500,
      pingInterval: 30_000,
      ...(parsed.tls || opts.ca !== undefined || opts.fingerprint !== undefined ? { tls } : {}),
      ...(opts.token !== undefined
        ? { token: opts.token }
        : parsed.token !== undefined ? { token: parsed.token } : parsed.user !== undefined ? { user: parsed.user, pass: parsed.pass } : {})
    }
    let nc: NatsConnection
    try {
      nc = await connect(options)
    } catch (err) {
      throw new ReverselbError('ERR_REVERSELB_LISTEN', `cannot connect to NATS at ${parsed.redacted}: ${(err as Error).message}`)
    }
    opts.log.info(`publishing events to NATS at ${parsed.redacted} on ${SUBJECT_PREFIX}>`)
    return new NatsPublisher(nc, opts.log, parsed.redacted)
  }

  publish (event: EventJson): void {
    try {
      this.nc.publish(SUBJECT_PREFIX + event.event, JSON.stringify(event))
    } catch (err) {
      if (!this.failedOnce) this.log.warn(`cannot publish to NATS at ${this.where}: ${(err as Error).message}`)
      this.failedOnce = true
    }
  }

  /** Sends what is buffered (up to 2 s) and disconnects. */
  async close (): Promise<void> {
    if (this.nc.isClosed()) return
    const drained = this.nc.drain().catch(() => {})
    const timeout = new Promise<void>(resolve => setTimeout(resolve, 2000).unref())
    await Promise.race([drained, timeout])
    if (!this.nc.isClosed()) await this.nc.close().catch(() => {})
  }

  private async watch (): Promise<void> {
    for await (const s of this.nc.status()) {
      if (s.type === Events.Disconnect) this.log.warn(`NATS at ${this.where}: disconnected; buffering events until it is back`)
      if (s.type === Events.Reconnect) { this.failedOnce = false; this.log.info(`NATS at ${this.where}: reconnected`) }
      if (s.type === Events.Error) this.log.warn(`NATS at ${this.where}: ${String(s.data)}`)
    }
  }
}
