import { once } from 'node:events'
import { connect as netConnect } from 'node:net'
import { formatEndpoint } from './endpoint.js'
import { isPermanent } from './errors.js'
import { PacError, describePac, findProxyForUrl, isRemotePac, loadPac, parsePacAnswer } from './pac.js'
import { ProxyError, proxiesFor, proxyAddress, redactProxy } from './proxy.js'
import { proxyConnector } from './proxy-connector.js'
import type { Endpoint } from './endpoint.js'
import type { PacRoute } from './pac.js'
import type { ConnectUse, Connector } from './proxy.js'
import type { Credentials } from './proxy-auth/credentials.js'
import type { AuthScheme } from './proxy-auth/schemes.js'
import type { Logger } from '../protocol/index.js'
import type { Socket } from 'node:net'

/**
 * How the client reaches a server: directly, through one proxy, through the first of several
 * that answers (--proxy a,b), or through what a PAC file says (--proxy-pac). Failover goes to the
 * next route when one is refused, times out or fails; the log names the route that carried it.
 */

export interface ProxyRouteOptions {
  /** --proxy: 'none', one proxy URL or several comma-separated. Unset: the *_PROXY variables. */
  proxy?: string
  /** --proxy-pac: a URL (fetched again on every reconnect) or a file. Wins over `proxy`. */
  pac?: string
  /** Proxy credentials when a proxy URL has none (--proxy-user, $PROXY_PASSWORD). */
  credentials?: Credentials
  /** --proxy-auth: allowed schemes. */
  schemes?: readonly AuthScheme[]
  /** Extra CA for https:// proxies. */
  ca?: string
  userAgent?: string
  log?: Logger
}

/** The route that carried each connection: ' through proxy host:port', or '' when direct. */
const carriedBy = new WeakMap<Socket, string>()

/** ' through proxy host:port' when `socket` came through a proxy, for messages; else ''. */
export const viaOf = (socket: Socket): string => carriedBy.get(socket) ?? ''

/** Opens a TCP connection straight to the server. */
export async function connectDirect (endpoint: Endpoint, timeoutMs: number): Promise<Socket> {
  const where = formatEndpoint(endpoint)
  const socket = netConnect({ host: endpoint.host, port: endpoint.port, noDelay: true })
  // A timer of our own, not a signal passed to connect(): that one would also tear the
  // established tunnel down when it fires later.
  let timedOut = false
  const timer = setTimeout(() => { timedOut = true; socket.destroy(new Error('timeout')) }, timeoutMs)
  try {
    await once(socket, 'connect')
  } catch (err) {
    socket.destroy()
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') throw new Error(`cannot resolve the server host "${endpoint.host}" (DNS lookup failed: ${code})`)
    const why = timedOut ? `timed out after ${timeoutMs} ms` : (err as Error).message
    // Behind an outbound-only firewall this is where it ends; say what would help.
    throw new Error(`cannot connect to ${where}: ${why}; if this network only lets traffic out through ` +
      'an HTTP proxy, set HTTPS_PROXY or pass --proxy http://HOST:PORT')
  } finally {
    clearTimeout(timer)
  }
  return socket
}

/** A Connector trying each route for the server in order. */
export function routeConnector (opts: ProxyRouteOptions): Connector {
  const connectorOpts = { ca: opts.ca, userAgent: opts.userAgent, credentials: opts.credentials, schemes: opts.schemes, debug: (m: string) => opts.log?.debug(m) }
  const connectors = new Map<string, Connector>()
  const through = (proxy: URL): Connector => {
    let c = connectors.get(proxy.href)
    if (c === undefined) { c = proxyConnector(proxy, connectorOpts); connectors.set(proxy.href, c) }
    return c
  }
  // A PAC file is read once; one from a server is fetched again on each dial (reconnect), so a
  // changed PAC takes effect without a restart.
  let localPac: Promise<string> | undefined

  const routesFor = async (endpoint: Endpoint, timeoutMs: number, use: ConnectUse): Promise<{ routes: PacRoute[], source: string }> => {
    if (opts.pac === undefined) {
      return { routes: proxiesFor(endpoint, opts.proxy).map(proxy => ({ direct: false, proxy })), source: '' }
    }
    const name = describePac(opts.pac)
    let script: string
    if (isRemotePac(opts.pac)) script = await loadPac(opts.pac, timeoutMs)
    else {
      localPac ??= loadPac(opts.pac, timeoutMs)
      script = await localPac.catch((err: Error) => { localPac = undefined; throw err })
    }
    // PAC files are written for browsers: they see the URL the tunnel is, https://host:port/ (http:// for plain requests).
    const answer = await findProxyForUrl(script, `${use === 'forward' ? 'http' : 'https'}://${formatEndpoint(endpoint)}/`, name)
    const routes = parsePacAnswer(answer, entry => opts.log?.debug(`PAC ${name}: skipping "${entry}" (only PROXY, HTTPS and DIRECT are supported)`))
    if (routes.length === 0) throw new PacError(`PAC file ${name} answered "${answer}" for ${formatEndpoint(endpoint)}: no PROXY, HTTPS or DIRECT entry to use`)
    opts.log?.debug(`PAC ${name} answered "${answer}" for ${formatEndpoint(endpoint)}`)
    return { routes, source: ` (PAC ${name})` }
  }

  return async (endpoint, timeoutMs, use = 'tunnel') => {
    const { routes, source } = await routesFor(endpoint, timeoutMs, use)
    const target = formatEndpoint(endpoint)
    if (routes.length === 0) return await connectDirect(endpoint, timeoutMs)
    const failures: Error[] = []
    for (const route of routes) {
      const label = route.direct ? 'DIRECT' : `proxy ${redactProxy(route.proxy)}`
      try {
        const socket = route.direct ? await connectDirect(endpoint, timeoutMs) : await through(route.proxy)(endpoint, timeoutMs, use)
        carriedBy.set(socket, route.direct ? '' : ` through proxy ${proxyAddress(route.proxy)}`)
        // Only worth a line at info when there was a choice to make.
        const line = `connection to ${target} carried by ${label}${source}`
        if (routes.length > 1 || source !== '') opts.log?.info(line); else opts.log?.debug(line)
        return socket
      } catch (err) {
        failures.push(err as Error)
        if (routes.length > 1) opts.log?.warn(`${label} failed for ${target}${source}: ${(err as Error).message}; trying the next route`)
      }
    }
    if (failures.length === 1) throw failures[0]
    const summary = `all ${routes.length} routes to ${target}${source} failed: ` + failures.map(e => e.message).join('; ')
    // Retrying helps if any route failed for a reason that may pass (down, timeout).
    if (!failures.every(isPermanent)) throw new ProxyError(summary)
    // All lasting (refused by policy, rejected credentials): the first one's kind, all the reasons.
    throw new (failures[0].constructor as new (message: string) => Error)(summary)
  }
}
