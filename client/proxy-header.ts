import { isIPv4, isIPv6 } from 'node:net'
import pp from 'proxy-protocol-js'

export type ProxyProtocolVersion = 'v1' | 'v2'

interface Address { host: string, port: number }

/** `1.2.3.4:56`, `[::1]:56` or `::ffff:1.2.3.4:56` -> host and port. */
export function parseAddress (text: string): Address | undefined {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^(.*):(\d+)$/.exec(text)
  if (m === null) return undefined
  const host = m[1].replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/i, '$1')
  return isIPv4(host) || isIPv6(host) ? { host, port: Number(m[2]) } : undefined
}

function ipv6Bytes (host: string): number[] {
  const v4 = isIPv4(host) ? host : /:(\d+\.\d+\.\d+\.\d+)$/.exec(host)?.[1]
  const v4Bytes = v4 !== undefined ? v4.split('.').map(Number) : []
  if (isIPv4(host)) return [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, ...v4Bytes]
  const text = v4 !== undefined ? host.slice(0, host.length - v4.length) + '0:0' : host
  const [left, right] = text.includes('::') ? text.split('::') : [text, undefined]
  const groups = (s: string | undefined): string[] => s === undefined || s === '' ? [] : s.split(':')
  const l = groups(left)
  const r = groups(right)
  const all = [...l, ...Array<string>(8 - l.length - r.length).fill('0'), ...r].map(g => parseInt(g, 16))
  const bytes = all.flatMap(g => [g >> 8, g & 0xff])
  if (v4 !== undefined) bytes.splice(12, 4, ...v4Bytes)
  return bytes
}

/**
 * The HAProxy PROXY protocol header (v1 text or v2 binary) telling the backend who really
 * connected to the frontend. Mixed families are sent as IPv6 (IPv4-mapped).
 */
export function proxyHeader (version: ProxyProtocolVersion, source: string, destination: string): Buffer {
  const src = parseAddress(source)
  const dst = parseAddress(destination)
  if (src === undefined || dst === undefined) {
    return version === 'v1'
      ? Buffer.from('PROXY UNKNOWN\r\n')
      : Buffer.from(new pp.V2ProxyProtocol(pp.Command.LOCAL, pp.TransportProtocol.UNSPEC, new pp.UnspecProxyAddress()).build())
  }
  const v4 = isIPv4(src.host) && isIPv4(dst.host)
  if (version === 'v1') {
    const map = (h: string): string => v4 || isIPv6(h) ? h : `::ffff:${h}`
    return Buffer.from(new pp.V1ProxyProtocol(v4 ? pp.INETProtocol.TCP4 : pp.INETProtocol.TCP6,
      new pp.Peer(map(src.host), src.port), new pp.Peer(map(dst.host), dst.port)).build())
  }
  const address = v4
    ? new pp.IPv4ProxyAddress(pp.IPv4Address.createFrom(src.host.split('.').map(Number)), src.port,
      pp.IPv4Address.createFrom(dst.host.split('.').map(Number)), dst.port)
    : new pp.IPv6ProxyAddress(pp.IPv6Address.createFrom(ipv6Bytes(src.host)), src.port,
      pp.IPv6Address.createFrom(ipv6Bytes(dst.host)), dst.port)
  return Buffer.from(new pp.V2ProxyProtocol(pp.Command.PROXY, pp.TransportProtocol.STREAM, address).build())
}
