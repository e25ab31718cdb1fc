import { InvalidOptionError } from './errors.js'

/** `host:port`; IPv6 hosts in brackets (`[::1]:9999`). */
export interface HostPort {
  host: string
  port: number
}

export function parseEndpoint (text: string, defaultPort?: number): HostPort {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(text) ?? /^([^:]+)(?::(\d+))?$/.exec(text)
  const port = m?.[2] !== undefined ? Number(m[2]) : defaultPort
  if (m === null || port === undefined || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new InvalidOptionError(`"${text}" is not a host:port endpoint`)
  }
  return { host: m[1], port }
}

export function formatEndpoint ({ host, port }: HostPort): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`
}
