import { InvalidOptionError } from '../protocol/index.js'

/** A `host:port` endpoint; IPv6 hosts in brackets (`[::1]:9999`). */
export interface Endpoint {
  host: string
  port: number
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

export function parseEndpoint (text: string, defaultPort?: number): Endpoint {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(text) ?? /^([^:]+)(?::(\d+))?$/.exec(text)
  const port = m?.[2] !== undefined ? Number(m[2]) : defaultPort
  if (m === null || port === undefined || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new InvalidOptionError(`"${text}" is not a host:port endpoint`)
  }
  return { host: m[1], port }
}

/** `host:port`, or `http://host:port` for a plain endpoint. */
export const describeEndpoint = (e: Endpoint): string => (e.plain === true ? 'http://' : '') + formatEndpoint(e)

export function formatEndpoint ({ host, port }: Endpoint): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`
}
