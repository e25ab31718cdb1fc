import { EventEmitter } from 'node:events'
import { BlockList, isIP, connect as netConnect } from 'node:net'
import { rootCertificates } from 'node:tls'
import { HttpsProxyAgent } from 'https-proxy-agent'
import { getProxyForUrl } from 'proxy-from-env'
import { formatEndpoint } from './endpoint.js'
import { AuthorizationError, TlsVerificationError, UpgradeRefusedError } from './errors.js'
import type { Endpoint } from './endpoint.js'
import type { ClientRequest, IncomingHttpHeaders } from 'node:http'
import type { Socket } from 'node:net'

/** Opens a raw TCP path to a tunnel endpoint: directly, or a CONNECT tunnel through a proxy. */
export type Connector = (endpoint: Endpoint, timeoutMs: number) => Promise<Socket>

/** The proxy could not be reached or did not open the tunnel (5xx, timeout); retried with backoff. */
export class ProxyError extends Error {
  override name = 'ProxyError'
}

/** 407 from the proxy: missing or wrong credentials. Permanent, like a wrong token. */
export class ProxyAuthError extends AuthorizationError {
  override name = 'ProxyAuthError'
}

/** The proxy refuses the CONNECT by policy (4xx, e.g. a port other than 443). Permanent. */
export class ProxyRefusedError extends UpgradeRefusedError {
  override name = 'ProxyRefusedError'
}

// curl's order for an https target is https_proxy, then all_proxy; http_proxy comes last because
// many hosts set only that one, and every proxy we talk to is asked for CONNECT anyway.
const PROXY_VARS = ['https_proxy', 'HTTPS_PROXY', 'all_proxy', 'ALL_PROXY', 'http_proxy', 'HTTP_PROXY']

/**
 * The proxy to reach `endpoint` through, or undefined for a direct connection. `setting` is the
 * explicit choice (--proxy / the `proxy` option): a URL, or 'none'; it wins over the environment
 * entirely. Without it, the *_PROXY and NO_PROXY variables decide, as in curl.
 */
export function proxyFor (endpoint: Endpoint, setting?: string): URL | undefined {
  if (setting !== undefined) {
    const s = setting.trim()
    return s === '' || s.toLowerCase() === 'none' ? undefined : parseProxyUrl(s, '--proxy')
  }
  const target = formatEndpoint(endpoint)
  // Both lookups apply NO_PROXY to the same host and (explicit) port.
  const found = getProxyForUrl(`https://${target}`) || getProxyForUrl(`http://${target}`)
  if (found === '' || curlOnlyNoProxy(endpoint)) return undefined
  // proxy-from-env gives a scheme-less value the target's scheme (https://); curl means http://.
  const asWritten = PROXY_VARS.some(n => process.env[n] === found) ? found : found.replace(/^[a-z]+:\/\//i, '')
  return parseProxyUrl(asWritten, '$HTTPS_PROXY/$ALL_PROXY/$HTTP_PROXY')
}

/**
 * The NO_PROXY forms curl accepts that proxy-from-env does not: `example.com` also covering its
 * subdomains, and CIDR blocks (`10.0.0.0/8`).
 */
function curlOnlyNoProxy ({ host, port }: Endpoint): boolean {
  const lower = process.env.no_proxy
  const list = (lower !== undefined && lower !== '' ? lower : process.env.NO_PROXY ?? '').toLowerCase().split(/[,\s]+/).filter(e => e !== '')
  const name = host.toLowerCase()
  return list.some(entry => {
    const cidr = /^([0-9a-f.:]+)\/(\d{1,3})$/.exec(entry)
    if (cidr !== null) {
      const family = isIP(cidr[1])
      if (family === 0 || isIP(name) !== family) return false
      const block = new BlockList()
      block.addSubnet(cidr[1], Number(cidr[2]), family === 4 ? 'ipv4' : 'ipv6')
      return block.check(name, family === 4 ? 'ipv4' : 'ipv6')
    }
    const m = /^(.+?)(?::(\d+))?$/.exec(entry)
    if (m === null || (m[2] !== undefined && Number(m[2]) !== port)) return false
    return name.endsWith(`.${m[1].replace(/^\*?\.?/, '')}`)
  })
}

/** Parses a proxy URL; a missing scheme means http://. Errors never repeat the text (it may hold a password). */
export function parseProxyUrl (text: string, source = 'proxy'): URL {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `http://${text}`
  let url: URL
  try {
    url = new URL(withScheme)
  } catch {
    throw new Error(`${source}: not a valid proxy URL; expected http://[USER:PASSWORD@]HOST:PORT (percent-encode special characters)`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new Error(`${source}: proxy scheme "${url.protocol}" is not supported; use an http:// or https:// proxy (HTTP CONNECT)`)
  }
  if (url.hostname === '') throw new Error(`${source}: the proxy URL has no host`)
  return url
}

function proxyEndpoint (proxy: URL): Endpoint {
  const port = proxy.port !== '' ? Number(proxy.port) : proxy.protocol === 'https:' ? 443 : 80
  return { host: proxy.hostname.replace(/^\[|\]$/g, ''), port }
}

/** `host:port` of a proxy, for messages. */
export const proxyAddress = (proxy: URL): string => formatEndpoint(proxyEndpoint(proxy))

/** The proxy URL with the password masked, for logs. */
export function redactProxy (proxy: URL): string {
  const user = proxy.username !== '' ? `${decodeURIComponent(proxy.username)}:***@` : ''
  return `${proxy.protocol}//${user}${proxyAddress(proxy)}`
}

interface ConnectAnswer {
  statusCode: number
  statusText: string
  headers: IncomingHttpHeaders
}

/**
 * A Connector that asks `proxy` for a CONNECT tunnel via https-proxy-agent and returns the raw
 * tunnel socket (secureEndpoint false): TLS to the server, and its verification, stay with the
 * caller, so the token is only ever sent after the server's certificate was checked.
 */
export function proxyConnector (proxy: URL, opts: { ca?: string, userAgent?: string } = {}): Connector {
  const where = proxyAddress(proxy)
  return async (endpoint, timeoutMs) => {
    const target = formatEndpoint(endpoint)
    // The agent opens its own socket to the proxy; the signal lets a timeout destroy it.
    const abort = new AbortController()
    const secureProxy = proxy.protocol === 'https:'
    const agent = new HttpsProxyAgent(proxy, {
      signal: abort.signal,
      headers: { 'User-Agent': opts.userAgent ?? 'reverselb' },
      // tls.connect ignores `signal`: hand it a TCP socket that honours it.
      ...(secureProxy
        ? { socket: netConnect({ ...proxyEndpoint(proxy), signal: abort.signal }), ca: opts.ca !== undefined ? [...rootCertificates, opts.ca] : undefined }
        : {})
    } as ConstructorParameters<typeof HttpsProxyAgent>[1])
    // The agent reports the proxy's answer as an event on the request it thinks it serves.
    const req = new EventEmitter()
    let answer: ConnectAnswer | undefined
    req.once('proxyConnect', (a: ConnectAnswer) => { answer = a })
    let timedOut = false
    const timer = setTimeout(() => { timedOut = true; abort.abort() }, timeoutMs)
    const expired = new Promise<never>((_resolve, reject) => {
      abort.signal.addEventListener('abort', () => reject(new Error('timeout')), { once: true })
    })
    let socket: Socket
    try {
      socket = await Promise.race([
        agent.connect(req as unknown as ClientRequest, { host: endpoint.host, port: endpoint.port, secureEndpoint: false }) as Promise<Socket>,
        expired
      ])
    } catch (err) {
      abort.abort()
      throw connectFailure(err as NodeJS.ErrnoException, { proxy, where, target, timedOut, timeoutMs })
    } finally {
      clearTimeout(timer)
    }
    if (answer?.statusCode !== 200) {
      // The agent already closed the proxy connection and handed us an unconnected placeholder.
      socket.destroy()
      throw refusal(answer, { proxy, where, target, port: endpoint.port })
    }
    return socket
  }
}

function connectFailure (err: NodeJS.ErrnoException, ctx: { proxy: URL, where: string, target: string, timedOut: boolean, timeoutMs: number }): Error {
  if (ctx.timedOut) return new ProxyError(`proxy ${ctx.where} did not open a tunnel to ${ctx.target} within ${ctx.timeoutMs} ms`)
  switch (err.code) {
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new ProxyError(`cannot resolve the proxy host "${ctx.proxy.hostname}" (DNS lookup failed: ${err.code})`)
    case 'ECONNREFUSED':
    case 'ECONNRESET':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'ETIMEDOUT':
      return new ProxyError(`proxy ${ctx.where} is unreachable: ${err.message}`)
  }
  if (ctx.proxy.protocol === 'https:' && /CERT|SELF_SIGNED|UNABLE_TO|ERR_TLS|ERR_SSL/.test(err.code ?? '')) {
    return new TlsVerificationError(`TLS with proxy ${ctx.where} failed: ${err.message} (${err.code ?? ''}); ` +
      'if the proxy has a private CA, pass it with --ca FILE')
  }
  if (/ended before receiving CONNECT response/.test(err.message)) {
    return new ProxyError(`proxy ${ctx.where} closed the connection without answering CONNECT to ${ctx.target} (is it an HTTP proxy?)`)
  }
  return new ProxyError(`proxy ${ctx.where}: CONNECT to ${ctx.target} failed: ${err.message}`)
}

function refusal (answer: ConnectAnswer | undefined, ctx: { proxy: URL, where: string, target: string, port: number }): Error {
  if (answer === undefined) return new ProxyError(`proxy ${ctx.where} gave no answer to CONNECT ${ctx.target}`)
  const first = (v: string | string[] | undefined): string | undefined => Array.isArray(v) ? v[0] : v
  let status = `HTTP ${answer.statusCode} ${answer.statusText}`.trim()
  // Squid names the reason (ERR_ACCESS_DENIED, ERR_DNS_FAIL, ...) in a header.
  const squid = first(answer.headers['x-squid-error'])
  if (squid !== undefined) status += ` (${squid})`
  if (answer.statusCode === 407) {
    const user = decodeURIComponent(ctx.proxy.username)
    const scheme = first(answer.headers['proxy-authenticate'])?.split(/\s/)[0]
    return new ProxyAuthError(user !== ''
      ? `proxy ${ctx.where} rejected the credentials of user "${user}": ${status}`
      : `proxy ${ctx.where} requires authentication (${status}${scheme !== undefined ? `, ${scheme}` : ''}): ` +
        `give credentials in the proxy URL, http://USER:PASSWORD@${ctx.where} (percent-encode special characters)`)
  }
  let message = `proxy ${ctx.where} refused CONNECT to ${ctx.target}: ${status}`
  if (answer.statusCode === 403 && ctx.port !== 443) message += '; many proxies allow CONNECT only to port 443: run the server there (reverselb server --port 443)'
  const policy = answer.statusCode >= 400 && answer.statusCode < 500 && answer.statusCode !== 408 && answer.statusCode !== 429
  return policy ? new ProxyRefusedError(message) : new ProxyError(message)
}
