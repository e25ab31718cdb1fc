import { once } from 'node:events'
import { connect as netConnect, isIP } from 'node:net'
import { connect as tlsConnect, rootCertificates } from 'node:tls'
import { WebSocket } from 'ws'
import { MAX_WS_PAYLOAD, REFUSAL_HEADER, TUNNEL_PATH, subprotocolFor } from '../protocol/index.js'
import { formatEndpoint } from './endpoint.js'
import { AuthorizationError, TlsVerificationError, UpgradeRefusedError } from './errors.js'
import type { Endpoint } from './endpoint.js'
import type { Logger, MuxerName } from '../protocol/index.js'
import type { Socket } from 'node:net'
import type { TLSSocket } from 'node:tls'

export interface TlsTrust {
  /** Skip verification entirely (warned about once per connection). */
  insecure: boolean
  /** Extra CA certificates (PEM) trusted besides the built-in ones, e.g. a TLS-inspecting proxy's. */
  ca?: string
  /** SHA-256 fingerprint the server certificate must have; replaces CA verification. */
  fingerprint?: string
}

export interface DialOptions {
  token: string
  muxer: MuxerName
  trust: TlsTrust
  timeoutMs: number
  log: Logger
  /** Opens the TCP connection to the server (directly or through a proxy). */
  connect?: (endpoint: Endpoint, timeoutMs: number) => Promise<Socket>
}

const normalizeFingerprint = (fp: string): string => fp.replace(/[^0-9a-f]/gi, '').toUpperCase()

async function connectDirect (endpoint: Endpoint, timeoutMs: number): Promise<Socket> {
  const socket = netConnect({ host: endpoint.host, port: endpoint.port, noDelay: true })
  try {
    await withTimeout(once(socket, 'connect'), timeoutMs, `connecting to ${formatEndpoint(endpoint)} timed out after ${timeoutMs} ms`)
  } catch (err) {
    socket.destroy()
    throw err
  }
  return socket
}

/**
 * Completes TLS and checks the server's certificate before a single byte of HTTP (and so the
 * token) is sent: a pinned fingerprint, or the chain against the built-in CAs plus `ca`.
 */
async function secure (raw: Socket, endpoint: Endpoint, trust: TlsTrust, timeoutMs: number, log: Logger): Promise<TLSSocket> {
  const socket = tlsConnect({
    socket: raw,
    servername: isIP(endpoint.host) === 0 ? endpoint.host : undefined,
    host: endpoint.host,
    ca: trust.ca !== undefined ? [...rootCertificates, trust.ca] : undefined,
    rejectUnauthorized: false,
    ALPNProtocols: ['http/1.1']
  })
  try {
    await withTimeout(once(socket, 'secureConnect'), timeoutMs, `TLS handshake with ${formatEndpoint(endpoint)} timed out after ${timeoutMs} ms`)
  } catch (err) {
    socket.destroy()
    throw new Error(`TLS handshake with ${formatEndpoint(endpoint)} failed: ${(err as Error).message}`)
  }
  const cert = socket.getPeerCertificate()
  if (trust.fingerprint !== undefined) {
    if (normalizeFingerprint(cert.fingerprint256 ?? '') !== normalizeFingerprint(trust.fingerprint)) {
      socket.destroy()
      throw new TlsVerificationError(`certificate fingerprint mismatch for ${formatEndpoint(endpoint)}: pinned ${trust.fingerprint}, ` +
        `got ${cert.fingerprint256}; the connection is being intercepted (TLS inspection) or the server certificate changed`)
    }
  } else if (!trust.insecure && !socket.authorized) {
    socket.destroy()
    throw new TlsVerificationError(`server certificate of ${formatEndpoint(endpoint)} is not trusted (${String(socket.authorizationError)}); ` +
      'pass --ca FILE with its issuing CA, --fingerprint to pin it, or --insecuretls to skip verification')
  } else if (trust.insecure && !socket.authorized) {
    log.warn(`--insecuretls: not verifying the certificate of ${formatEndpoint(endpoint)} (${cert.fingerprint256})`)
  }
  return socket
}

/** Opens a verified WSS connection to the tunnel endpoint and upgrades it with our token and muxer. */
export async function dialTunnel (endpoint: Endpoint, opts: DialOptions): Promise<WebSocket> {
  const raw = await (opts.connect ?? connectDirect)(endpoint, opts.timeoutMs)
  const socket = await secure(raw, endpoint, opts.trust, opts.timeoutMs, opts.log)
  const protocol = subprotocolFor(opts.muxer)
  const ws = new WebSocket(`wss://${formatEndpoint(endpoint)}${TUNNEL_PATH}`, protocol, {
    createConnection: () => socket,
    headers: { authorization: `Bearer ${opts.token}` },
    handshakeTimeout: opts.timeoutMs,
    maxPayload: MAX_WS_PAYLOAD,
    perMessageDeflate: false
  })
  return await new Promise<WebSocket>((resolve, reject) => {
    ws.once('unexpected-response', (req, res) => {
      const reason = res.headers[REFUSAL_HEADER]
      const detail = typeof reason === 'string' ? reason : `HTTP ${res.statusCode ?? '?'} ${res.statusMessage ?? ''}`.trim()
      req.destroy()
      socket.destroy()
      if (res.statusCode === 401) reject(new AuthorizationError(`authorization failed at ${formatEndpoint(endpoint)}: the server rejected the token`))
      else reject(new UpgradeRefusedError(`server ${formatEndpoint(endpoint)} refused the tunnel: ${detail}`))
    })
    ws.once('error', (err) => { socket.destroy(); reject(err) })
    ws.once('open', () => {
      if (ws.protocol !== protocol) {
        ws.terminate()
        reject(new UpgradeRefusedError(`server ${formatEndpoint(endpoint)} answered with subprotocol "${ws.protocol}", expected ${protocol}`))
        return
      }
      resolve(ws)
    })
  })
}

async function withTimeout<T> (p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(message)), ms) })
  try {
    return await Promise.race([p, timeout])
  } finally {
    clearTimeout(timer)
  }
}
