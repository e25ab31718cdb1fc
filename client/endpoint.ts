import { formatEndpoint, parseEndpoint } from '../protocol/host-port.js'
import type { HostPort } from '../protocol/host-port.js'

export { formatEndpoint, parseEndpoint }

/** A `host:port` endpoint; IPv6 hosts in brackets (`[::1]:9999`). */
export interface Endpoint extends HostPort {
  /** `http://host:port`: the server's plain-HTTP port (--httptunnelport), reached with the HTTP transport and the end-to-end layer. */
  plain?: boolean
}

/**
 * A server's API endpoint: `host:port` or `https://host:port` (TLS, as always), or
 * `http://host:port` (the plain HTTP transport, for proxies that allow no CONNECT).
 */
export function parseApiEndpoint (text: string): Endpoint {
  const m = /^(https?):\/\/([^/]+)\/?$/i.exec(text)
  if (m === null) return parseEndpoint(text)
  const plain = m[1].toLowerCase() === 'http'
  const endpoint = parseEndpoint(m[2], plain ? 80 : 443)
  return plain ? { ...endpoint, plain } : endpoint
}

/** `host:port`, or `http://host:port` for a plain endpoint. */
export const describeEndpoint = (e: Endpoint): string => (e.plain === true ? 'http://' : '') + formatEndpoint(e)
