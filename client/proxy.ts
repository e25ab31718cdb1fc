import { BlockList, isIP } from 'node:net'
import { getProxyForUrl } from 'proxy-from-env'
import { ReverselbError, InvalidOptionError } from '../protocol/index.js'
import { formatEndpoint } from './endpoint.js'
import { AuthorizationError, UpgradeRefusedError } from './errors.js'
import type { Endpoint } from './endpoint.js'
import type { Socket } from 'node:net'

/**
 * What a connection to an endpoint is for: 'tunnel', bytes straight to the server (a CONNECT
 * tunnel through a proxy); 'forward', plain HTTP requests for an http:// endpoint, which a proxy
 * forwards (absolute-form, no CONNECT: some proxies forbid it).
 */
export type ConnectUse = 'tunnel' | 'forward'

/** Opens a raw TCP path to a tunnel endpoint: directly, or through a proxy. */
export type Connector = (endpoint: Endpoint, timeoutMs: number, use?: ConnectUse) => Promise<Socket>

/** The proxy could not be reached or did not open the tunnel (5xx, timeout); retried with backoff. */
export class ProxyError extends ReverselbError {
  override name = 'ProxyError'
  constructor (message: string) { super('ERR_REVERSELB_PROXY', message) }
}

/** 407 from the proxy: missing or wrong credentials. Permanent, like a wrong token. */
export class ProxyAuthError extends AuthorizationError {
  override name = 'ProxyAuthError'
  override readonly code = 'ERR_REVERSELB_PROXY_AUTH'
}

/** The proxy refuses the CONNECT by policy (4xx, e.g. a port other than 443). Permanent. */
export class ProxyRefusedError extends UpgradeRefusedError {
  override name = 'ProxyRefusedError'
  override readonly code = 'ERR_REVERSELB_PROXY_REFUSED'
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
  return proxiesFor(endpoint, setting)[0]
}

/**
 * Every proxy to try for `endpoint`, in order: `setting` may list several, comma-separated
 * (failover); the environment names one. Empty: connect directly.
 */
export function proxiesFor (endpoint: Endpoint, setting?: string): URL[] {
  if (setting !== undefined) {
    const s = setting.trim()
    if (s === '' || s.toLowerCase() === 'none') return []
    return s.split(',').map(p => p.trim()).filter(p => p !== '').map(p => parseProxyUrl(p, '--proxy'))
  }
  const one = envProxyFor(endpoint)
  return one === undefined ? [] : [one]
}

function envProxyFor (endpoint: Endpoint): URL | undefined {
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
    throw new InvalidOptionError(`${source}: not a valid proxy URL; expected http://[USER:PASSWORD@]HOST:PORT (percent-encode special characters)`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new InvalidOptionError(`${source}: proxy scheme "${url.protocol}" is not supported; use an http:// or https:// proxy (HTTP CONNECT)`)
  }
  if (url.hostname === '') throw new InvalidOptionError(`${source}: the proxy URL has no host`)
  return url
}

export function proxyEndpoint (proxy: URL): Endpoint {
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

