import { once } from 'node:events'
import { isIP } from 'node:net'
import { connect as tlsConnect, rootCertificates } from 'node:tls'
import {
  E2E_ALPN, E2E_MIN_VERSION, MAX_WS_PAYLOAD, MessageDuplex, PROTOCOL_VERSION, REFUSAL_HEADER, TUNNEL_PATH, subprotocolFor, upgrade
} from '../protocol/index.js'
import { formatEndpoint } from './endpoint.js'
import { AuthorizationError, TlsVerificationError, UpgradeBlockedError, UpgradeRefusedError } from './errors.js'
import { routeConnector, viaOf } from './proxy-route.js'
import type { Endpoint } from './endpoint.js'
import type { Connector } from './proxy.js'
import type { Logger, MuxerName, WebSocketConnection } from '../protocol/index.js'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { ConnectionOptions, PeerCertificate, TLSSocket } from 'node:tls'

export interface TlsTrust {
  /** Skip verification entirely (warned about once per connection). */
  insecure: boolean
  /** Extra CA certificates (PEM) trusted besides the built-in ones, e.g. a TLS-inspecting proxy's. */
  ca?: string
  /** SHA-256 fingerprint the server certificate must have; replaces CA verification. */
  fingerprint?: string
}

/**
 * The end-to-end layer (see protocol/link/e2e.ts): 'auto' runs it whenever the outer TLS is not
 * pinned to the server: --ca (a proxy's CA may be what verified it), --insecuretls, or a pinned
 * fingerprint that did not match (an inspecting proxy re-signed it).
 */
export type E2eMode = 'always' | 'auto' | 'never'
export const E2E_MODES: readonly E2eMode[] = ['always', 'auto', 'never']

/** Which carrier: 'auto' tries the WebSocket and falls back to the HTTP transport when the upgrade is blocked. */
export type TransportMode = 'auto' | 'websocket' | 'http'
export const TRANSPORT_MODES: readonly TransportMode[] = ['auto', 'websocket', 'http']

export interface DialOptions {
  token: string
  /** Default 'auto'. */
  transport?: TransportMode
  /** Default 'auto'. */
  e2e?: E2eMode
  muxer: MuxerName
  trust: TlsTrust
  timeoutMs: number
  log: Logger
  /** Opens the TCP connection to the server; replaces the direct/proxy choice below. */
  connect?: Connector
  /**
   * HTTP(S) proxy URL (`http://user:pass@host:port`) or 'none'. Unset: HTTPS_PROXY, ALL_PROXY,
   * HTTP_PROXY and NO_PROXY decide, as in curl.
   */
  proxy?: string
}

const normalizeFingerprint = (fp: string): string => fp.replace(/[^0-9a-f]/gi, '').toUpperCase()

/** Direct, through a proxy (or the first of several that answers), as the options and *_PROXY say. */
export function connectorFor (opts: DialOptions): Connector {
  return opts.connect ?? routeConnector({ proxy: opts.proxy, ca: opts.trust.ca, userAgent: `reverselb/v${PROTOCOL_VERSION}`, log: opts.log })
}

const issuerOf = (cert: PeerCertificate): string => {
  const i = cert.issuer ?? {}
  return [i.CN, i.O].filter(v => v !== undefined && v !== '').map(String).join(', ') || 'unknown issuer'
}

/** Which TLS layer a check is about, for its messages. */
type Layer = 'outer' | 'inner'

/**
 * Checks a TLS peer's certificate: a pinned fingerprint, else the chain (built-in CAs plus `ca`)
 * and name, unless --insecuretls. Throws a TlsVerificationError saying what to do.
 */
function verifyPeer (socket: TLSSocket, trust: TlsTrust, where: string, via: string, log: Logger, layer: Layer): void {
  const cert = socket.getPeerCertificate()
  const inside = layer === 'inner' ? ' inside the end-to-end layer' : ''
  if (trust.fingerprint !== undefined) {
    if (normalizeFingerprint(cert.fingerprint256 ?? '') === normalizeFingerprint(trust.fingerprint)) return
    throw new TlsVerificationError(layer === 'outer'
      ? `TLS interception detected (certificate fingerprint mismatch): the certificate presented for ${where}${via} ` +
        `(SHA-256 ${cert.fingerprint256}, issued by "${issuerOf(cert)}") is not the pinned one (${trust.fingerprint}); ` +
        'something on the path re-signs TLS (an inspecting proxy) or the server certificate changed. The token was not sent; ' +
        '--e2e never forbids the end-to-end layer that would pin the server through it'
      : `certificate fingerprint mismatch: the server certificate${inside} of ${where}${via} (SHA-256 ${cert.fingerprint256}, ` +
        `issued by "${issuerOf(cert)}") is not the pinned one (${trust.fingerprint}): not the server you pinned, or its certificate changed. The token was not sent`)
  }
  if (socket.authorized) return
  if (trust.insecure) {
    log.warn(`--insecuretls: not verifying the certificate${inside} of ${where} (${cert.fingerprint256})`)
    return
  }
  if (layer === 'inner') {
    // The outer certificate passed (or a pin) before we got here: the layer then hides the token
    // and data from a proxy that reads, as --ca setups that worked before keep working; only a
    // pin also proves the server to a proxy that would re-sign this inner TLS as well.
    log.warn(`the server certificate${inside} of ${where} (SHA-256 ${cert.fingerprint256}, issued by "${issuerOf(cert)}") is not verified ` +
      `(${String(socket.authorizationError)}); pin it with --fingerprint ${cert.fingerprint256} to prove the server through any proxy`)
    return
  }
  throw new TlsVerificationError(`server certificate of ${where}${via} is not trusted (${String(socket.authorizationError)}, ` +
    `issued by "${issuerOf(cert)}"); ` + (via !== '' ? 'if the proxy inspects TLS, pass its CA with --ca FILE; otherwise ' : '') +
    'pass --ca FILE with its issuing CA, --fingerprint to pin it, or --insecuretls to skip verification')
}

const tlsOptions = (endpoint: Endpoint, trust: TlsTrust): ConnectionOptions => ({
  servername: isIP(endpoint.host) === 0 ? endpoint.host : undefined,
  host: endpoint.host,
  ca: trust.ca !== undefined ? [...rootCertificates, trust.ca] : undefined,
  rejectUnauthorized: false
})

/** The outer TLS as checked, and whether the end-to-end layer must run inside it. */
export interface SecuredOuter {
  socket: TLSSocket
  e2e: boolean
  /** Why the layer is on (for the log), or undefined when off. */
  reason?: string
}

/**
 * Completes TLS and checks the server's certificate before a single byte of HTTP (and so the
 * token) is sent: a pinned fingerprint, or the chain against the built-in CAs plus `ca`; and
 * decides on the end-to-end layer. A pin that does not match the outer certificate is an
 * inspecting proxy's: then the layer (unless forbidden) carries the pin to the server itself.
 */
export async function secure (raw: Socket, endpoint: Endpoint, opts: DialOptions, via: string): Promise<SecuredOuter> {
  const { trust, timeoutMs, log } = opts
  const mode = opts.e2e ?? 'auto'
  const where = formatEndpoint(endpoint)
  const socket = tlsConnect({ socket: raw, ...tlsOptions(endpoint, trust), ALPNProtocols: ['http/1.1'] })
  try {
    await withTimeout(once(socket, 'secureConnect'), timeoutMs, `timed out after ${timeoutMs} ms`)
  } catch (err) {
    socket.destroy()
    // OpenSSL's messages are long and end in a newline; its short reason says the same.
    const reason = (err as { reason?: string }).reason ?? (err as Error).message.trim()
    throw new Error(`TLS handshake with ${where}${via} failed: ${reason}` +
      (via !== '' ? ' (does the proxy forward to a reverselb server?)' : ''))
  }
  try {
    const pinned = trust.fingerprint !== undefined
    const cert = socket.getPeerCertificate()
    if (pinned && mode !== 'never' && normalizeFingerprint(cert.fingerprint256 ?? '') !== normalizeFingerprint(trust.fingerprint ?? '')) {
      return { socket, e2e: true, reason: `the certificate presented for ${where}${via} is not the pinned one (issued by "${issuerOf(cert)}"): TLS interception detected` }
    }
    verifyPeer(socket, trust, where, via, log, 'outer')
    if (mode === 'always') return { socket, e2e: true, reason: '--e2e always' }
    if (mode === 'never' || pinned) return { socket, e2e: false }
    if (trust.insecure) return { socket, e2e: true, reason: 'the outer certificate is not verified (--insecuretls)' }
    if (trust.ca !== undefined) return { socket, e2e: true, reason: 'the outer certificate may be a TLS-inspecting proxy\'s (--ca)' }
    return { socket, e2e: false }
  } catch (err) {
    socket.destroy()
    throw err
  }
}

/**
 * The end-to-end layer's handshake over `bytes` (the WebSocket's messages, or the HTTP
 * transport's stream): the server's own certificate, checked as the outer one would be (the pin,
 * or the chain and name). Any failure destroys `bytes`.
 */
export async function secureInner (bytes: Duplex, endpoint: Endpoint, opts: DialOptions, via: string): Promise<TLSSocket> {
  const inner = tlsConnect({
    socket: bytes, ...tlsOptions(endpoint, opts.trust), minVersion: E2E_MIN_VERSION, ALPNProtocols: [E2E_ALPN]
  })
  const where = formatEndpoint(endpoint)
  try {
    await withTimeout(once(inner, 'secureConnect'), opts.timeoutMs, `timed out after ${opts.timeoutMs} ms`)
    if (inner.alpnProtocol !== E2E_ALPN) throw new UpgradeRefusedError(`server ${where} did not complete the end-to-end layer (ALPN ${String(inner.alpnProtocol)})`)
    verifyPeer(inner, opts.trust, where, via, opts.log, 'inner')
    return inner
  } catch (err) {
    inner.destroy()
    bytes.destroy()
    if (err instanceof TlsVerificationError || err instanceof UpgradeRefusedError) throw err
    const reason = (err as { reason?: string }).reason ?? (err as Error).message.trim()
    throw new Error(`end-to-end TLS handshake with ${where}${via} failed: ${reason}`)
  }
}

/**
 * RFC 6455 masks what a client sends so that script in a browser cannot make a WebSocket payload
 * look like HTTP to a proxy on the way that reads it. Behind a pinned fingerprint that matched
 * (secure() refuses any other), TLS ends at whoever holds that certificate's key: the server the
 * operator pinned, and no proxy can read a frame (the mismatch error sends users who meet an
 * inspecting proxy to --ca, which keeps masks). There an all-zero mask (still valid framing) lets
 * us skip copying and XOR-ing every byte sent, and the server skip undoing it: bulk backend->front
 * +6-8 %, 0.13 s less CPU per GB (A/B, 3 pairs). CA verification, which a TLS-inspecting proxy
 * with its own CA passes, and --insecuretls keep random masks. With the end-to-end layer on, what
 * a proxy may read is ciphertext no script chose, so masks buy nothing either.
 */
const maskFor = (trust: TlsTrust, e2e: boolean): 'zero' | 'random' => trust.fingerprint !== undefined || e2e ? 'zero' : 'random'

/** An upgraded tunnel connection: the WebSocket (on the TLS socket, its `socket`). */
export interface DialedTunnel {
  /** Masks its frames as maskFor() says. */
  ws: WebSocketConnection
  /** The end-to-end layer's TLS inside the WebSocket, when on: the muxer runs in it. */
  inner?: TLSSocket
}

/** Opens a verified WSS connection to the tunnel endpoint and upgrades it with our token and muxer. */
export async function dialTunnel (endpoint: Endpoint, opts: DialOptions): Promise<DialedTunnel> {
  const where = formatEndpoint(endpoint)
  const raw = await connectorFor(opts)(endpoint, opts.timeoutMs)
  // ' through proxy host:port' in messages, or '' when direct.
  const via = viaOf(raw)
  const { socket, e2e, reason } = await secure(raw, endpoint, opts, via)
  if (e2e) opts.log.info(`end-to-end layer on for ${where}${via}: ${reason ?? ''}; the token and every tunneled byte travel inside it`)
  const protocol = subprotocolFor(opts.muxer, PROTOCOL_VERSION, e2e)
  // With a fallback to try, a held-back upgrade is given a few seconds, not the whole connect time.
  const upgradeMs = (opts.transport ?? 'auto') === 'auto' ? Math.min(opts.timeoutMs, UPGRADE_ANSWER_MS) : opts.timeoutMs
  const noAnswer = (): UpgradeBlockedError => new UpgradeBlockedError(`no answer to the WebSocket upgrade from ${where}${via} within ${upgradeMs} ms: ` +
    'a proxy or middlebox may be holding back the upgrade (HTTP 101 never came)')
  let timedOut = false
  const timer = setTimeout(() => { timedOut = true; socket.destroy() }, upgradeMs)
  const answer = await upgrade({
    socket,
    host: new URL(`wss://${where}`).host,
    path: TUNNEL_PATH,
    protocol,
    // With the layer on, the token goes inside it, in the registration.
    headers: e2e ? {} : { authorization: `Bearer ${opts.token}` },
    mask: maskFor(opts.trust, e2e),
    maxPayload: MAX_WS_PAYLOAD
  }).catch((err: Error) => {
    socket.destroy()
    throw timedOut ? noAnswer() : new Error(`WebSocket upgrade with ${where}${via} failed: ${err.message}`)
  }).finally(() => clearTimeout(timer))
  if ('response' in answer) {
    const { response: res, request: req } = answer
    const reason = res.headers[REFUSAL_HEADER]
    const status = `HTTP ${res.statusCode ?? '?'} ${res.statusMessage ?? ''}`.trim()
    const viaHeader = typeof res.headers.via === 'string' ? ` (Via: ${res.headers.via})` : ''
    req.destroy()
    socket.destroy()
    if (res.statusCode === 401 && e2e) {
      throw new UpgradeRefusedError(`server ${where} wants the token in the upgrade, which the end-to-end layer keeps inside: ` +
        'it is probably an older release without it; upgrade the server, or pass --e2e never (a TLS-inspecting proxy then reads the token)')
    }
    if (res.statusCode === 401) throw new AuthorizationError(`authorization failed at ${where}: the server rejected the token`)
    if (typeof reason === 'string') throw new UpgradeRefusedError(`server ${where} refused the tunnel: ${reason}`)
    if (res.statusCode === 426) {
      // The server answers a plain GET with 426: the upgrade headers were lost on the way.
      throw new UpgradeBlockedError(`the WebSocket upgrade did not reach ${where}${via}: it answered ${status}${viaHeader}, so something ` +
        'between us strips the Upgrade/Connection headers (a TLS-inspecting proxy must allow WebSocket, e.g. squid: ' +
        'http_upgrade_request_protocols WebSocket allow all)', true)
    }
    const msg = `${where}${via} answered ${status}${viaHeader} instead of upgrading to WebSocket; this answer did not come from a reverselb server`
    throw new UpgradeBlockedError(msg, (res.statusCode ?? 500) < 500)
  }
  const ws = answer.open
  if (ws.protocol !== protocol) {
    ws.terminate()
    throw new UpgradeRefusedError(`server ${where} answered with subprotocol "${ws.protocol}", expected ${protocol}`)
  }
  return e2e ? { ws, inner: await secureInner(new MessageDuplex(ws), endpoint, opts, via) } : { ws }
}
/** How long `--transport auto` waits for the answer to a WebSocket upgrade before falling back. */
const UPGRADE_ANSWER_MS = 5_000

async function withTimeout<T> (p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(message)), ms) })
  try {
    return await Promise.race([p, timeout])
  } finally {
    clearTimeout(timer)
  }
}
