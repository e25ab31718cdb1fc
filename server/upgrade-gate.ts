import { E2E_AUTH_FAILED, REFUSAL_HEADER, TUNNEL_PATH, parseSubprotocol } from '../protocol/index.js'
import { bearerToken } from './auth.js'
import { AuthFailureLimiter } from './auth-limiter.js'
import type { Logger, MuxerName } from '../protocol/index.js'
import type { TokenAuth, TokenGrant } from './auth.js'
import type { Limits } from './limits.js'
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'

export interface UpgradeGateOptions {
  auth: TokenAuth
  limits: Limits
  log: Logger
  /** Called for each failed authorization (the server's authFailure event). */
  onAuthFailure: (remoteAddress: string) => void
}

/** A tunnel client let through the gate: who it is, what its token grants, the muxer it asked for. */
export interface AdmittedClient {
  from: string
  /** Undefined with the end-to-end layer: the token comes inside it (see authenticate). */
  grant?: TokenGrant
  muxer: MuxerName
  /** The client runs the end-to-end layer (inner TLS) in the WebSocket. */
  e2e: boolean
  /** The host name the client used to reach the server (Host header without port). */
  publicHost: string
}

/** Why the gate refused: the HTTP status, its text and the reason told to the client. */
export interface GateRefusal {
  status: number
  text: string
  reason: string
}

/**
 * Decides on a WebSocket upgrade request before any WebSocket or muxer exists for it: the path,
 * the failed-authorization rate limit of the address, the token (unless the client runs the
 * end-to-end layer: then it comes inside, see authenticate), the sessions the address already
 * holds, and the subprotocol (muxer and protocol version). A refusal is answered on the raw
 * socket with an HTTP status and the reason (also in the refusal header).
 */
export class UpgradeGate {
  private readonly authLimiter: AuthFailureLimiter
  /** Tunnel sessions per client address, for maxSessionsPerAddress. */
  private readonly perAddress = new Map<string, number>()

  constructor (private readonly opts: UpgradeGateOptions) {
    this.authLimiter = new AuthFailureLimiter(opts.limits.authFailuresPerWindow, opts.limits.authFailureWindowMs)
  }

  /** The admitted client, or undefined when the request was refused (and answered). */
  check (req: IncomingMessage, socket: Duplex): AdmittedClient | undefined {
    const refuse = (status: number, text: string, reason: string): undefined => {
      const body = `${reason}\n`
      socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Type: text/plain\r\n` +
        `${REFUSAL_HEADER}: ${reason}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`)
      return undefined
    }
    if ((req.url ?? '').split('?')[0] !== TUNNEL_PATH) return refuse(404, 'Not Found', `no tunnel endpoint at this path; use ${TUNNEL_PATH}`)
    const verdict = this.evaluate(req, req.headers['sec-websocket-protocol']?.split(','))
    return 'status' in verdict ? refuse(verdict.status, verdict.text, verdict.reason) : verdict
  }

  /**
   * The checks themselves, for an upgrade or an HTTP-transport session (whose `offers` come in a
   * header of their own): the admitted client, or the refusal to answer.
   */
  evaluate (req: IncomingMessage, offers: Iterable<string> | undefined): AdmittedClient | GateRefusal {
    const { limits, log } = this.opts
    const from = req.socket.remoteAddress ?? '?'
    const blockedMs = this.authLimiter.blockedFor(from)
    if (blockedMs > 0) {
      return { status: 429, text: 'Too Many Requests', reason: `too many failed authorizations from this address; retry in ${Math.ceil(blockedMs / 1000)} s` }
    }
    const parsed = chooseSubprotocol(offers)
    const e2e = parsed.ok && parsed.e2e
    const grant = e2e ? undefined : this.identify(from, bearerToken(req))
    if (!e2e && grant === undefined) return { status: 401, text: 'Unauthorized', reason: `${E2E_AUTH_FAILED}: wrong or missing token` }
    if ((this.perAddress.get(from) ?? 0) >= limits.maxSessionsPerAddress) {
      log.warn(`refused tunnel client ${from}: it already holds ${limits.maxSessionsPerAddress} sessions`)
      return { status: 429, text: 'Too Many Requests', reason: `this address already holds ${limits.maxSessionsPerAddress} tunnel sessions, the most allowed` }
    }
    if (!parsed.ok) {
      log.warn(`refused tunnel client ${from}: ${parsed.reason}`)
      return { status: 400, text: 'Bad Request', reason: parsed.reason }
    }
    return { from, grant, muxer: parsed.muxer, e2e, publicHost: hostOf(req.headers.host) }
  }

  /**
   * The grant of a token sent inside the end-to-end layer, under the same failed-authorization
   * rate limit as at the upgrade. Throws the refusal to send back.
   */
  authenticate (from: string, token: unknown): TokenGrant {
    const blockedMs = this.authLimiter.blockedFor(from)
    if (blockedMs > 0) throw new Error(`too many failed authorizations from this address; retry in ${Math.ceil(blockedMs / 1000)} s`)
    const grant = this.identify(from, typeof token === 'string' ? token : undefined)
    if (grant === undefined) throw new Error(`${E2E_AUTH_FAILED}: wrong or missing token`)
    return grant
  }

  /** The token's grant; a failure is logged (never the token), reported and counted against the address. */
  private identify (from: string, token: string | undefined): TokenGrant | undefined {
    const { auth, limits, log } = this.opts
    const grant = auth.identify(token)
    if (grant !== undefined) return grant
    log.warn(`authorization failed for tunnel client ${from}`)
    this.opts.onAuthFailure(from)
    if (this.authLimiter.fail(from)) {
      log.warn(`auth rate limit: ${limits.authFailuresPerWindow} failed authorizations from ${from} within ${limits.authFailureWindowMs / 1000} s; refusing it for a while`)
    }
    return undefined
  }

  /** Counts a tunnel session of `from` against maxSessionsPerAddress; the returned function ends it. */
  holdSession (from: string): () => void {
    this.perAddress.set(from, (this.perAddress.get(from) ?? 0) + 1)
    return () => {
      const n = (this.perAddress.get(from) ?? 1) - 1
      if (n === 0) this.perAddress.delete(from); else this.perAddress.set(from, n)
    }
  }
}

/**
 * The first supported subprotocol of an offer (a comma-separated list), as the WebSocketServer's
 * handleProtocols (tunnel-server.ts) picks it. None supported: the reason of the first reverselb
 * offer (it says what to upgrade), else of the first offer.
 */
export function chooseSubprotocol (offers: Iterable<string> | undefined): ReturnType<typeof parseSubprotocol> {
  const list = [...(offers ?? [])].map(o => o.trim()).filter(o => o !== '')
  const parsed = list.map(o => parseSubprotocol(o))
  return parsed.find(p => p.ok) ??
    parsed[list.findIndex(o => o.startsWith('reverselb.'))] ??
    parsed[0] ?? parseSubprotocol(undefined)
}

/** The host name a client used to reach us (Host header without port): where its frontend is. */
function hostOf (hostHeader: string | undefined): string {
  if (hostHeader === undefined) return ''
  const m = /^\[([^\]]+)\]|^([^:]+)/.exec(hostHeader)
  return m?.[1] ?? m?.[2] ?? ''
}
