import { rootCertificates } from 'node:tls'
import { connect } from '@nats-io/transport-node'
import { InvalidOptionError, ReverselbError } from '../protocol/index.js'
import type { Logger } from '../protocol/index.js'
import type { NatsConnection, NodeConnectionOptions } from '@nats-io/transport-node'
import type { PeerCertificate } from 'node:tls'

export interface NatsConnectionOptions {
  /**
   * Server URLs (one, a list, or a comma-separated list): `nats://host:port`, `tls://host:port` or
   * `host:port`. Credentials may be part of them (`nats://user:pass@host`, or `nats://token@host`
   * for token auth); they are never logged.
   */
  url: string | string[]
  /** Token auth; wins over credentials in the URL. */
  token?: string
  /** PEM of the CA (or self-signed certificate) to trust instead of the system's roots. */
  ca?: string
  /** Trust exactly the certificate with this SHA-256 fingerprint (any host name). */
  fingerprint?: string
  /** Connection name the NATS server shows. */
  name: string
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

/** Every URL of a repeated and/or comma-separated --natsurl. */
export function splitNatsUrls (url: string | string[]): string[] {
  return (Array.isArray(url) ? url : [url]).flatMap(u => u.split(',')).map(u => u.trim()).filter(u => u !== '')
}

/**
 * Connects to NATS (rejecting when the first attempt fails, so a wrong URL or token shows at
 * start), then reconnects forever, to any server of the list, logging losses and returns.
 * Credentials come from the first URL that has some; the URLs logged carry none.
 */
export async function connectNats (opts: NatsConnectionOptions): Promise<{ nc: NatsConnection, where: string }> {
  const parsed = splitNatsUrls(opts.url).map(parseNatsUrl)
  if (parsed.length === 0) throw new InvalidOptionError('--natsurl is empty')
  const where = parsed.map(p => p.redacted).join(',')
  const anyTls = parsed.some(p => p.tls)
  const creds = parsed.find(p => p.token !== undefined || p.user !== undefined)
  const tls: NonNullable<NodeConnectionOptions['tls']> & { checkServerIdentity?: (host: string, cert: PeerCertificate) => Error | undefined } = {}
  if (opts.ca !== undefined) tls.ca = opts.ca
  if (opts.fingerprint !== undefined) {
    const expected = opts.fingerprint
    // The certificate is its own CA when self-signed; public roots cover operator certificates.
    tls.ca = [...rootCertificates, opts.ca ?? ''].join('\n')
    tls.checkServerIdentity = (_host, cert) => cert.fingerprint256 === expected
      ? undefined
      : new Error(`NATS server certificate ${cert.fingerprint256} is not the expected ${expected}`)
  }
  const options: NodeConnectionOptions = {
    servers: parsed.map(p => p.server),
    name: opts.name,
    timeout: opts.connectTimeoutMs ?? 5000,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    // A lost server shows within a few seconds, not after the default two minutes.
    pingInterval: 2000,
    maxPingOut: 2,
    ...(anyTls || opts.ca !== undefined || opts.fingerprint !== undefined ? { tls } : {}),
    ...(opts.token !== undefined
      ? { token: opts.token }
      : creds?.token !== undefined ? { token: creds.token } : creds?.user !== undefined ? { user: creds.user, pass: creds.pass } : {})
  }
  let nc: NatsConnection
  try {
    nc = await connect(options)
  } catch (err) {
    throw new ReverselbError('ERR_REVERSELB_LISTEN', `cannot connect to NATS at ${where}: ${(err as Error).message}`)
  }
  void logStatus(nc, where, opts.log)
  return { nc, where }
}

async function logStatus (nc: NatsConnection, where: string, log: Logger): Promise<void> {
  for await (const s of nc.status()) {
    if (s.type === 'disconnect') log.warn(`NATS at ${where}: disconnected from ${s.server}`)
    if (s.type === 'reconnect') log.info(`NATS at ${where}: reconnected to ${s.server}`)
    if (s.type === 'error') log.warn(`NATS at ${where}: ${String(s.error)}`)
  }
}

/** Flushes what is buffered (up to 2 s) and disconnects. */
export async function closeNats (nc: NatsConnection): Promise<void> {
  if (nc.isClosed()) return
  const drained = nc.drain().catch(() => {})
  const timeout = new Promise<void>(resolve => setTimeout(resolve, 2000).unref())
  await Promise.race([drained, timeout])
  if (!nc.isClosed()) await nc.close().catch(() => {})
}
