/** A `host:port` endpoint; IPv6 hosts in brackets (`[::1]:9999`). */
export interface Endpoint {
  host: string
  port: number
}

export function parseEndpoint (text: string, defaultPort?: number): Endpoint {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(text) ?? /^([^:]+)(?::(\d+))?$/.exec(text)
  const port = m?.[2] !== undefined ? Number(m[2]) : defaultPort
  if (m === null || port === undefined || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new Error(`"${text}" is not a host:port endpoint`)
  }
  return { host: m[1], port }
}

export function formatEndpoint ({ host, port }: Endpoint): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`
}
