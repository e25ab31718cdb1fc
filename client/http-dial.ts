import { viaOf } from './proxy-route.js'
import { forwardHeaders } from './proxy-connector.js'
import {
  HTTP_TUNNEL_HEADERS, HTTP_TUNNEL_PATHS, PROTOCOL_VERSION, REFUSAL_HEADER, subprotocolFor
} from '../protocol/index.js'
import { connectorFor, secure, secureInner } from './dial.js'
import { formatEndpoint } from './endpoint.js'
import { AuthorizationError, UpgradeRefusedError } from './errors.js'
import { HttpCarrier } from './http-carrier.js'
import { httpRoute, send, smallBody } from './http-route.js'
import type { DialOptions } from './dial.js'
import type { Endpoint } from './endpoint.js'
import type { HttpRoute } from './http-route.js'
import type { TLSSocket } from 'node:tls'

export interface HttpDialOptions extends DialOptions {
  /** Each download is held this long by the server; requests failing twice as long end the session. */
  keepaliveMs: number
}

/** An open HTTP-transport session: its byte stream, and the end-to-end layer in it when on. */
export interface DialedHttpTunnel {
  carrier: HttpCarrier
  inner?: TLSSocket
}

/**
 * The route to a plain endpoint: absolute-form requests (which the server takes as well as a
 * proxy does) on connections opened for forwarding: straight to the server, or through the proxy
 * the options or the PAC file choose, each connection authenticated with it (NTLM and Negotiate
 * bind to the connection; Basic goes on every request). The first is opened here, so that the
 * first request already carries what its connection needs.
 */
async function plainRoute (endpoint: Endpoint, opts: DialOptions): Promise<{ route: HttpRoute, via: string }> {
  const where = formatEndpoint(endpoint)
  const connect = connectorFor(opts)
  const first = await connect(endpoint, opts.timeoutMs, 'forward')
  const route: HttpRoute = httpRoute(first, async () => {
    const next = await connect(endpoint, opts.timeoutMs, 'forward')
    // Requests created from now on carry what this connection's proxy took.
    route.headers = forwardHeaders(next)
    return next
  }, { host: where, prefix: `http://${where}`, headers: forwardHeaders(first) })
  return { route, via: viaOf(first) }
}

/**
 * Opens an HTTP-transport session (protocol/http/paths.ts): over TLS to the server (through
 * CONNECT when a proxy is on the way, every connection checked as the WebSocket's is), or over
 * plain HTTP to the server's --httptunnelport, where the end-to-end layer is what secures it.
 */
export async function dialHttpTunnel (endpoint: Endpoint, opts: HttpDialOptions): Promise<DialedHttpTunnel> {
  const where = formatEndpoint(endpoint)
  let route: HttpRoute
  let via: string
  let e2e: boolean
  let reason: string | undefined
  if (endpoint.plain === true) {
    if (opts.e2e === 'never') {
      throw new UpgradeRefusedError(`http://${where} is plain HTTP: the token and every byte would cross the network readable; it needs the end-to-end layer (--e2e auto or always)`)
    }
    ({ route, via } = await plainRoute(endpoint, opts))
    e2e = true
    reason = 'plain http:// endpoint'
  } else {
    const connector = connectorFor(opts)
    const raw = await connector(endpoint, opts.timeoutMs)
    via = viaOf(raw)
    const first = await secure(raw, endpoint, opts, via)
    e2e = first.e2e
    reason = first.reason
    // The first connection decided; the next ones (the route keeps two) are checked the same way.
    route = httpRoute(first.socket, async () => {
      const next = await connector(endpoint, opts.timeoutMs)
      return (await secure(next, endpoint, opts, viaOf(next))).socket
    }, { host: where })
  }
  try {
    const protocol = subprotocolFor(opts.muxer, PROTOCOL_VERSION, e2e)
    const res = await send(route, {
      method: 'POST',
      path: HTTP_TUNNEL_PATHS.open,
      headers: { [HTTP_TUNNEL_HEADERS.protocol]: protocol, ...(e2e ? {} : { authorization: `Bearer ${opts.token}` }) },
      timeoutMs: opts.timeoutMs
    })
    const session = res.headers[HTTP_TUNNEL_HEADERS.session]
    if (res.statusCode !== 200 || typeof session !== 'string') {
      const refusal = res.headers[REFUSAL_HEADER]
      const status = `HTTP ${res.statusCode ?? '?'} ${res.statusMessage ?? ''}`.trim()
      const body = await smallBody(res)
      if (res.statusCode === 401 && typeof refusal === 'string') throw new AuthorizationError(`authorization failed at ${where}: the server rejected the token`)
      if (typeof refusal === 'string') throw new UpgradeRefusedError(`server ${where} refused the tunnel: ${refusal}`)
      throw new UpgradeRefusedError(`${where}${via} answered ${status} to opening an HTTP-transport session (${body.slice(0, 120) || 'no reason given'}); ` +
        'is it a reverselb server of this release or later?')
    }
    res.resume()
    opts.log.info(`tunnel to ${endpoint.plain === true ? 'http://' : ''}${where}${via} carried by the HTTP transport (a streaming GET and POSTs)` +
      (e2e ? `, end-to-end layer on: ${reason ?? ''}` : ''))
    const carrier = new HttpCarrier({
      route, session, holdMs: opts.keepaliveMs, timeoutMs: opts.timeoutMs, deadMs: 2 * opts.keepaliveMs, where: `${where}${via}`, log: opts.log
    })
    carrier.on('error', (err) => opts.log.debug(err.message))
    return { carrier, inner: e2e ? await secureInner(carrier, endpoint, opts, via) : undefined }
  } catch (err) {
    route.agent.destroy()
    throw err
  }
}
